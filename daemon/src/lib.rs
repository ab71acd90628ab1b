//! The node and the fleet CLI. One module per capability; the binaries in `src/bin` only parse
//! arguments, set up tracing to stderr and call into this library.
