//! Hostile inputs stay within the parser's bounds (issue 12, item 2): alias bombs, a large
//! scalar aliased many times, too many values, deep nesting and oversized files each end in a
//! diagnostic, quickly and in bounded memory. Each case runs in a child process of this test
//! binary whose address space is capped, so a regression fails one test instead of taking the
//! machine's memory (before the limits, the 652-byte alias bomb grew past 8 GB).

use remote_agents_spec::limits::{MAX_FILE_BYTES, MAX_KDL_NODES, MAX_TOTAL_BYTES, MAX_VALUES};
use remote_agents_spec::{Code, Diagnostic, load};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the child to the name of the case it runs.
const CASE: &str = "REMOTE_AGENTS_SPEC_LIMITS_CASE";
/// The child's address space: the test binary, the generated input and a bounded parse fit
/// comfortably; an unbounded expansion does not.
const ADDRESS_SPACE_KIB: u64 = 768 * 1024;
/// Each case takes well under a second in release and a few in debug builds; an unbounded one
/// runs for minutes.
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `body` in a child process (this binary, filtered to `case`) under [`ADDRESS_SPACE_KIB`]
/// and [`DEADLINE`], and fails with the child's output when it fails, runs out of memory or
/// out of time. In the child, runs `body` itself.
fn bounded(case: &str, body: fn()) {
    if std::env::var(CASE).as_deref() == Ok(case) {
        body();
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    // `ulimit -v` is enforced on Linux; elsewhere it may be refused, and the case still runs
    // under the deadline.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {ADDRESS_SPACE_KIB} 2>/dev/null; exec \"$0\" \"$@\""
        ))
        .arg(exe)
        .args([case, "--exact", "--test-threads=1"])
        .env(CASE, case)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the test binary");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = format!(
        "{}\n{}",
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default()
    );
    match status {
        None => panic!("{case} ran past {DEADLINE:?}:\n{output}"),
        Some(status) => assert!(
            status.success() && output.contains("1 passed"),
            "{case} failed within {ADDRESS_SPACE_KIB} KiB of address space ({status}):\n{output}"
        ),
    }
}

/// The one `too-large` diagnostic of a load, which must be in `file`.
fn too_large<'a>(diagnostics: &'a [Diagnostic], file: &str) -> &'a Diagnostic {
    let found: Vec<&Diagnostic> = diagnostics
        .iter()
        .filter(|d| d.code == Code::TooLarge)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one too-large diagnostic, got {:?}",
        diagnostics
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
    );
    assert_eq!(&*found[0].loc.file, file, "{}", found[0]);
    found[0]
}

/// Billion laughs: nine levels of nine aliases each, ~650 bytes, 9^9 values expanded.
fn billion_laughs() -> String {
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..9 {
        let previous = format!("*a{}", level - 1);
        let items = [previous.as_str(); 9].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{items}]\n"));
    }
    text
}

#[test]
fn an_alias_bomb_is_refused_at_the_alias_that_overflows() {
    bounded(
        "an_alias_bomb_is_refused_at_the_alias_that_overflows",
        || {
            let text = billion_laughs();
            assert!(text.len() < 700, "{}", text.len());
            let (_, diagnostics) = load(&[("bomb.yaml", text.as_str())]);
            let refusal = too_large(&diagnostics, "bomb.yaml");
            assert!(refusal.message.contains("alias"), "{refusal}");
            // It points at an alias on one of the expanding lines, not at the document.
            assert!(refusal.loc.line > 1, "{refusal}");
            let line = text.lines().nth(refusal.loc.line as usize - 1).unwrap();
            assert_eq!(
                &line[refusal.loc.col as usize - 1..][..1],
                "*",
                "{refusal} points at {line}"
            );
        },
    );
}

#[test]
fn a_merge_key_bomb_is_refused() {
    bounded("a_merge_key_bomb_is_refused", || {
        let mut text = String::from("m0: &m0 {x: 1, y: 2, z: 3, w: 4}\n");
        for level in 1..12 {
            let previous = format!("*m{}", level - 1);
            let keys: Vec<String> = (0..8).map(|k| format!("k{k}: {previous}")).collect();
            text.push_str(&format!(
                "m{level}: &m{level} {{<<: {previous}, {}}}\n",
                keys.join(", ")
            ));
        }
        let (_, diagnostics) = load(&[("merge.yaml", text.as_str())]);
        let refusal = too_large(&diagnostics, "merge.yaml");
        assert!(refusal.message.contains("alias"), "{refusal}");
    });
}

