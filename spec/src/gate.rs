//! The pure decisions of the node's gate, shared by the node (`node::policy`, `desired::state`)
//! and the fleet repo's policy tests (`policy_test`): what a mode lets through, the built-in
//! hard limits, the order in which hard limits, deny lists and allow lists judge a path, and
//! which operator key may use which capability on a host.
//!
//! They live here, below the node, so that `fleetctl validate` judges a test's path with the
//! very rules the node applies when a request arrives, without the spec crate depending on the
//! node (which does I/O). What needs the machine stays in the node: roots, resolving a path by
//! descriptor, file identities, the data dir.

use crate::model::{Capability, Mode, Operator};
use crate::selector::{HostFacts, Selector};
use globset::GlobSet;
use std::path::Path;

/// Files no mode may write, whatever the configuration says.
pub const HARD_DENY_WRITE: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/sudoers.d/**",
    "/boot",
    "/boot/**",
];

/// Files and folders no mode may read (nor write, nor list), whatever the configuration says:
/// system credentials and what lets a user become root. The node adds its own files per node.
pub const HARD_DENY_ANY: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/master.passwd",
    "/etc/security/opasswd",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/sudoers.d/**",
    "/boot",
    "/boot/**",
    "/etc/systemd/system/remote-agents*",
    "/Library/LaunchDaemons/*remote-agents*",
    // `install --system` keeps the service's secrets (service.env) and config here.
    "/etc/remote-agents",
    "/etc/remote-agents/**",
];

/// What a request wants to do, as far as the mode is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads files, lists, searches, reports status or facts.
    Read,
    /// Writes files or changes a repository.
    Write,
    /// Starts a process.
    Exec,
    /// Changes the node's own mode (`set_mode`).
    Admin,
}

/// Whether a path is about to be read or written; writes may name a file that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Read,
    Write,
}

impl Intent {
    pub fn access(self) -> Access {
        match self {
            Intent::Read => Access::Read,
            Intent::Write => Access::Write,
        }
    }
}

/// Why `mode` refuses a request with this access, or `None` when it lets it through.
pub fn mode_refusal(mode: Mode, access: Access) -> Option<&'static str> {
    match (mode, access) {
        (Mode::Disabled, _) => Some(
            "the node is in disabled mode and rejects every request; its operator must change \
             the mode in its configuration",
        ),
        (Mode::Plan, Access::Write) => Some(
            "the node is in plan mode (read-only): writes are refused; ask its operator to \
             switch to edit mode (set_mode) if this change is intended",
        ),
        // No command can be proven read-only, so plan mode lets one through only to be run
        // inside the read-only sandbox: the node checks that it can make one and the executor
        // starts the process inside it.
        _ => None,
    }
}

/// The compiled path lists of one host: the hard limits, the deny list and the allow list
/// (`None`: no allow list, everything the rest lets through is allowed).
#[derive(Debug, Clone, Copy)]
pub struct PathLists<'a> {
    pub hard_deny_any: &'a GlobSet,
    pub hard_deny_write: &'a GlobSet,
    pub deny: &'a GlobSet,
    pub allow: Option<&'a GlobSet>,
}

/// How the path lists judged a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathVerdict<'p> {
    Allowed,
    /// A built-in hard limit names `path` (one of the two spellings judged).
    HardLimit {
        path: &'p Path,
    },
    /// The deny list names `path`; `globs` are the indices of the deny globs that match it.
    Denied {
        path: &'p Path,
        globs: Vec<usize>,
    },
    /// There is an allow list and the resolved path is not on it.
    NotAllowed,
}

impl PathLists<'_> {
    /// Judges a path as `requested` (spelled by the caller) and as `resolved` (symlinks
    /// resolved): the hard limits and the deny list apply to both spellings, so neither an
    /// alias nor a link gets around them, and the allow list to what is really reached. Hard
    /// limits hold in every mode; `bypass` skips the deny and allow lists.
    pub fn judge<'p>(
        &self,
        mode: Mode,
        requested: &'p Path,
        resolved: &'p Path,
        intent: Intent,
    ) -> PathVerdict<'p> {
        for candidate in [requested, resolved] {
            if self.hard_deny_any.is_match(candidate)
                || (intent == Intent::Write && self.hard_deny_write.is_match(candidate))
            {
                return PathVerdict::HardLimit { path: candidate };
            }
        }
        if mode == Mode::Bypass {
            return PathVerdict::Allowed;
        }
        for candidate in [requested, resolved] {
            let globs = self.deny.matches(candidate);
            if !globs.is_empty() {
                return PathVerdict::Denied {
                    path: candidate,
                    globs,
                };
            }
        }
        match self.allow {
            Some(allow) if !allow.is_match(resolved) => PathVerdict::NotAllowed,
            _ => PathVerdict::Allowed,
        }
    }
}

/// Deny by default: once a fleet lists `operators`, the caller's operator key (`key`, in the
/// spec's `ed25519:…` form; `None` when the caller proved none) must belong to an operator that
/// allows `capability` and whose target selects `host`. A fleet without operators lets anyone
/// with the room token do everything.
pub fn authorize_operator(
    operators: &[Operator],
    key: Option<&str>,
    capability: Capability,
    host: &HostFacts,
) -> Result<(), String> {
    if operators.is_empty() {
        return Ok(());
    }
    let Some(key) = key else {
        return Err(format!(
            "this fleet lists operators and the caller proved no operator key; {capability} \
             needs one (fleetctl --operator-key, or REMOTE_AGENTS_OPERATOR_KEY)"
        ));
    };
    let matching: Vec<&Operator> = operators.iter().filter(|o| o.key == key).collect();
    if matching.is_empty() {
        return Err(format!("{key} is not an operator of this fleet"));
    }
    let mut reasons = Vec::new();
    for operator in matching {
        if !operator.allows(capability) {
            reasons.push(format!(
                "operator `{}` may not {capability} (allowed: {})",
                operator.name,
                operator
                    .allow
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            continue;
        }
        match operator.target.as_deref().map(Selector::parse) {
            None => return Ok(()),
            Some(Ok(selector)) if selector.matches(host) => return Ok(()),
            Some(Ok(_)) => reasons.push(format!(
                "operator `{}` may only command hosts matching `{}`",
                operator.name,
                operator.target.as_deref().unwrap_or_default()
            )),
            Some(Err(e)) => reasons.push(format!(
                "operator `{}` has an unreadable target: {e}",
                operator.name
            )),
        }
    }
    Err(reasons.join("; "))
}
