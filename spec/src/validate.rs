//! Semantic checks over a decoded model: names, cron lines, selectors, globs, operator keys,
//! durations, command steps, and rules that can never match a declared host.

use crate::FleetModel;
use crate::diagnostic::{Code, Diagnostic, Loc};
use crate::model::*;
use crate::selector::{HostFacts, Selector};
use base64::Engine;
use croner::parser::{CronParser, Seconds, Year};
use std::collections::HashMap;

struct Check<'a> {
    model: &'a FleetModel,
    diagnostics: &'a mut Vec<Diagnostic>,
}

impl Check<'_> {
    fn loc(&self, document: usize, path: &str) -> Loc {
        self.model
            .sources
            .nearest(document, path)
            .cloned()
            .unwrap_or_else(|| Loc {
                file: "<model>".into(),
                line: 0,
                col: 0,
                offset: 0,
                len: 0,
            })
    }

    fn error(
        &mut self,
        code: Code,
        document: usize,
        path: &str,
        message: String,
    ) -> &mut Diagnostic {
        let loc = self.loc(document, path);
        self.diagnostics
            .push(Diagnostic::error(code, loc, path, message));
        self.diagnostics.last_mut().expect("just pushed")
    }

    /// False when the field was never written (its absence is already reported as missing).
    fn written(&self, document: usize, path: &str) -> bool {
        self.model.sources.get(document, path).is_some()
            || self.model.sources.get(document, "").is_none()
    }

    fn selector(&mut self, document: usize, path: &str, text: &str) -> Option<Selector> {
        if !self.written(document, path) {
            return None;
        }
        match Selector::parse(text) {
            Ok(selector) => Some(selector),
            Err(error) => {
                let base = self.loc(document, path);
                let shift = self
                    .model
                    .sources
                    .get(document, path)
                    .map_or(0, |_| text_offset(self.model, document, path));
                let bytes: usize = text.chars().take(error.position).map(char::len_utf8).sum();
                let loc = base.shifted(shift + error.position as u32, shift + bytes as u32);
                self.diagnostics.push(
                    Diagnostic::error(
                        Code::BadSelector,
                        loc,
                        path,
                        format!("bad target selector `{text}`: {}", error.message),
                    )
                    .expected(error.expected)
                    .hint("e.g. `web`, `tag:db & os:linux`, `all,!name:lab-*`"),
                );
                None
            }
        }
    }

    fn cron(&mut self, document: usize, path: &str, text: &str) {
        if !self.written(document, path) {
            return;
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        if let Err(error) = parser.parse(text) {
            self.error(
                Code::BadCron,
                document,
                path,
                format!("bad cron line `{text}`: {error}"),
            )
            .expected = Some("five fields: minute hour day-of-month month day-of-week".into());
            if let Some(d) = self.diagnostics.last_mut() {
                d.hint = Some("e.g. `*/5 * * * *` (every 5 minutes) or `@daily`".into());
            }
        }
    }

    fn glob(&mut self, document: usize, path: &str, pattern: &str) {
        if let Err(error) = globset::Glob::new(pattern) {
            let d = self.error(
                Code::BadGlob,
                document,
                path,
                format!("bad glob `{pattern}`: {}", error.kind()),
            );
            d.expected = Some("a glob such as `/var/log/**` or `web-*`".into());
            d.hint = Some("close every `[` and `{`; escape literal ones as `[[]`".into());
        }
    }

    fn policy(&mut self, document: usize, path: &str, policy: &Option<Policy>) {
        let Some(policy) = policy else { return };
        for (field, lists) in [("paths", &policy.paths), ("commands", &policy.commands)] {
            for (list_name, list) in [("allow", &lists.allow), ("deny", &lists.deny)] {
                for (i, pattern) in list.iter().enumerate() {
                    self.glob(
                        document,
                        &format!("{path}.policy.{field}.{list_name}[{i}]"),
                        pattern,
                    );
                }
            }
        }
    }

    fn duration(&mut self, document: usize, path: &str, text: &Option<String>) {
        if let Some(text) = text
            && let Err(error) = humantime::parse_duration(text)
        {
            let d = self.error(
                Code::BadValue,
                document,
                path,
                format!("bad duration `{text}`: {error}"),
            );
            d.expected = Some("a duration such as `30s`, `5m` or `1h 30m`".into());
        }
    }

    fn step(
        &mut self,
        document: usize,
        path: &str,
        command: &[String],
        shell: &Option<String>,
        required: bool,
    ) {
        let what = if command.is_empty() && shell.is_none() {
            // A written but ill-typed field was already reported; don't report it missing too.
            let written = |field: &str| {
                self.model
                    .sources
                    .get(document, &format!("{path}.{field}"))
                    .is_some()
            };
            if !required || written("command") || written("shell") {
                return;
            }
            "neither `command` nor `shell`"
        } else if !command.is_empty() && shell.is_some() {
            "both `command` and `shell`"
        } else {
            return;
        };
        let d = self.error(Code::BadValue, document, path, format!("{path} has {what}"));
        d.expected = Some("exactly one of `command` (argv) and `shell` (a shell line)".into());
    }
}

