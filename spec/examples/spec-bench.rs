//! Benchmark: generate a 5,000-host, 500-rule spec (YAML), parse it and compute every host's
//! effective config; print the total and the time per host. Run in release mode:
//! `cargo run --release -p remote-agents-spec --example spec-bench [HOSTS RULES]`.

use remote_agents_spec::{HostFacts, has_errors, load};
use std::fmt::Write as _;
use std::time::Instant;

fn generate(hosts: usize, rules: usize) -> String {
    let mut out = String::from(
        "apiVersion: remote-agents.dev/v1\nkind: Fleet\nmetadata:\n  name: bench\nspec:\n  defaults:\n    mode: plan\n    policy:\n      paths:\n        deny: [/etc/shadow, \"~/.ssh/**\"]\n  hosts:\n",
    );
    for i in 0..hosts {
        let _ = writeln!(
            out,
            "    - name: host-{i}\n      tags: [group-{}, rack-{}]\n      facts:\n        region: r{}",
            i % 50,
            i % 20,
            i % 5
        );
    }
    out.push_str("  rules:\n");
    for r in 0..rules {
        let target = match r % 4 {
            0 => format!("tag:group-{}", r % 50),
            1 => format!("rack-{} & !tag:group-{}", r % 20, r % 50),
            2 => format!("name:host-{}*", r % 100),
            _ => format!("fact:region=r{},tag:group-{}", r % 5, r % 50),
        };
        let mode = ["plan", "edit", "bypass", "disabled"][r % 4];
        let _ = writeln!(
            out,
            "    - name: rule-{r}\n      target: \"{target}\"\n      mode: {mode}\n      policy:\n        commands:\n          deny: [\"rm -rf /{r}*\"]"
        );
    }
    out
}

/// This process's CPU time (user + system) from /proc, in ms: on a shared machine wall time also
/// counts waiting for a core, CPU time does not. `None` where /proc is missing.
fn cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // Linux reports in USER_HZ, 100 per second on every mainstream configuration.
    Some(ticks * 10.0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let hosts: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(5_000);
    let rules: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(500);
    let text = generate(hosts, rules);

    let cpu_start = cpu_ms();
    let start = Instant::now();
    let (model, diagnostics) = load(&[("bench.yaml", text.as_str())]);
    let parsed = start.elapsed();
    assert!(
        !has_errors(&diagnostics),
        "generated spec is invalid: {:?}",
        &diagnostics[..1]
    );

    let names = model.declared_hosts();
    let effective_start = Instant::now();
    let mut matched_rules = 0usize;
    for name in &names {
        matched_rules += model.effective_config(&HostFacts::new(name)).rules.len();
    }
    let effective = effective_start.elapsed();
    let total = start.elapsed();
    let cpu = cpu_ms().zip(cpu_start).map(|(end, begin)| end - begin);
    println!(
        "spec-bench: {hosts} hosts, {rules} rules, {} KiB of YAML",
        text.len() / 1024
    );
    println!(
        "  parse + validate   {:>8.1} ms",
        parsed.as_secs_f64() * 1e3
    );
    println!(
        "  effective configs  {:>8.1} ms ({:.1} µs per host, {matched_rules} rule matches)",
        effective.as_secs_f64() * 1e3,
        effective.as_secs_f64() * 1e6 / names.len().max(1) as f64
    );
    println!(
        "  total              {:>8.1} ms ({:.1} µs per host; target well under 1000 ms)",
        total.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e6 / names.len().max(1) as f64
    );
    if let Some(cpu) = cpu {
        println!("  cpu time           {cpu:>8.1} ms (10 ms resolution)");
    }
}
