//! Stable-toolchain fuzzing: random and mutated inputs to the YAML reader, the KDL reader and the
//! selector parser for a bounded time each, asserting only that nothing panics (and that
//! diagnostics stay inside the input). `FUZZ_SECONDS` sets the budget per target (default 2);
//! `scripts/fuzz-long.sh` runs longer.

use remote_agents_spec::{Selector, load};
use std::time::Instant;

use remote_agents_testkit::{Rng, budget};

/// Interesting fragments to splice in: the syntax of both spellings and of selectors.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "-",
    "- ",
    "\n",
    "  ",
    "\"",
    "'",
    "#",
    "&a",
    "*a",
    "!!str ",
    "---\n",
    ";",
    "=",
    "\\",
    "/-",
    "#null",
    "#true",
    "r#\"",
    "\"\"\"",
    "(t)",
    "!",
    "&",
    "tag:",
    "name:",
    "os:",
    "fact:k=v",
    "all",
    "web-*",
    "[",
    "{a,b}",
    "\u{feff}",
    "\u{0}",
    "é",
    "kind: Fleet\n",
    "spec:\n",
    "apiVersion: remote-agents.dev/v1\n",
    "hosts",
    "rules",
    "target",
    "mode",
    "9999999999999999999999",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if !out.is_empty() => {
                let at = at.min(out.len() - 1);
                out[at] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let end = (at + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            2 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                out.splice(at..at, token.iter().copied());
            }
            3 if !out.is_empty() => {
                // Duplicate a slice of the input somewhere else (grows nesting and lists).
                let start = rng.below(out.len());
                let end = (start + rng.below(64)).min(out.len());
                let chunk: Vec<u8> = out[start..end].to_vec();
                out.splice(at..at, chunk);
            }
            _ => {
                let byte = rng.next_u64() as u8;
                out.insert(at, byte);
            }
        }
    }
    out
}

fn corpus(extension: &str) -> Vec<Vec<u8>> {
    let root = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR (run by cargo)"),
    )
    .join("..");
    let mut files = Vec::new();
    for folder in [
        "examples/fleet",
        "examples/fleet-kdl",
        "examples/secure-fleet",
        "spec/tests/fixtures/broken",
    ] {
        for entry in std::fs::read_dir(root.join(folder)).expect("corpus folder") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == extension) {
                files.push(std::fs::read(path).expect("read"));
            }
        }
    }
    files
}

fn check_load(name: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let (_, diagnostics) = load(&[(name, text.as_ref())]);
    for d in diagnostics {
        assert!(
            d.loc.offset as usize <= text.len(),
            "diagnostic outside the input: {d}"
        );
        assert!(d.loc.line >= 1 || &*d.loc.file == "<model>", "line 0: {d}");
    }
}

fn run(name: &str, corpus: Vec<Vec<u8>>, target: impl Fn(&[u8])) {
    let mut rng = Rng::from_env();
    let deadline = Instant::now() + budget();
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let input = if corpus.is_empty() || rng.below(10) == 0 {
            (0..rng.below(200)).map(|_| rng.next_u64() as u8).collect()
        } else {
            let pick = rng.below(corpus.len());
            mutate(&mut rng, &corpus[pick])
        };
        target(&input);
        runs += 1;
    }
    eprintln!("{name}: {runs} inputs without a panic");
    assert!(runs > 0);
}

#[test]
fn fuzz_yaml_reader() {
    run("yaml", corpus("yaml"), |bytes| {
        check_load("fuzz.yaml", bytes)
    });
}

#[test]
fn fuzz_kdl_reader() {
    run("kdl", corpus("kdl"), |bytes| check_load("fuzz.kdl", bytes));
}

#[test]
fn fuzz_selector_parser() {
    let seeds: Vec<Vec<u8>> = [
        "all",
        "web,!name:web-3",
        "tag:db & os:linux",
        "fact:region=eu,name:lab-[0-9]*",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    run("selector", seeds, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        if let Err(error) = Selector::parse(&text) {
            assert!(
                error.position <= text.chars().count(),
                "{error} in {text:?}"
            );
        }
    });
}

#[test]
fn deep_nesting_is_rejected_not_a_stack_overflow() {
    let yaml = "a: ".to_string() + &"[".repeat(100_000);
    check_load("deep.yaml", yaml.as_bytes());
    let yaml = "- ".repeat(10_000) + "x";
    check_load("deep2.yaml", yaml.as_bytes());
    let kdl = "Fleet x ".to_string() + &"{ a ".repeat(100_000);
    check_load("deep.kdl", kdl.as_bytes());
    let kdl = "Fleet x ".to_string() + &"{ a ".repeat(5_000) + &"}".repeat(5_000);
    check_load("deep2.kdl", kdl.as_bytes());
}
