//! Pure data handling of a MapReduce job: splitting shipped input at line boundaries into
//! partitions, splitting a file glob into the folder a host lists and the pattern it matches,
//! quoting for the shell line that feeds a host-local file to the map, and the built-in
//! reducers (sum, count, concat).

use std::collections::BTreeMap;
use std::ops::Range;

use remote_agents_spec::Reducer;

/// Splits `text` into at most `parts` byte ranges of about equal size that end at line
/// boundaries (each range but possibly the last ends just after a `\n`). Empty ranges are
/// dropped, so short inputs give fewer partitions; empty input gives none.
pub fn split_lines(text: &str, parts: usize) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let parts = parts.max(1);
    let target = bytes.len().div_ceil(parts).max(1);
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let mut end = (start + target).min(bytes.len());
        if end < bytes.len() {
            // Extend to the end of the line the cut falls in.
            end = match bytes[end - 1..].iter().position(|&b| b == b'\n') {
                Some(offset) => end - 1 + offset + 1,
                None => bytes.len(),
            };
        }
        ranges.push(start..end);
        start = end;
    }
    ranges
}

/// A file glob as a host expands it: the folder to look in and the pattern below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobParts {
    /// The literal leading folders (`~` when the glob starts with a pattern).
    pub root: String,
    /// The rest, matched against paths relative to `root` (`*.txt`, `logs/**/*.log`).
    pub pattern: String,
    /// True when the pattern spans folders (then the host searches recursively).
    pub recursive: bool,
}

fn has_meta(component: &str) -> bool {
    component.contains(['*', '?', '[', '{'])
}

/// Splits `glob` at its first component holding a wildcard. A glob without one names a single
/// file: its folder is the root and its name the pattern.
pub fn split_glob(glob: &str) -> GlobParts {
    let components: Vec<&str> = glob.split('/').collect();
    let first_meta = components
        .iter()
        .position(|c| has_meta(c))
        .unwrap_or(components.len().saturating_sub(1));
    let root = components[..first_meta].join("/");
    let root = if root.is_empty() && glob.starts_with('/') {
        "/".to_string()
    } else if root.is_empty() {
        "~".to_string()
    } else {
        root
    };
    let rest = &components[first_meta..];
    GlobParts {
        root,
        pattern: rest.join("/"),
        recursive: rest.len() > 1,
    }
}

/// Quotes one word for `/bin/sh`.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b))
    {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Errors of the built-in reducers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReduceError {
    #[error("sum: line {line} of partition {partition} has no number at its end: {text:?}")]
    NotANumber {
        partition: usize,
        line: usize,
        text: String,
    },
}

/// Runs a built-in reducer over the map outputs, in partition order.
///
/// - `sum`: each line is `KEY VALUE` (the last whitespace-separated field is the number, the
///   rest is the key); prints `KEY TOTAL` per key, sorted by key. Lines that are only a number
///   add to one grand total, printed alone when no line has a key.
/// - `count`: the number of non-empty lines.
/// - `concat`: the outputs joined in partition order.
pub fn builtin(reducer: Reducer, outputs: &[&str]) -> Result<String, ReduceError> {
    match reducer {
        Reducer::Concat => Ok(outputs.concat()),
        Reducer::Count => Ok(format!(
            "{}\n",
            outputs
                .iter()
                .flat_map(|o| o.lines())
                .filter(|l| !l.trim().is_empty())
                .count()
        )),
        Reducer::Sum => sum(outputs),
    }
}

/// Integers add exactly; any fraction switches that key to floating point.
#[derive(Debug, Clone, Copy)]
enum Total {
    Int(i128),
    Float(f64),
}

impl Total {
    fn add(self, text: &str) -> Option<Total> {
        if let Ok(n) = text.parse::<i128>() {
            return Some(match self {
                Total::Int(t) => Total::Int(t.checked_add(n)?),
                Total::Float(t) => Total::Float(t + n as f64),
            });
        }
        let x = text.parse::<f64>().ok().filter(|x| x.is_finite())?;
        Some(match self {
            Total::Int(t) => Total::Float(t as f64 + x),
            Total::Float(t) => Total::Float(t + x),
        })
    }
}

impl std::fmt::Display for Total {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Total::Int(n) => write!(f, "{n}"),
            Total::Float(x) => write!(f, "{x}"),
        }
    }
}