/// Character offset of a string's text from its recorded position (1 past an opening quote).
fn text_offset(model: &FleetModel, document: usize, path: &str) -> u32 {
    model
        .sources
        .text_offsets
        .get(&(document, path.to_string()))
        .copied()
        .unwrap_or(0)
}

fn is_glob(name: &str) -> bool {
    name.contains(['*', '?', '[', '{'])
}

pub(crate) fn validate(model: &FleetModel, diagnostics: &mut Vec<Diagnostic>) {
    let mut check = Check { model, diagnostics };

    // Duplicate document names per kind, and a single fleet.
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    let mut fleets = 0;
    let mut rollouts = 0;
    for (index, document) in model.documents.iter().enumerate() {
        if matches!(document, Document::Rollout(_)) {
            rollouts += 1;
            if rollouts == 2 {
                check
                    .error(
                        Code::DuplicateName,
                        index,
                        "metadata.name",
                        "a second Rollout document".into(),
                    )
                    .hint = Some(
                    "declare one Rollout per fleet: it governs every apply of the fleet".into(),
                );
            }
        }
        if matches!(document, Document::Fleet(_)) {
            fleets += 1;
            if fleets == 2 {
                check
                    .error(
                        Code::DuplicateName,
                        index,
                        "metadata.name",
                        "a second Fleet document".into(),
                    )
                    .hint =
                    Some("declare one Fleet per repo; split hosts with labels, not fleets".into());
            }
        }
        let key = (document.kind(), document.name());
        if let Some(first) = seen.get(&key) {
            let first_loc = check.loc(*first, "metadata.name");
            check
                .error(
                    Code::DuplicateName,
                    index,
                    "metadata.name",
                    format!("duplicate {} name `{}`", key.0, key.1),
                )
                .hint = Some(format!(
                "first declared at {first_loc}; names are unique per kind"
            ));
        } else {
            seen.insert(key, index);
        }
    }

    for (index, document) in model.documents.iter().enumerate() {
        match document {
            Document::Fleet(fleet) => check_fleet(&mut check, index, &fleet.spec),
            Document::Schedule(schedule) => {
                let spec = &schedule.spec;
                check.selector(index, "spec.target", &spec.target);
                check.cron(index, "spec.cron", &spec.cron);
                check.step(index, "spec", &spec.command, &spec.shell, true);
                check.duration(index, "spec.timeout", &spec.timeout);
            }
            Document::McpSurface(surface) => {
                let spec = &surface.spec;
                check.selector(index, "spec.target", &spec.target);
                if spec.toolsets.is_empty() && check.written(index, "spec.toolsets") {
                    check
                        .error(
                            Code::BadValue,
                            index,
                            "spec.toolsets",
                            "an McpSurface with no toolsets".into(),
                        )
                        .expected = Some(format!(
                        "at least one of {} (to refuse models everything, write maxMode: disabled)",
                        crate::Toolset::names()
                    ));
                }
            }
            Document::Rollout(rollout) => check_rollout(&mut check, index, &rollout.spec),
            Document::Window(window) => {
                check.selector(index, "spec.target", &window.spec.target);
                if let Err(problem) = crate::window::parse(&window.spec) {
                    // A field written with the wrong type was reported already.
                    if problem.field == "spec" || check.written(index, problem.field) {
                        check
                            .error(Code::BadValue, index, problem.field, problem.message)
                            .expected = Some(problem.expected.into());
                    }
                }
            }
            Document::MapReduceJob(job) => {
                let spec = &job.spec;
                check.selector(index, "spec.target", &spec.target);
                for (i, pattern) in spec.input.files.iter().enumerate() {
                    check.glob(index, &format!("spec.input.files[{i}]"), pattern);
                }
                let inputs = usize::from(!spec.input.files.is_empty())
                    + usize::from(!spec.input.command.is_empty())
                    + usize::from(spec.input.shell.is_some())
                    + usize::from(!spec.input.items.is_empty());
                if inputs != 1 {
                    check
                        .error(
                            Code::BadValue,
                            index,
                            "spec.input",
                            format!("input has {inputs} sources"),
                        )
                        .expected = Some("exactly one of files, command, shell, items".into());
                }
                check.step(
                    index,
                    "spec.input",
                    &spec.input.command,
                    &spec.input.shell,
                    false,
                );
                check.step(index, "spec.map", &spec.map.command, &spec.map.shell, true);
                if spec.reduce.builtin.is_some()
                    && (!spec.reduce.command.is_empty() || spec.reduce.shell.is_some())
                {
                    check
                        .error(
                            Code::BadValue,
                            index,
                            "spec.reduce",
                            "reduce has a builtin and a command".into(),
                        )
                        .expected = Some("one of builtin, command, shell".into());
                } else if spec.reduce.builtin.is_none() {
                    check.step(
                        index,
                        "spec.reduce",
                        &spec.reduce.command,
                        &spec.reduce.shell,
                        true,
                    );
                }
                if spec.partitions == Some(0) {
                    check
                        .error(
                            Code::BadValue,
                            index,
                            "spec.partitions",
                            "zero partitions".into(),
                        )
                        .expected = Some("at least 1".into());
                } else if spec.partitions.is_some()
                    && !spec.input.files.is_empty()
                    && check.written(index, "spec.partitions")
                {
                    // Accepted and silently ignored before: with files input each matching
                    // file is one partition, mapped on the host that has it.
                    let d = check.error(
                        Code::BadValue,
                        index,
                        "spec.partitions",
                        "`partitions` does nothing with `input.files`: each matching file is \
                         one partition, mapped on its own host"
                            .into(),
                    );
                    d.expected = Some(
                        "no `partitions` with `files` input (it splits command, shell or items \
                         input per host)"
                            .into(),
                    );
                    d.hint = Some("remove `partitions`".into());
                }
                match (spec.trigger, &spec.cron) {
                    (Some(Trigger::Cron), Some(cron)) => check.cron(index, "spec.cron", cron),
                    (Some(Trigger::Cron), None) => {
                        check
                            .error(
                                Code::MissingField,
                                index,
                                "spec.trigger",
                                "trigger `cron` needs a `cron` field".into(),
                            )
                            .expected = Some("a `cron` field".into());
                    }
                    (_, Some(_)) => {
                        check
                            .error(
                                Code::BadValue,
                                index,
                                "spec.cron",
                                "`cron` is only used with `trigger: cron`".into(),
                            )
                            .hint = Some("set `trigger: cron` or remove `cron`".into());
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Waves that pick hosts in exactly one way, checks that say what to run, and durations and a
/// threshold that mean something.
fn check_rollout(check: &mut Check, index: usize, spec: &RolloutSpec) {
    if spec.waves.is_empty() && check.written(index, "spec.waves") {
        check
            .error(
                Code::BadValue,
                index,
                "spec.waves",
                "a Rollout with no waves".into(),
            )
            .expected =
            Some("at least one wave, e.g. `- {name: canary, target: tag:canary}`".into());
    }
    for (i, wave) in spec.waves.iter().enumerate() {
        let path = format!("spec.waves[{i}]");
        let ways = usize::from(wave.target.is_some())
            + usize::from(wave.count.is_some())
            + usize::from(wave.percent.is_some());
        if ways != 1 {
            check
                .error(
                    Code::BadValue,
                    index,
                    &path,
                    format!("a wave that picks its hosts in {ways} ways"),
                )
                .expected = Some("exactly one of target, count, percent".into());
        }
        if let Some(target) = &wave.target {
            check.selector(index, &format!("{path}.target"), target);
        }
        if wave.count == Some(0) {
            check
                .error(
                    Code::BadValue,
                    index,
                    &format!("{path}.count"),
                    "a wave of 0 hosts".into(),
                )
                .expected = Some("a count of at least 1".into());
        }
        if let Some(percent) = wave.percent
            && !(1..=100).contains(&percent)
        {
            check
                .error(
                    Code::BadValue,
                    index,
                    &format!("{path}.percent"),
                    format!("a wave of {percent}% of the hosts"),
                )
                .expected = Some("a percentage from 1 to 100".into());
        }
    }
    for (i, rollout_check) in spec.checks.iter().enumerate() {
        let path = format!("spec.checks[{i}]");
        check.step(
            index,
            &path,
            &rollout_check.command,
            &rollout_check.shell,
            true,
        );
        check.duration(index, &format!("{path}.timeout"), &rollout_check.timeout);
    }
    check.duration(index, "spec.waveTimeout", &spec.wave_timeout);
    if spec.failure_threshold == Some(0) {
        check
            .error(
                Code::BadValue,
                index,
                "spec.failureThreshold",
                "a failure threshold of 0 hosts".into(),
            )
            .expected = Some("at least 1 (1: the first failed host halts the rollout)".into());
    }
}

fn check_fleet(check: &mut Check, index: usize, spec: &FleetSpec) {
    if let Some(defaults) = &spec.defaults {
        check.policy(index, "spec.defaults", &defaults.policy);
    }
    let mut operator_names: HashMap<&str, usize> = HashMap::new();
    for (i, operator) in spec.operators.iter().enumerate() {
        let path = format!("spec.operators[{i}]");
        if operator_names.insert(&operator.name, i).is_some() {
            check.error(
                Code::DuplicateName,
                index,
                &format!("{path}.name"),
                format!("duplicate operator name `{}`", operator.name),
            );
        }
        if let Err(problem) = parse_operator_key(&operator.key) {
            let d = check.error(
                Code::BadOperatorKey,
                index,
                &format!("{path}.key"),
                format!("malformed operator key: {problem}"),
            );
            d.expected = Some("`ed25519:` followed by the base64 of a 32-byte public key".into());
            d.hint = Some("make one with `fleetctl keygen`, which prints the public key".into());
        }
        if let Some(target) = &operator.target {
            check.selector(index, &format!("{path}.target"), target);
        }
    }
    let mut host_names: HashMap<&str, usize> = HashMap::new();
    for (i, host) in spec.hosts.iter().enumerate() {
        let path = format!("spec.hosts[{i}]");
        if let Some(first) = host_names.insert(&host.name, i) {
            let first_loc = check.loc(index, &format!("spec.hosts[{first}].name"));
            check
                .error(
                    Code::DuplicateName,
                    index,
                    &format!("{path}.name"),
                    format!("duplicate host `{}`", host.name),
                )
                .hint = Some(format!(
                "first declared at {first_loc}; merge the two entries"
            ));
        }
        if is_glob(&host.name) {
            check.glob(index, &format!("{path}.name"), &host.name);
        }
        check.policy(index, &path, &host.policy);
    }
    // Hosts as declared (a glob entry stands for the hosts it will match), for the
    // never-matches warning.
    let declared: Vec<HostFacts> = spec
        .hosts
        .iter()
        .map(|host| HostFacts {
            name: host.name.clone(),
            tags: host.tags.iter().cloned().collect(),
            facts: host.facts.clone(),
        })
        .collect();
    for (i, test) in spec.tests.iter().enumerate() {
        check.selector(index, &format!("spec.tests[{i}].target"), &test.target);
    }
    let mut rule_names: HashMap<&str, usize> = HashMap::new();
    for (i, rule) in spec.rules.iter().enumerate() {
        let path = format!("spec.rules[{i}]");
        if let Some(name) = &rule.name
            && rule_names.insert(name, i).is_some()
        {
            check.error(
                Code::DuplicateName,
                index,
                &format!("{path}.name"),
                format!("duplicate rule name `{name}`"),
            );
        }
        check.policy(index, &path, &rule.policy);
        let target_path = format!("{path}.target");
        let Some(selector) = check.selector(index, &target_path, &rule.target) else {
            continue;
        };
        // Facts are only known live, so a selector that reads them cannot be judged here.
        if !declared.is_empty()
            && !selector.uses_facts()
            && !declared.iter().any(|host| selector.matches(host))
        {
            let loc = check.loc(index, &target_path);
            check.diagnostics.push(
                Diagnostic::warning(
                    Code::RuleNeverMatches,
                    loc,
                    target_path,
                    format!("rule target `{}` matches no declared host", rule.target),
                )
                .hint("check the tag spelling, or declare the hosts it is meant for"),
            );
        }
    }
}

/// Operator keys are `ed25519:<standard base64 of 32 bytes>`. Returns the raw key bytes.
pub fn parse_operator_key(text: &str) -> Result<[u8; 32], String> {
    let Some(encoded) = text.strip_prefix("ed25519:") else {
        return Err("missing the `ed25519:` prefix".to_string());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("not base64: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{} bytes, expected 32", b.len()))
}
