//! Folding per-host results into groups of identical output, like `dshbak -c` or `clush -b`, so
//! a person or a model reads 1,000 hosts as a handful of groups. Also compresses host lists
//! (`web-1,web-2,web-3` → `web-[1-3]`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{HostRecord, HostStatus};

/// Hosts whose status, exit code and output are byte-for-byte identical.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OutputGroup {
    /// The hosts in this group, sorted.
    pub hosts: Vec<String>,
    /// The same list compressed into ranges, e.g. `web-[1-3],db-1`.
    pub host_set: String,
    pub status: HostStatus,
    pub exit: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Why the hosts failed, when the failure happened before a command ran (denied, unreachable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub truncated: bool,
}

/// The folded view of a fan-out: a one-line summary and the distinct groups, largest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Folded {
    pub summary: String,
    pub hosts: usize,
    pub ok: usize,
    pub not_ok: usize,
    pub groups: Vec<OutputGroup>,
    /// Connected hosts that no declaration of the fleet's spec covers, compressed like
    /// `host_set`; also named in the summary.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub undeclared: String,
}

/// Groups records by everything a reader compares: status, exit code, stdout, stderr, error.
pub fn fold(records: &[HostRecord]) -> Folded {
    type Key<'a> = (
        HostStatus,
        Option<i32>,
        &'a str,
        &'a str,
        Option<&'a str>,
        bool,
    );
    let mut by_output: BTreeMap<Key<'_>, Vec<String>> = BTreeMap::new();
    for record in records {
        let key = (
            record.status,
            record.exit,
            record.stdout.as_str(),
            record.stderr.as_str(),
            record.error.as_deref(),
            record.truncated,
        );
        by_output.entry(key).or_default().push(record.host.clone());
    }
    let mut groups: Vec<OutputGroup> = by_output
        .into_iter()
        .map(
            |((status, exit, stdout, stderr, error, truncated), mut hosts)| {
                hosts.sort_by(|a, b| natural_cmp(a, b));
                OutputGroup {
                    host_set: compress_hosts(&hosts),
                    hosts,
                    status,
                    exit,
                    stdout: stdout.to_string(),
                    stderr: stderr.to_string(),
                    error: error.map(str::to_string),
                    truncated,
                }
            },
        )
        .collect();
    // Largest group first; ties in a stable, readable order.
    groups.sort_by(|a, b| {
        b.hosts
            .len()
            .cmp(&a.hosts.len())
            .then_with(|| natural_cmp(&a.hosts[0], &b.hosts[0]))
    });
    let ok = records
        .iter()
        .filter(|r| r.status == HostStatus::Ok)
        .count();
    let mut undeclared: Vec<String> = records
        .iter()
        .filter(|r| r.undeclared)
        .map(|r| r.host.clone())
        .collect();
    undeclared.sort_by(|a, b| natural_cmp(a, b));
    let mut summary = summary_line(records.len(), ok, &groups);
    let undeclared = compress_hosts(&undeclared);
    if !undeclared.is_empty() {
        summary.push_str(&format!("; not declared in the spec: {undeclared}"));
    }
    Folded {
        summary,
        hosts: records.len(),
        ok,
        not_ok: records.len() - ok,
        groups,
        undeclared,
    }
}

fn summary_line(total: usize, ok: usize, groups: &[OutputGroup]) -> String {
    let outcome = if ok == total {
        format!("{total} hosts, all ok")
    } else {
        format!("{total} hosts, {ok} ok, {} not ok", total - ok)
    };
    match groups {
        [] => "0 hosts matched".to_string(),
        [_] => format!("{outcome}; {total} identical"),
        [largest, rest @ ..] => format!(
            "{outcome}; {} identical, {} differ in {} other group{}",
            largest.hosts.len(),
            total - largest.hosts.len(),
            rest.len(),
            if rest.len() == 1 { "" } else { "s" }
        ),
    }
}

/// Renders the groups as text for a terminal: a header per group, then its output.
pub fn render_text(folded: &Folded) -> String {
    let mut out = String::new();
    for group in &folded.groups {
        out.push_str(&format!(
            "---------------- {} ({}) {}{}\n",
            group.host_set,
            group.hosts.len(),
            group.status,
            match group.exit {
                Some(code) => format!(" exit {code}"),
                None => String::new(),
            }
        ));
        if let Some(error) = &group.error {
            out.push_str(&format!("error: {error}\n"));
        }
        out.push_str(&group.stdout);
        if !group.stdout.is_empty() && !group.stdout.ends_with('\n') {
            out.push('\n');
        }
        if !group.stderr.is_empty() {
            for line in group.stderr.lines() {
                out.push_str(&format!("stderr: {line}\n"));
            }
        }
        if group.truncated {
            out.push_str("(output truncated)\n");
        }
    }
    out.push_str(&folded.summary);
    out.push('\n');
    out
}

