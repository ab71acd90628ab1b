//! The fleet CLI binary: parses arguments, sets up tracing to stderr, calls the library.
fn main() {
    eprintln!("fleetctl: being built; see the issues");
    std::process::exit(2);
}
