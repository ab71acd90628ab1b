//! The self-hosted relay: rooms of opaque peers, routing on the frame header only (bodies are
//! ciphertext it never parses), presence, retained blobs, limits, `/healthz` and `/metrics`.
