//! One operation as a value: the `Request` enum that travels over the net RPC and that the MCP
//! tools build, the `Envelope` that carries it with its id and caller, and the `Outcome`.

use serde::{Deserialize, Serialize};

use crate::*;

/// One operation. Adjacently tagged so that the argument structs keep rejecting unknown fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", content = "args", rename_all = "snake_case")]
pub enum Request {
    Exec(ExecArgs),
    ReadFile(ReadFileArgs),
    WriteFile(WriteFileArgs),
    ListDir(PathArgs),
    FileStat(PathArgs),
    FileSearch(FileSearchArgs),
    GitStatus(GitRepoArgs),
    GitPull(GitRemoteArgs),
    GitCommit(GitCommitArgs),
    GitPush(GitRemoteArgs),
    GetInfo(AgentArgs),
    SetMode(SetModeArgs),
    ListAgents(AgentArgs),
    Backups(BackupsArgs),
    ScheduleAdd(crate::ScheduleAddArgs),
    ScheduleRemove(crate::ScheduleRemoveArgs),
    ScheduleList(crate::ScheduleListArgs),
    /// A signed desired-state bundle for this node to verify and apply.
    DesiredOffer(DesiredOfferArgs),
    /// This node's observed desired-state status.
    DesiredStatus(AgentArgs),
    /// A kept bundle (the applied one, or one by generation/revision), for peers that missed it
    /// and for `rollback`.
    DesiredGet(DesiredGetArgs),
    /// The generations this node accepted.
    DesiredHistory(AgentArgs),
}