/// Compresses sorted host names into ranges: `web-1,web-2,web-3,db-1` → `db-1,web-[1-3]`.
/// Only a trailing run of digits is ranged, and only when the numbers have no leading zeros
/// (so the expansion is unambiguous).
pub fn compress_hosts(hosts: &[String]) -> String {
    let mut by_prefix: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut plain: Vec<&str> = Vec::new();
    for host in hosts {
        let digits = host.len() - host.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (prefix, number) = host.split_at(host.len() - digits);
        match number.parse::<u64>() {
            Ok(n) if !(number.len() > 1 && number.starts_with('0')) => {
                by_prefix.entry(prefix).or_default().push(n)
            }
            _ => plain.push(host),
        }
    }
    let mut parts: Vec<String> = plain.iter().map(|h| h.to_string()).collect();
    for (prefix, mut numbers) in by_prefix {
        numbers.sort_unstable();
        numbers.dedup();
        if numbers.len() == 1 {
            parts.push(format!("{prefix}{}", numbers[0]));
            continue;
        }
        let mut ranges = Vec::new();
        let mut start = numbers[0];
        let mut end = start;
        for &n in &numbers[1..] {
            if n == end + 1 {
                end = n;
            } else {
                ranges.push(range_text(start, end));
                start = n;
                end = n;
            }
        }
        ranges.push(range_text(start, end));
        parts.push(format!("{prefix}[{}]", ranges.join(",")));
    }
    parts.sort_by(|a, b| natural_cmp(a, b));
    parts.join(",")
}

fn range_text(start: u64, end: u64) -> String {
    if start == end {
        start.to_string()
    } else {
        format!("{start}-{end}")
    }
}

/// Orders `web-2` before `web-10`: compares runs of digits by value.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.chars().next(), b.chars().next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let a_end = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                let b_end = b.find(|c: char| !c.is_ascii_digit()).unwrap_or(b.len());
                let (a_digits, b_digits) = (
                    a[..a_end].trim_start_matches('0'),
                    b[..b_end].trim_start_matches('0'),
                );
                let order = a_digits
                    .len()
                    .cmp(&b_digits.len())
                    .then_with(|| a_digits.cmp(b_digits))
                    .then_with(|| a_end.cmp(&b_end));
                if order != std::cmp::Ordering::Equal {
                    return order;
                }
                a = &a[a_end..];
                b = &b[b_end..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                a = &a[x.len_utf8()..];
                b = &b[y.len_utf8()..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(host: &str, status: HostStatus, stdout: &str) -> HostRecord {
        HostRecord {
            host: host.to_string(),
            status,
            exit: (status == HostStatus::Ok).then_some(0),
            stdout: stdout.to_string(),
            ..HostRecord::new(host, status)
        }
    }

    /// Hosts no declaration covers fold with the others (the flag is not output) and are named
    /// once, in the summary.
    #[test]
    fn undeclared_hosts_are_named_in_the_summary_not_split_into_groups() {
        let mut records: Vec<HostRecord> = ["web-1", "stray-1", "stray-2"]
            .iter()
            .map(|host| record(host, HostStatus::Ok, "same\n"))
            .collect();
        records[1].undeclared = true;
        records[2].undeclared = true;
        let folded = fold(&records);
        assert_eq!(folded.groups.len(), 1);
        assert_eq!(folded.undeclared, "stray-[1-2]");
        assert!(
            folded
                .summary
                .ends_with("; not declared in the spec: stray-[1-2]"),
            "{}",
            folded.summary
        );
        assert!(fold(&records[..1]).undeclared.is_empty());
    }

    #[test]
    fn two_hundred_hosts_with_two_outputs_fold_into_exactly_two_groups() {
        let records: Vec<HostRecord> = (1..=200)
            .map(|i| {
                let out = if i % 50 == 0 { "old\n" } else { "new\n" };
                record(&format!("node-{i}"), HostStatus::Ok, out)
            })
            .collect();
        let folded = fold(&records);
        assert_eq!(folded.groups.len(), 2);
        assert_eq!(folded.groups[0].hosts.len(), 196);
        assert_eq!(folded.groups[0].stdout, "new\n");
        assert_eq!(folded.groups[1].host_set, "node-[50,100,150,200]");
        assert_eq!(
            folded.summary,
            "200 hosts, all ok; 196 identical, 4 differ in 1 other group"
        );
    }

    #[test]
    fn status_is_part_of_the_group_key() {
        let records = vec![
            record("a-1", HostStatus::Ok, ""),
            record("a-2", HostStatus::Unreachable, ""),
        ];
        let folded = fold(&records);
        assert_eq!(folded.groups.len(), 2);
        assert_eq!(folded.not_ok, 1);
        assert_eq!(
            folded.summary,
            "2 hosts, 1 ok, 1 not ok; 1 identical, 1 differ in 1 other group"
        );
    }

    #[test]
    fn host_lists_compress_to_ranges() {
        let hosts: Vec<String> = [
            "web-1", "web-2", "web-3", "web-5", "db-1", "mac", "x007", "web-10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(compress_hosts(&hosts), "db-1,mac,web-[1-3,5,10],x007");
    }

    #[test]
    fn natural_order_compares_numbers_by_value() {
        let mut hosts = vec!["web-10", "web-2", "web-1", "api-1"];
        hosts.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(hosts, vec!["api-1", "web-1", "web-2", "web-10"]);
    }

    #[test]
    fn text_rendering_shows_each_group_once() {
        let records = vec![
            record("web-1", HostStatus::Ok, "hello\n"),
            record("web-2", HostStatus::Ok, "hello\n"),
        ];
        let text = render_text(&fold(&records));
        assert_eq!(
            text,
            "---------------- web-[1-2] (2) ok exit 0\nhello\n2 hosts, all ok; 2 identical\n"
        );
    }
}
