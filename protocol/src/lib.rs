//! The wire protocol: the frame header the relay routes on and its codec, and the secure
//! session between two peers. Sans-IO: bytes in, bytes out; no sockets, no runtime.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod blob;
pub mod direct;
pub mod frame;
pub mod key_proof;
pub mod message;
pub mod psk;
pub mod session;
