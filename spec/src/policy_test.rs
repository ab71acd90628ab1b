//! The fleet repo's policy tests (`spec.tests` of the Fleet, like Tailscale's ACL `tests`):
//! each assertion is judged on every declared host its target selects, with the node's own
//! decisions (`gate`) over the effective config of that host, and every failing assertion
//! becomes an error at its own file:line:col saying what holds instead and which line of the
//! spec makes it so. Being errors, they refuse `fleetctl validate`, every apply, and a bundle
//! at the node, like any other invalid spec.
//!
//! What is judged is the spec's share of a host's gate: its mode, the built-in hard limits and
//! the path lists the spec gives it. A node's local config can only narrow that (its roots, its
//! own deny lists and files), so a "may not" that holds here holds on the node; a "may" can
//! still be refused there by local settings or a mode override. Hosts declared by glob
//! (`lab-*`) stand for hosts not yet known and are not judged.
//!
//! A path assertion may name a glob (`/etc/**`). It is judged on sample paths: the glob itself
//! with each wildcard filled in, and the samples of every list glob and hard limit that fall
//! inside it (`/etc/nginx/x` for an allow glob `/etc/nginx/**`), so the path a list singles out
//! is the one tried. Every sample must be allowed (`writable`, `readable`) or refused
//! (`unwritable`, `unreadable`). This finds what the lists of the spec allow or deny inside the
//! glob; it is not a proof over all paths of a glob that a list entry names only in part.

use crate::FleetModel;
use crate::diagnostic::{Code, Diagnostic, Loc};
use crate::effective::{EffectiveConfig, Origin, Sourced};
use crate::gate::{self, Access, Intent, PathLists, PathVerdict};
use crate::model::{Capability, FleetSpec, Mode, PolicyTest};
use crate::selector::{HostFacts, Selector};
use globset::{Glob, GlobMatcher, GlobSet, GlobSetBuilder};
use std::path::Path;

/// Hosts named in one failure message before the rest are only counted.
const HOSTS_SHOWN: usize = 3;

/// One selected host: its effective config and its compiled path lists.
struct Judged {
    config: EffectiveConfig,
    subject: HostFacts,
    deny: GlobSet,
    allow: Option<GlobSet>,
}

struct Hard {
    any: GlobSet,
    write: GlobSet,
}

fn glob_set<'a>(globs: impl IntoIterator<Item = &'a str>) -> GlobSet {
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        // Bad globs are reported by validation; a test judges with the ones that compile,
        // like a node that refused the policy would keep none of them.
        if let Ok(glob) = Glob::new(glob) {
            builder.add(glob);
        }
    }
    builder.build().unwrap_or_else(|_| GlobSet::empty())
}

fn values(list: &[Sourced<String>]) -> impl Iterator<Item = &str> {
    list.iter().map(|s| s.value.as_str())
}

/// Every test of the fleet, judged; failures are pushed as errors.
pub(crate) fn check(
    model: &FleetModel,
    document: usize,
    spec: &FleetSpec,
    diagnostics: &mut Vec<Diagnostic>,
) {
    if spec.tests.is_empty() {
        return;
    }
    let hard = Hard {
        any: glob_set(gate::HARD_DENY_ANY.iter().copied()),
        write: glob_set(gate::HARD_DENY_WRITE.iter().copied()),
    };
    let hosts: Vec<Judged> = model
        .declared_hosts()
        .into_iter()
        .map(|name| {
            let config = model.effective_config(&HostFacts::new(name));
            let subject = HostFacts {
                name: config.host.clone(),
                tags: config.tags.iter().map(|t| t.value.clone()).collect(),
                facts: config
                    .facts
                    .iter()
                    .map(|(k, v)| (k.clone(), v.value.clone()))
                    .collect(),
            };
            let deny = glob_set(values(&config.policy.paths.deny));
            let allow = (!config.policy.paths.allow.is_empty())
                .then(|| glob_set(values(&config.policy.paths.allow)));
            Judged {
                config,
                subject,
                deny,
                allow,
            }
        })
        .collect();
    let mut cx = Cx {
        model,
        document,
        spec,
        hard: &hard,
        diagnostics,
    };
    for (i, test) in spec.tests.iter().enumerate() {
        cx.test(&format!("spec.tests[{i}]"), test, &hosts);
    }
}

