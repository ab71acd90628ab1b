//! Prints the diagnostics of spec files given on the command line (a debugging aid; the real
//! command is `fleetctl validate`).

fn main() {
    let files: Vec<(String, String)> = std::env::args()
        .skip(1)
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            (path, text)
        })
        .collect();
    let (_, diagnostics) = remote_agents_spec::load(&files);
    for diagnostic in diagnostics {
        println!("{diagnostic}");
    }
}