#[test]
fn a_big_scalar_aliased_many_times_is_refused() {
    bounded("a_big_scalar_aliased_many_times_is_refused", || {
        let mut text = format!("s: &s {}\nl:\n", "x".repeat(1_000_000));
        for _ in 0..100_000 {
            text.push_str("  - *s\n");
        }
        let (_, diagnostics) = load(&[("scalar.yaml", text.as_str())]);
        let refusal = too_large(&diagnostics, "scalar.yaml");
        assert!(refusal.message.contains("alias"), "{refusal}");
    });
}

#[test]
fn a_list_of_more_values_than_a_file_may_hold_is_refused() {
    bounded(
        "a_list_of_more_values_than_a_file_may_hold_is_refused",
        || {
            let yaml = format!("l: [{}]\n", vec!["a"; MAX_VALUES + 1].join(","));
            assert!(yaml.len() < MAX_FILE_BYTES);
            let (_, diagnostics) = load(&[("list.yaml", yaml.as_str())]);
            let refusal = too_large(&diagnostics, "list.yaml");
            assert!(refusal.message.contains("values"), "{refusal}");

            // KDL is counted before the kdl parser runs: it keeps kilobytes per node, and this
            // 3 MB file of one-word lines took it past 2 GB.
            let kdl = "a\n".repeat(1_500_000);
            assert!(kdl.len() < MAX_FILE_BYTES);
            let (_, diagnostics) = load(&[("nodes.kdl", kdl.as_str())]);
            let refusal = too_large(&diagnostics, "nodes.kdl");
            assert!(refusal.message.contains("nodes"), "{refusal}");
            assert_eq!(refusal.loc.line as usize, MAX_KDL_NODES + 1, "{refusal}");

            let kdl = format!("Fleet x {{\n l {}\n}}\n", vec!["1"; 1_000_000].join(" "));
            assert!(kdl.len() < MAX_FILE_BYTES);
            let (_, diagnostics) = load(&[("list.kdl", kdl.as_str())]);
            let refusal = too_large(&diagnostics, "list.kdl");
            assert!(refusal.message.contains("values"), "{refusal}");
        },
    );
}

#[test]
fn an_oversized_file_is_refused_before_it_is_parsed() {
    bounded("an_oversized_file_is_refused_before_it_is_parsed", || {
        // Both start with a syntax error: had the parser seen them, it would say so.
        let filler = "#".repeat(MAX_FILE_BYTES);
        for (name, start) in [("big.yaml", "]: [\n"), ("big.kdl", "}{\n")] {
            let text = format!("{start}{filler}");
            let (model, diagnostics) = load(&[(name, text.as_str())]);
            assert!(model.documents.is_empty());
            assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
            let refusal = too_large(&diagnostics, name);
            assert_eq!((refusal.loc.line, refusal.loc.col), (1, 1));
            assert!(refusal.message.contains("MiB"), "{refusal}");
        }
    });
}

#[test]
fn a_fleet_larger_than_the_total_limit_is_refused_from_the_file_that_crosses_it() {
    bounded(
        "a_fleet_larger_than_the_total_limit_is_refused_from_the_file_that_crosses_it",
        || {
            let file = "#".repeat(MAX_FILE_BYTES - 1) + "\n";
            let count = MAX_TOTAL_BYTES / file.len() + 1;
            let files: Vec<(String, &str)> = (0..count)
                .map(|i| (format!("f{i}.yaml"), file.as_str()))
                .collect();
            let (_, diagnostics) = load(&files);
            let last = format!("f{}.yaml", count - 1);
            let refusal = too_large(&diagnostics, &last);
            assert!(refusal.message.contains("together"), "{refusal}");
        },
    );
}

#[test]
fn deep_nesting_is_refused_with_a_diagnostic() {
    bounded("deep_nesting_is_refused_with_a_diagnostic", || {
        let mut block = String::new();
        for depth in 0..200 {
            block.push_str(&" ".repeat(depth));
            block.push_str("k:\n");
        }
        let cases = [
            ("block.yaml", block),
            ("dashes.yaml", "- ".repeat(1_000_000) + "x\n"),
            ("flow.yaml", "a: ".to_string() + &"[".repeat(1_000_000)),
            (
                "nested.kdl",
                "Fleet x ".to_string() + &"{ a ".repeat(200) + &"}".repeat(200),
            ),
        ];
        for (name, text) in cases {
            let (_, diagnostics) = load(&[(name, text.as_str())]);
            assert!(
                diagnostics
                    .iter()
                    .any(|d| d.is_error() && d.message.contains("nesting deeper than")),
                "{name}: {diagnostics:?}"
            );
        }
    });
}