struct Cx<'a> {
    model: &'a FleetModel,
    document: usize,
    spec: &'a FleetSpec,
    hard: &'a Hard,
    diagnostics: &'a mut Vec<Diagnostic>,
}

/// A failure on some hosts: the first one's explanation and the names of the others.
struct Failures {
    first: Option<(String, String)>,
    others: Vec<String>,
}

impl Failures {
    fn new() -> Self {
        Failures {
            first: None,
            others: Vec::new(),
        }
    }

    fn add(&mut self, host: &str, why: String) {
        if self.first.is_none() {
            self.first = Some((host.to_string(), why));
        } else {
            self.others.push(host.to_string());
        }
    }

    /// "on db-1: …", with the other failing hosts counted.
    fn text(&self) -> Option<String> {
        let (host, why) = self.first.as_ref()?;
        let mut text = format!("on {host}: {why}");
        if !self.others.is_empty() {
            let shown: Vec<&str> = self
                .others
                .iter()
                .take(HOSTS_SHOWN)
                .map(String::as_str)
                .collect();
            let more = self.others.len() - shown.len();
            text.push_str(&format!(
                " (also fails on {}{})",
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
        }
        Some(text)
    }
}

/// `written at file:line` for a value that came from the spec.
fn at(from: &Origin) -> String {
    match from {
        Origin::Spec(loc) => format!("at {}:{}", loc.file, loc.line),
        Origin::Model => "in the model".into(),
        Origin::BuiltIn => "by default".into(),
        Origin::Live => "live".into(),
    }
}

impl Cx<'_> {
    fn loc(&self, path: &str) -> Loc {
        self.model
            .sources
            .nearest(self.document, path)
            .cloned()
            .unwrap_or_else(|| Loc {
                file: "<model>".into(),
                line: 0,
                col: 0,
                offset: 0,
                len: 0,
            })
    }

    fn fail(&mut self, path: &str, message: String, hint: Option<String>) {
        let mut diagnostic =
            Diagnostic::error(Code::PolicyTestFailed, self.loc(path), path, message);
        diagnostic.hint = hint;
        self.diagnostics.push(diagnostic);
    }

    fn test(&mut self, path: &str, test: &PolicyTest, hosts: &[Judged]) {
        let label = test
            .name
            .as_deref()
            .map(|name| format!("policy test `{name}`"))
            .unwrap_or_else(|| "policy test".to_string());
        if test.accept.is_empty()
            && test.deny.is_empty()
            && test.mode.is_none()
            && test.writable.is_empty()
            && test.unwritable.is_empty()
            && test.readable.is_empty()
            && test.unreadable.is_empty()
        {
            let mut d = Diagnostic::error(
                Code::MissingField,
                self.loc(path),
                path,
                format!("{label} asserts nothing"),
            );
            d.expected = Some(
                "one of accept, deny, mode, writable, unwritable, readable, unreadable".into(),
            );
            self.diagnostics.push(d);
            return;
        }
        // A bad selector is reported by validation.
        let Ok(selector) = Selector::parse(&test.target) else {
            return;
        };
        let selected: Vec<&Judged> = hosts
            .iter()
            .filter(|h| selector.matches(&h.subject))
            .collect();
        if selected.is_empty() {
            self.fail(
                &format!("{path}.target"),
                format!(
                    "{label}: target `{}` selects no declared host, so it would assert nothing",
                    test.target
                ),
                Some("check the tag spelling, or declare the hosts it is about".into()),
            );
            return;
        }
        if let Some(mode) = test.mode {
            let mut failures = Failures::new();
            for host in &selected {
                let actual = &host.config.mode;
                if actual.value != mode {
                    failures.add(
                        &host.config.host,
                        format!("it is in {} mode, set {}", actual.value, at(&actual.from)),
                    );
                }
            }
            if let Some(text) = failures.text() {
                self.fail(
                    &format!("{path}.mode"),
                    format!(
                        "{label}: expected `{}` in {mode} mode, but {text}",
                        test.target
                    ),
                    None,
                );
            }
        }
        self.capabilities(path, &label, test, &selected);
        for (field, intent, allowed) in [
            ("writable", Intent::Write, true),
            ("unwritable", Intent::Write, false),
            ("readable", Intent::Read, true),
            ("unreadable", Intent::Read, false),
        ] {
            let list = match field {
                "writable" => &test.writable,
                "unwritable" => &test.unwritable,
                "readable" => &test.readable,
                _ => &test.unreadable,
            };
            for (j, pattern) in list.iter().enumerate() {
                self.path(
                    &format!("{path}.{field}[{j}]"),
                    &label,
                    &test.target,
                    pattern,
                    intent,
                    allowed,
                    &selected,
                );
            }
        }
    }

    /// The operator the test names, as the key the node compares: by name among the fleet's
    /// operators, or a key written out. `Err` when it names neither.
    fn operator_key(&mut self, path: &str, operator: &str) -> Result<String, ()> {
        if let Some(found) = self.spec.operators.iter().find(|o| o.name == operator) {
            return Ok(found.key.clone());
        }
        if crate::parse_operator_key(operator).is_ok() {
            return Ok(operator.to_string());
        }
        let names: Vec<&str> = self
            .spec
            .operators
            .iter()
            .map(|o| o.name.as_str())
            .collect();
        let mut d = Diagnostic::error(
            Code::BadValue,
            self.loc(path),
            path,
            format!("no operator named `{operator}` in this fleet"),
        );
        d.expected = Some(if names.is_empty() {
            "an `ed25519:` key (this fleet lists no operators)".into()
        } else {
            format!(
                "the name of an operator ({}) or an `ed25519:` key",
                names.join(", ")
            )
        });
        if let Some(near) = crate::decode::closest(operator, &names) {
            d.hint = Some(format!("did you mean `{near}`?"));
        }
        self.diagnostics.push(d);
        Err(())
    }

    /// Where an operator with this key is declared, for the explanation of a grant.
    fn operator_origin(&self, key: Option<&str>, capability: Capability) -> String {
        let found = self
            .spec
            .operators
            .iter()
            .position(|o| Some(o.key.as_str()) == key && o.allows(capability));
        match found {
            Some(i) => {
                let loc = self.loc(&format!("spec.operators[{i}]"));
                format!(
                    "operator `{}` declared at {}:{} allows it",
                    self.spec.operators[i].name, loc.file, loc.line
                )
            }
            None => "the fleet lists no operators, so anyone with the room token may".into(),
        }
    }

    fn capabilities(&mut self, path: &str, label: &str, test: &PolicyTest, hosts: &[&Judged]) {
        if test.accept.is_empty() && test.deny.is_empty() {
            return;
        }
        let key = match &test.operator {
            Some(operator) => match self.operator_key(&format!("{path}.operator"), operator) {
                Ok(key) => Some(key),
                Err(()) => return,
            },
            None => None,
        };
        let who = match &test.operator {
            Some(operator) => format!("operator `{operator}`"),
            None => "a caller with no operator key".to_string(),
        };
        for (field, list, expect) in [("accept", &test.accept, true), ("deny", &test.deny, false)] {
            for (j, &capability) in list.iter().enumerate() {
                let mut failures = Failures::new();
                for host in hosts {
                    let verdict = self.may_use(key.as_deref(), capability, host);
                    match (verdict, expect) {
                        (Ok(()), false) => failures.add(
                            &host.config.host,
                            format!(
                                "it may: {} (mode {}, set {})",
                                self.operator_origin(key.as_deref(), capability),
                                host.config.mode.value,
                                at(&host.config.mode.from)
                            ),
                        ),
                        (Err(why), true) => failures.add(&host.config.host, why),
                        _ => {}
                    }
                }
                if let Some(text) = failures.text() {
                    let expected = if expect { "may" } else { "may not" };
                    self.fail(
                        &format!("{path}.{field}[{j}]"),
                        format!(
                            "{label}: expected {who} {expected} {capability} on `{}`, but {text}",
                            test.target
                        ),
                        None,
                    );
                }
            }
        }
    }

    /// Whether a caller with `key` may use `capability` on `host`: the node's operator check,
    /// then its mode for the capabilities a mode decides.
    fn may_use(
        &self,
        key: Option<&str>,
        capability: Capability,
        host: &Judged,
    ) -> Result<(), String> {
        gate::authorize_operator(&self.spec.operators, key, capability, &host.subject)?;
        let access = match capability {
            Capability::Read => Access::Read,
            Capability::Write => Access::Write,
            Capability::Exec | Capability::Task => Access::Exec,
            Capability::Admin => Access::Admin,
            // Git, schedules and applies are partly reads and partly writes, or not the mode's
            // to decide: the operator check is the whole answer.
            Capability::Git | Capability::Schedule | Capability::Apply => return Ok(()),
        };
        match gate::mode_refusal(host.config.mode.value, access) {
            Some(_) => Err(format!(
                "the host is in {} mode (set {}), which refuses {capability}",
                host.config.mode.value,
                at(&host.config.mode.from)
            )),
            None => Ok(()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn path(
        &mut self,
        path: &str,
        label: &str,
        target: &str,
        pattern: &str,
        intent: Intent,
        expect_allowed: bool,
        hosts: &[&Judged],
    ) {
        let matcher = match Glob::new(pattern) {
            Ok(glob) => glob.compile_matcher(),
            Err(error) => {
                let mut d = Diagnostic::error(
                    Code::BadGlob,
                    self.loc(path),
                    path,
                    format!("bad glob `{pattern}`: {}", error.kind()),
                );
                d.expected = Some("a path, or a glob such as `/etc/**`".into());
                self.diagnostics.push(d);
                return;
            }
        };
        let (verb, participle) = if intent == Intent::Write {
            ("write", "written")
        } else {
            ("read", "read")
        };
        let mut failures = Failures::new();
        for host in hosts {
            for sample in samples(pattern, &matcher, host) {
                let why = self.judge(host, Path::new(&sample), intent);
                match (why, expect_allowed) {
                    (Ok(how), false) => {
                        failures.add(
                            &host.config.host,
                            format!("{sample} may be {participle}{how}"),
                        );
                        break;
                    }
                    (Err(why), true) => {
                        failures.add(
                            &host.config.host,
                            format!("{sample} may not be {participle}: {why}"),
                        );
                        break;
                    }
                    _ => {}
                }
            }
        }
        if let Some(text) = failures.text() {
            let expected = if expect_allowed { "" } else { "no " };
            self.fail(
                path,
                format!(
                    "{label}: expected {expected}{verb} of `{pattern}` on `{target}`, but {text}"
                ),
                None,
            );
        }
    }

    /// The gate's verdict on one path of one host: `Ok` with why it is allowed (for a failing
    /// "may not"), `Err` with why it is refused.
    fn judge(&self, host: &Judged, sample: &Path, intent: Intent) -> Result<String, String> {
        let mode = &host.config.mode;
        if let Some(reason) = gate::mode_refusal(mode.value, intent.access()) {
            let reason = reason.split(';').next().unwrap_or(reason);
            return Err(format!("{reason} (mode set {})", at(&mode.from)));
        }
        let lists = PathLists {
            hard_deny_any: &self.hard.any,
            hard_deny_write: &self.hard.write,
            deny: &host.deny,
            allow: host.allow.as_ref(),
        };
        let policy = &host.config.policy.paths;
        match lists.judge(mode.value, sample, sample, intent) {
            PathVerdict::HardLimit { .. } => {
                Err("a built-in hard limit protects it in every mode".into())
            }
            PathVerdict::Denied { globs, .. } => {
                let glob = &policy.deny[globs[0]];
                Err(format!(
                    "deny glob `{}` {} matches it",
                    glob.value,
                    at(&glob.from)
                ))
            }
            PathVerdict::NotAllowed => Err(format!(
                "it is not on the path allow list ({})",
                policy
                    .allow
                    .iter()
                    .map(|g| format!("`{}` {}", g.value, at(&g.from)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            PathVerdict::Allowed if mode.value == Mode::Bypass => Ok(format!(
                ": the host is in bypass mode (set {}), which skips the path lists",
                at(&mode.from)
            )),
            PathVerdict::Allowed => match &host.allow {
                Some(allow) => {
                    let by = allow.matches(sample);
                    let glob = &policy.allow[by[0]];
                    Ok(format!(
                        ": allow glob `{}` {} lets it through (mode {}, set {})",
                        glob.value,
                        at(&glob.from),
                        mode.value,
                        at(&mode.from)
                    ))
                }
                None => Ok(format!(
                    ": no deny glob or hard limit covers it and there is no allow list (mode {}, \
                     set {})",
                    mode.value,
                    at(&mode.from)
                )),
            },
        }
    }
}

/// The sample paths a path assertion is judged on: the pattern with its wildcards filled in,
/// and the samples of the host's list globs and the hard limits that fall inside the pattern.
fn samples(pattern: &str, matcher: &GlobMatcher, host: &Judged) -> Vec<String> {
    let mut out = vec![fill(pattern)];
    let policy = &host.config.policy.paths;
    let listed = values(&policy.allow)
        .chain(values(&policy.deny))
        .chain(gate::HARD_DENY_ANY.iter().copied())
        .chain(gate::HARD_DENY_WRITE.iter().copied());
    for glob in listed {
        for candidate in [fill(glob), literal_prefix(glob)] {
            if matcher.is_match(&candidate) && !out.contains(&candidate) {
                out.push(candidate);
            }
        }
    }
    out
}

/// A glob's text before its first wildcard (the folder a `folder/**` glob names).
fn literal_prefix(glob: &str) -> String {
    let end = glob.find(['*', '?', '[', '{']).unwrap_or(glob.len());
    glob[..end].trim_end_matches('/').to_string()
}

/// A path the glob matches: each wildcard filled in with a plain name (`**` and `*` with `x`,
/// `?` with one letter, a class with its first member, alternatives with the first one).
fn fill(glob: &str) -> String {
    let mut out = String::new();
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                while chars.peek() == Some(&'*') {
                    chars.next();
                }
                out.push('x');
            }
            '?' => out.push('x'),
            '[' => {
                let mut class = String::new();
                for c in chars.by_ref() {
                    if c == ']' && !class.is_empty() {
                        break;
                    }
                    class.push(c);
                }
                let negated = class.starts_with(['!', '^']);
                out.push(match class.chars().next() {
                    Some(first) if !negated => first,
                    _ => '_',
                });
            }
            '{' => {
                let mut first = String::new();
                let mut in_first = true;
                for c in chars.by_ref() {
                    match c {
                        '}' => break,
                        ',' => in_first = false,
                        c if in_first => first.push(c),
                        _ => {}
                    }
                }
                out.push_str(&fill(&first));
            }
            '\\' => {
                if let Some(escaped) = chars.next() {
                    out.push(escaped);
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fill;

    #[test]
    fn fill_gives_a_path_the_glob_matches() {
        for glob in [
            "/etc/**",
            "/etc/*.conf",
            "~/.ssh/**",
            "/srv/{www,api}/[a-c]?/**",
            "/var/log/[!x]*",
            "/etc/sudoers.d",
        ] {
            let filled = fill(glob);
            assert!(
                globset::Glob::new(glob)
                    .unwrap()
                    .compile_matcher()
                    .is_match(&filled),
                "{glob} → {filled}"
            );
        }
    }
}