fn sum(outputs: &[&str]) -> Result<String, ReduceError> {
    let mut totals: BTreeMap<&str, Total> = BTreeMap::new();
    let mut grand: Option<Total> = None;
    for (partition, output) in outputs.iter().enumerate() {
        for (index, line) in output.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() {
                continue;
            }
            let not_a_number = || ReduceError::NotANumber {
                partition,
                line: index + 1,
                text: line.to_string(),
            };
            match trimmed.rsplit_once(char::is_whitespace) {
                Some((key, value)) => {
                    let key = key.trim_end();
                    let total = totals.entry(key).or_insert(Total::Int(0));
                    *total = total.add(value).ok_or_else(not_a_number)?;
                }
                None => {
                    grand = Some(
                        grand
                            .unwrap_or(Total::Int(0))
                            .add(trimmed)
                            .ok_or_else(not_a_number)?,
                    );
                }
            }
        }
    }
    let mut out = String::new();
    if let Some(grand) = grand
        && totals.is_empty()
    {
        out.push_str(&format!("{grand}\n"));
        return Ok(out);
    }
    if let Some(grand) = grand {
        totals.insert("", grand);
    }
    for (key, total) in totals {
        out.push_str(key);
        out.push(' ');
        out.push_str(&total.to_string());
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces<'a>(text: &'a str, ranges: &[Range<usize>]) -> Vec<&'a str> {
        ranges.iter().map(|r| &text[r.clone()]).collect()
    }

    #[test]
    fn lines_split_into_near_equal_parts_at_line_ends() {
        let text = "a b\nc d\ne f\ng h\n";
        assert_eq!(
            pieces(text, &split_lines(text, 2)),
            vec!["a b\nc d\n", "e f\ng h\n"]
        );
        // More parts than lines: one line each, none empty.
        assert_eq!(split_lines(text, 10).len(), 4);
        // A last line without a newline stays whole.
        let text = "one\ntwo\nthree";
        assert_eq!(pieces(text, &split_lines(text, 3)).concat(), text);
        assert!(split_lines("", 4).is_empty());
        // A line longer than a part is never cut.
        let long = format!("{}\nx\n", "y".repeat(100));
        assert_eq!(
            pieces(&long, &split_lines(&long, 4)),
            vec![&long[..101], "x\n"]
        );
    }

    #[test]
    fn globs_split_into_the_folder_a_host_lists_and_the_pattern() {
        assert_eq!(
            split_glob("/data/logs/*.txt"),
            GlobParts {
                root: "/data/logs".into(),
                pattern: "*.txt".into(),
                recursive: false
            }
        );
        assert_eq!(
            split_glob("/data/**/*.log"),
            GlobParts {
                root: "/data".into(),
                pattern: "**/*.log".into(),
                recursive: true
            }
        );
        assert_eq!(split_glob("*.csv").root, "~");
        assert_eq!(split_glob("input/part-?").root, "input");
        // No wildcard: one file.
        let one = split_glob("/etc/hostname");
        assert_eq!(
            (one.root.as_str(), one.pattern.as_str()),
            ("/etc", "hostname")
        );
    }

    #[test]
    fn shell_quoting_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("/tmp/a.txt"), "/tmp/a.txt");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn sum_adds_values_per_key_in_key_order() {
        let outputs = ["the 2\nfox 1\n", "the 3\nnew york 4\n", "\n"];
        assert_eq!(
            builtin(Reducer::Sum, &outputs).unwrap(),
            "fox 1\nnew york 4\nthe 5\n"
        );
        assert_eq!(builtin(Reducer::Sum, &["3\n", "4\n"]).unwrap(), "7\n");
        assert_eq!(
            builtin(Reducer::Sum, &["x 1.5\n", "x 1\n"]).unwrap(),
            "x 2.5\n"
        );
        let err = builtin(Reducer::Sum, &["ok 1\n", "a b\n"]).unwrap_err();
        assert_eq!(
            err,
            ReduceError::NotANumber {
                partition: 1,
                line: 1,
                text: "a b".into()
            }
        );
    }

    #[test]
    fn count_and_concat_keep_partition_order() {
        assert_eq!(
            builtin(Reducer::Count, &["a\nb\n", "\nc\n"]).unwrap(),
            "3\n"
        );
        assert_eq!(builtin(Reducer::Concat, &["1\n", "2\n"]).unwrap(), "1\n2\n");
    }
}