impl Request {
    /// The operation's name (also its MCP tool name).
    pub fn name(&self) -> &'static str {
        match self {
            Request::Exec(_) => "exec",
            Request::ReadFile(_) => "read_file",
            Request::WriteFile(_) => "write_file",
            Request::ListDir(_) => "list_dir",
            Request::FileStat(_) => "file_stat",
            Request::FileSearch(_) => "file_search",
            Request::GitStatus(_) => "git_status",
            Request::GitPull(_) => "git_pull",
            Request::GitCommit(_) => "git_commit",
            Request::GitPush(_) => "git_push",
            Request::GetInfo(_) => "get_info",
            Request::SetMode(_) => "set_mode",
            Request::ListAgents(_) => "list_agents",
            Request::Backups(_) => "backups",
            Request::ScheduleAdd(_) => "schedule_add",
            Request::ScheduleRemove(_) => "schedule_remove",
            Request::ScheduleList(_) => "schedule_list",
            Request::DesiredOffer(_) => "desired_offer",
            Request::DesiredStatus(_) => "desired_status",
            Request::DesiredGet(_) => "desired_get",
            Request::DesiredHistory(_) => "desired_history",
        }
    }

    /// Whether the operation only reads: running it twice changes nothing, so it needs no
    /// crash-safe "started" record before it runs (only its audit record after).
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Request::ReadFile(_)
                | Request::ListDir(_)
                | Request::FileStat(_)
                | Request::FileSearch(_)
                | Request::GitStatus(_)
                | Request::GetInfo(_)
                | Request::ListAgents(_)
                | Request::Backups(_)
                | Request::ScheduleList(_)
                | Request::DesiredStatus(_)
                | Request::DesiredGet(_)
                | Request::DesiredHistory(_)
        )
    }

    /// Whether running this request twice has the effect of running it once: reads, and a
    /// desired-state offer (offering a generation the node holds answers `current`). Such a
    /// request is audited but not journaled; a retried id simply runs again.
    pub fn is_idempotent(&self) -> bool {
        self.is_read_only() || matches!(self, Request::DesiredOffer(_))
    }

    /// Whether a crash while this request runs must be reported as `outcome_unknown`, which
    /// takes a durable `started` record before it runs. Not for idempotent requests (rerunning
    /// is harmless; adopting a bundle is one atomic commit of its own, so after a crash the
    /// node's generation says exactly whether it took effect).
    pub fn needs_started_record(&self) -> bool {
        !self.is_idempotent()
    }

    /// What an operator must be allowed to do for this request, once the fleet lists
    /// operators. `None`: authorised by other means (a bundle carries its own signature).
    pub fn capability(&self) -> Option<remote_agents_spec::Capability> {
        use remote_agents_spec::Capability;
        Some(match self {
            // A bundle carries its own operator signature, and any member of the room may pass
            // on the bundles it holds (they are signed; only room members can read them).
            Request::DesiredOffer(_) | Request::DesiredGet(_) => return None,
            Request::Exec(_) => Capability::Exec,
            Request::WriteFile(_) => Capability::Write,
            Request::GitPull(_) | Request::GitCommit(_) | Request::GitPush(_) => Capability::Git,
            Request::SetMode(_) => Capability::Admin,
            Request::ScheduleAdd(_) | Request::ScheduleRemove(_) => Capability::Schedule,
            Request::ReadFile(_)
            | Request::ListDir(_)
            | Request::FileStat(_)
            | Request::FileSearch(_)
            | Request::GitStatus(_)
            | Request::GetInfo(_)
            | Request::ListAgents(_)
            | Request::Backups(_)
            | Request::ScheduleList(_)
            | Request::DesiredStatus(_)
            | Request::DesiredHistory(_) => Capability::Read,
        })
    }

    /// The peer this request is addressed to, if not the local node.
    pub fn agent_id(&self) -> Option<&str> {
        match self {
            Request::Exec(a) => a.agent_id.as_deref(),
            Request::ReadFile(a) => a.agent_id.as_deref(),
            Request::WriteFile(a) => a.agent_id.as_deref(),
            Request::ListDir(a) | Request::FileStat(a) => a.agent_id.as_deref(),
            Request::FileSearch(a) => a.agent_id.as_deref(),
            Request::GitStatus(a) => a.agent_id.as_deref(),
            Request::GitPull(a) | Request::GitPush(a) => a.agent_id.as_deref(),
            Request::GitCommit(a) => a.agent_id.as_deref(),
            Request::GetInfo(a) | Request::ListAgents(a) => a.agent_id.as_deref(),
            Request::SetMode(a) => a.agent_id.as_deref(),
            Request::Backups(a) => a.agent_id.as_deref(),
            Request::ScheduleAdd(a) => a.agent_id.as_deref(),
            Request::ScheduleRemove(a) => a.agent_id.as_deref(),
            Request::ScheduleList(a) => a.agent_id.as_deref(),
            Request::DesiredOffer(a) => a.agent_id.as_deref(),
            Request::DesiredGet(a) => a.agent_id.as_deref(),
            Request::DesiredStatus(a) | Request::DesiredHistory(a) => a.agent_id.as_deref(),
        }
    }

    /// The same request with `agent_id` cleared: what is sent to the peer it names, so that the
    /// peer runs it itself rather than forwarding it again.
    pub fn without_agent_id(mut self) -> Self {
        match &mut self {
            Request::Exec(a) => a.agent_id = None,
            Request::ReadFile(a) => a.agent_id = None,
            Request::WriteFile(a) => a.agent_id = None,
            Request::ListDir(a) | Request::FileStat(a) => a.agent_id = None,
            Request::FileSearch(a) => a.agent_id = None,
            Request::GitStatus(a) => a.agent_id = None,
            Request::GitPull(a) | Request::GitPush(a) => a.agent_id = None,
            Request::GitCommit(a) => a.agent_id = None,
            Request::GetInfo(a) | Request::ListAgents(a) => a.agent_id = None,
            Request::SetMode(a) => a.agent_id = None,
            Request::Backups(a) => a.agent_id = None,
            Request::ScheduleAdd(a) => a.agent_id = None,
            Request::ScheduleRemove(a) => a.agent_id = None,
            Request::ScheduleList(a) => a.agent_id = None,
            Request::DesiredOffer(a) => a.agent_id = None,
            Request::DesiredGet(a) => a.agent_id = None,
            Request::DesiredStatus(a) | Request::DesiredHistory(a) => a.agent_id = None,
        }
        self
    }

    /// A short description for the audit log (never file contents or stdin).
    pub fn summary(&self) -> String {
        match self {
            Request::Exec(a) => format!(
                "exec{} {}",
                if a.shell { " (shell)" } else { "" },
                a.argv.join(" ")
            ),
            Request::ReadFile(a) => format!("read_file {}", a.path),
            Request::WriteFile(a) => format!("write_file {} ({} chars)", a.path, a.content.len()),
            Request::ListDir(a) => format!("list_dir {}", a.path),
            Request::FileStat(a) => format!("file_stat {}", a.path),
            Request::FileSearch(a) => format!(
                "file_search name={} content={} images_only={}",
                a.name.as_deref().unwrap_or("*"),
                a.content.as_deref().unwrap_or("-"),
                a.images_only
            ),
            Request::GitStatus(a) => format!("git_status {}", a.repo),
            Request::GitPull(a) => format!("git_pull {}", a.repo),
            Request::GitCommit(a) => format!("git_commit {}: {}", a.repo, a.message),
            Request::GitPush(a) => format!("git_push {}", a.repo),
            Request::GetInfo(_) => "get_info".to_string(),
            Request::SetMode(a) => format!("set_mode {}", a.mode),
            Request::ListAgents(_) => "list_agents".to_string(),
            Request::Backups(_) => "backups".to_string(),
            Request::ScheduleAdd(a) => format!(
                "schedule_add {} `{}`: {}",
                a.name,
                a.cron,
                a.shell.clone().unwrap_or_else(|| a.command.join(" "))
            ),
            Request::ScheduleRemove(a) => format!("schedule_remove {}", a.name),
            Request::ScheduleList(_) => "schedule_list".to_string(),
            // The claim only: verifying (signature + spec load) happens once, in the offer.
            Request::DesiredOffer(a) => match a.bundle.peek() {
                Some(c) => format!(
                    "desired_offer generation {} revision {} by {}",
                    c.generation, c.revision, c.issuer
                ),
                None => "desired_offer (unreadable bundle)".to_string(),
            },
            Request::DesiredStatus(_) => "desired_status".to_string(),
            Request::DesiredGet(a) => format!(
                "desired_get {}",
                a.revision.as_deref().unwrap_or("(applied)")
            ),
            Request::DesiredHistory(_) => "desired_history".to_string(),
        }
    }
}

