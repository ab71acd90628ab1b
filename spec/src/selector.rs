//! Target selectors: the one grammar for picking hosts, used by rules, schedules, jobs and fleet
//! operations alike.
//!
//! ```text
//! selector := item ("," item)*          union of the items; an item that is only `!term`
//!                                        removes its hosts from the union instead
//! item     := factor ("&" factor)*      all of the factors must hold
//! factor   := "!"? term
//! term     := "all" | "name:" GLOB | "tag:" TAG | TAG | "os:" FAMILY | "fact:" KEY "=" VALUE
//! ```
//! Whitespace around `,` and `&` is ignored. A selector with only exclusions starts from `all`
//! (`!db` is every host but the db ones).

use globset::{GlobBuilder, GlobMatcher};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What a selector is matched against: a host's name, tags and facts (live facts merged with the
/// spec's overrides).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    pub name: String,
    pub tags: BTreeSet<String>,
    /// `os` is the OS family (`linux`, `macos`, `windows`, ...).
    pub facts: BTreeMap<String, String>,
}

impl HostFacts {
    pub fn new(name: impl Into<String>) -> Self {
        HostFacts {
            name: name.into(),
            ..HostFacts::default()
        }
    }

    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.insert(tag.into());
        self
    }

    pub fn with_fact(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.facts.insert(key.into(), value.into());
        self
    }
}

/// A host-name glob. Exact names and `prefix*` globs (most of them) are matched without the
/// glob engine, which is comparatively slow per call and runs per rule per host.
#[derive(Debug, Clone)]
pub enum NameMatcher {
    Exact(String),
    Prefix(String),
    Glob(GlobMatcher),
}

impl NameMatcher {
    fn new(pattern: &str, glob: GlobMatcher) -> Self {
        let is_meta = |c: char| matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\');
        if !pattern.contains(is_meta) {
            return NameMatcher::Exact(pattern.to_string());
        }
        match pattern.strip_suffix('*') {
            Some(prefix) if !prefix.contains(is_meta) => NameMatcher::Prefix(prefix.to_string()),
            _ => NameMatcher::Glob(glob),
        }
    }

    pub fn is_match(&self, name: &str) -> bool {
        match self {
            NameMatcher::Exact(exact) => name == exact,
            NameMatcher::Prefix(prefix) => name.starts_with(prefix.as_str()),
            NameMatcher::Glob(glob) => glob.is_match(name),
        }
    }
}

/// A parse error with the character position (0-based) inside the selector text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at character {}", .position + 1)]
pub struct SelectorError {
    pub position: usize,
    pub message: String,
    pub expected: &'static str,
}

#[derive(Debug, Clone)]
pub enum Term {
    All,
    Name(String, NameMatcher),
    Tag(String),
    Os(String),
    Fact(String, String),
}

#[derive(Debug, Clone)]
pub struct Factor {
    pub negated: bool,
    pub term: Term,
}

/// A parsed selector.
#[derive(Debug, Clone)]
pub struct Selector {
    source: String,
    /// Items joined by `,`; each item is an all-of list of factors.
    items: Vec<Vec<Factor>>,
    /// Indices of the items that add hosts, and of those that are a lone `!term` and remove
    /// hosts; split once at parse time because matching runs per rule per host.
    including: Vec<usize>,
    excluding: Vec<usize>,
}

const EXPECTED_TERM: &str =
    "a term: all, name:GLOB, tag:TAG, a bare tag, os:FAMILY or fact:KEY=VALUE";

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '.')
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let chars: Vec<(usize, char)> = text.chars().enumerate().collect();
        let mut items = Vec::new();
        let mut item = Vec::new();
        let mut position = 0;
        let skip_space = |position: &mut usize| {
            while *position < chars.len() && chars[*position].1.is_whitespace() {
                *position += 1;
            }
        };
        if text.trim().is_empty() {
            return Err(SelectorError {
                position: 0,
                message: "empty selector".to_string(),
                expected: EXPECTED_TERM,
            });
        }
        loop {
            skip_space(&mut position);
            let mut negated = false;
            if position < chars.len() && chars[position].1 == '!' {
                negated = true;
                position += 1;
                skip_space(&mut position);
            }
            let start = position;
            // A term runs to the next separator or whitespace.
            while position < chars.len()
                && !matches!(chars[position].1, ',' | '&' | '!')
                && !chars[position].1.is_whitespace()
            {
                position += 1;
            }
            let word: String = chars[start..position].iter().map(|(_, c)| c).collect();
            let term = parse_term(&word, start)?;
            item.push(Factor { negated, term });
            skip_space(&mut position);
            match chars.get(position).map(|(_, c)| *c) {
                None => {
                    items.push(std::mem::take(&mut item));
                    break;
                }
                Some(',') => {
                    items.push(std::mem::take(&mut item));
                    position += 1;
                }
                Some('&') => position += 1,
                Some(other) => {
                    return Err(SelectorError {
                        position,
                        message: format!("unexpected `{other}`"),
                        expected: "`,` (union) or `&` (all of) between terms",
                    });
                }
            }
        }
        let is_exclusion = |item: &Vec<Factor>| item.len() == 1 && item[0].negated;
        let (excluding, including) = (0..items.len()).partition(|&i| is_exclusion(&items[i]));
        Ok(Selector {
            source: text.to_string(),
            items,
            including,
            excluding,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when some term depends on facts (os or fact terms), which are only known live.
    pub fn uses_facts(&self) -> bool {
        self.items
            .iter()
            .flatten()
            .any(|f| matches!(f.term, Term::Os(_) | Term::Fact(..)))
    }

    pub fn matches(&self, host: &HostFacts) -> bool {
        let included = self.including.is_empty()
            || self
                .including
                .iter()
                .any(|&i| self.items[i].iter().all(|f| f.matches(host)));
        included
            && self
                .excluding
                .iter()
                .all(|&i| self.items[i][0].matches(host))
    }
}

impl Factor {
    fn matches(&self, host: &HostFacts) -> bool {
        self.term.matches(host) != self.negated
    }
}

impl Term {
    pub fn matches(&self, host: &HostFacts) -> bool {
        match self {
            Term::All => true,
            Term::Name(_, matcher) => matcher.is_match(&host.name),
            Term::Tag(tag) => host.tags.contains(tag),
            Term::Os(family) => host
                .facts
                .get("os")
                .is_some_and(|os| os.eq_ignore_ascii_case(family)),
            Term::Fact(key, value) => host.facts.get(key).is_some_and(|v| v == value),
        }
    }
}

fn parse_term(word: &str, start: usize) -> Result<Term, SelectorError> {
    let error = |offset: usize, message: String, expected: &'static str| SelectorError {
        position: start + offset,
        message,
        expected,
    };
    if word.is_empty() {
        return Err(error(0, "missing term".to_string(), EXPECTED_TERM));
    }
    let check_word = |text: &str, offset: usize, what: &str| {
        if text.is_empty() {
            return Err(error(offset, format!("empty {what}"), EXPECTED_TERM));
        }
        match text.chars().position(|c| !is_word_char(c)) {
            Some(bad) => Err(error(
                offset + bad,
                format!(
                    "`{}` is not allowed in a {what}",
                    text.chars().nth(bad).unwrap_or(' ')
                ),
                "letters, digits, `-`, `_` or `.`",
            )),
            None => Ok(text.to_string()),
        }
    };
    if word == "all" {
        return Ok(Term::All);
    }
    let Some((prefix, rest)) = word.split_once(':') else {
        return check_word(word, 0, "tag").map(Term::Tag);
    };
    let offset = prefix.chars().count() + 1;
    match prefix {
        "name" => {
            if rest.is_empty() {
                return Err(error(
                    offset,
                    "empty name glob".to_string(),
                    "a host name or glob",
                ));
            }
            let glob = GlobBuilder::new(rest)
                .literal_separator(false)
                .build()
                .map_err(|e| {
                    error(
                        offset,
                        format!("bad glob: {}", e.kind()),
                        "a glob such as web-*",
                    )
                })?;
            Ok(Term::Name(
                rest.to_string(),
                NameMatcher::new(rest, glob.compile_matcher()),
            ))
        }
        "tag" => check_word(rest, offset, "tag").map(Term::Tag),
        "os" => check_word(rest, offset, "os family").map(|f| Term::Os(f.to_ascii_lowercase())),
        "fact" => {
            let Some((key, value)) = rest.split_once('=') else {
                return Err(error(
                    offset + rest.chars().count(),
                    "fact term without `=`".to_string(),
                    "fact:KEY=VALUE",
                ));
            };
            let key = check_word(key, offset, "fact key")?;
            if value.is_empty() {
                return Err(error(
                    offset + key.chars().count() + 1,
                    "empty fact value".to_string(),
                    "fact:KEY=VALUE",
                ));
            }
            Ok(Term::Fact(key, value.to_string()))
        }
        other => Err(error(
            0,
            format!("unknown term kind `{other}:`"),
            EXPECTED_TERM,
        )),
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web(name: &str) -> HostFacts {
        HostFacts::new(name).with_tag("web").with_tag("frontend")
    }

    #[test]
    fn grammar_matches_the_design() {
        let db = HostFacts::new("db-1")
            .with_tag("db")
            .with_fact("os", "linux")
            .with_fact("region", "eu");
        let mac = HostFacts::new("mac-1")
            .with_tag("desk")
            .with_fact("os", "macOS");
        let cases: &[(&str, &HostFacts, bool)] = &[
            ("all", &db, true),
            ("web", &web("web-1"), true),
            ("tag:web", &db, false),
            ("name:web-*", &web("web-2"), true),
            ("name:web-[12]", &web("web-3"), false),
            ("os:linux", &db, true),
            ("os:macos", &mac, true),
            ("fact:region=eu", &db, true),
            ("fact:region=us", &db, false),
            ("web,db", &db, true),
            ("web & frontend", &web("web-1"), true),
            ("web&db", &web("web-1"), false),
            ("web,!web-3", &web("web-3"), true), // web-3 is a tag test here, not a name
            ("web,!name:web-3", &web("web-3"), false),
            ("web,!name:web-3", &web("web-2"), true),
            ("!db", &db, false),
            ("!db", &mac, true),
            ("web&!name:web-1", &web("web-1"), false),
        ];
        for (text, host, expected) in cases {
            let selector = Selector::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(selector.matches(host), *expected, "{text} on {}", host.name);
        }
    }

    #[test]
    fn errors_carry_positions() {
        let cases: &[(&str, usize)] = &[
            ("", 0),
            ("web,", 4),
            ("web,,db", 4),
            ("tag:", 4),
            ("bogus:x", 0),
            ("fact:region", 11),
            ("fact:region=", 12),
            ("name:web-[", 5),
            ("tag:we$b", 6),
            ("web db", 4),
        ];
        for (text, position) in cases {
            let error = Selector::parse(text).expect_err(text);
            assert_eq!(error.position, *position, "{text}: {error}");
        }
    }
}