/// A request with its identity and its caller, as journaled and as sent over the RPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique per request; a repeated id returns the stored outcome instead of running again.
    pub id: String,
    /// Who asked. A node replaces what a peer's envelope claims with the authenticated peer.
    pub caller: Caller,
    pub request: Request,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The operation ran; `result` is its result struct as JSON.
    Ok { result: serde_json::Value },
    /// The policy gate refused it; nothing ran.
    Refused { reason: String },
    /// It ran (or tried to) and failed.
    Failed { error: String },
    /// A crash interrupted it after it started: it may or may not have taken effect, and it is
    /// not run again.
    OutcomeUnknown { reason: String },
}

impl Outcome {
    pub fn ok<T: Serialize>(value: &T) -> Self {
        match serde_json::to_value(value) {
            Ok(result) => Outcome::Ok { result },
            Err(e) => Outcome::Failed {
                error: format!("cannot encode result: {e}"),
            },
        }
    }

    pub fn failed(error: impl std::fmt::Display) -> Self {
        Outcome::Failed {
            error: error.to_string(),
        }
    }

    /// One word for the audit log.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok { .. } => "ok",
            Outcome::Refused { .. } => "refused",
            Outcome::Failed { .. } => "failed",
            Outcome::OutcomeUnknown { .. } => "outcome_unknown",
        }
    }
}

/// The reply to an `Envelope` over the RPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub id: String,
    pub outcome: Outcome,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn requests_round_trip_as_json() {
        let request = Request::Exec(ExecArgs {
            agent_id: Some("peer".into()),
            argv: vec!["true".into()],
            shell: false,
            cwd: None,
            env: BTreeMap::new(),
            stdin: None,
            timeout_secs: Some(1.5),
            max_output_bytes: None,
        });
        let envelope = Envelope {
            id: "r1".into(),
            caller: "mcp:local".into(),
            request: request.clone(),
        };
        let text = serde_json::to_string(&envelope).unwrap();
        assert!(text.contains("\"op\":\"exec\""), "{text}");
        let back: Envelope = serde_json::from_str(&text).unwrap();
        assert_eq!(back, envelope);
        assert_eq!(request.without_agent_id().agent_id(), None);
    }

    /// `timeout_secs=1e300` panicked in `Duration::from_secs_f64`; NaN, infinities, negative
    /// numbers and zero are refused too, each naming the field and the range.
    #[test]
    fn timeouts_out_of_range_are_errors_naming_the_field() {
        for bad in [
            1e300,
            f64::NAN,
            f64::INFINITY,
            -1.0,
            0.0,
            MAX_TIMEOUT_SECS + 1.0,
        ] {
            let err = timeout_from_secs("timeout_secs", bad).unwrap_err();
            assert!(
                err.contains("timeout_secs") && err.contains("86400"),
                "{err}"
            );
        }
        assert_eq!(
            timeout_from_secs("timeout_secs", 1.5),
            Ok(std::time::Duration::from_millis(1500))
        );
        let args = ExecArgs {
            agent_id: None,
            argv: vec!["true".into()],
            shell: false,
            cwd: None,
            env: BTreeMap::new(),
            stdin: None,
            timeout_secs: Some(1e300),
            max_output_bytes: Some(usize::MAX),
        };
        assert!(args.timeout().is_err());
        assert!(args.max_output().unwrap_err().contains("max_output_bytes"));
    }

    /// `set_mode ttl_secs=2^64-1` wrapped around to an override that expired at once.
    #[test]
    fn ttls_beyond_a_year_are_errors_naming_the_field() {
        let err = ttl_from_secs("ttl_secs", u64::MAX).unwrap_err();
        assert!(err.contains("ttl_secs"), "{err}");
        assert!(ttl_from_secs("ttl_secs", MAX_TTL_SECS).is_ok());
        assert!(max_output_bytes("max_output_bytes", MAX_OUTPUT_BYTES).is_ok());
        assert!(max_output_bytes("max_output_bytes", MAX_OUTPUT_BYTES + 1).is_err());
    }

    #[test]
    fn unknown_argument_fields_are_rejected() {
        let text = r#"{"op":"read_file","args":{"path":"/tmp/x","bogus":1}}"#;
        let err = serde_json::from_str::<Request>(text).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        let schema = serde_json::to_value(schemars::schema_for!(ReadFileArgs)).unwrap();
        assert_eq!(schema["additionalProperties"], serde_json::json!(false));
    }
}
