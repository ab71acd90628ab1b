//! `exec`: run a program on a host, and what it printed.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::files::Encoding;
use crate::limits::{max_output_bytes, timeout_from_secs};
use crate::operation::Summary;

/// How long a command may run when `timeout_secs` is absent.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes of stdout and of stderr kept when `max_output_bytes` is absent.
pub const DEFAULT_MAX_OUTPUT: usize = 1024 * 1024;

/// Runs a program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecArgs {
    /// Run on this peer instead of the local node (see list_agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Program and arguments, run without a shell, e.g. ["ls", "-la", "/tmp"]. With shell=true,
    /// the elements are joined by spaces and passed to `/bin/sh -c`.
    pub argv: Vec<String>,
    /// Run through `/bin/sh -c` (only where the node's policy grants a shell).
    #[serde(default)]
    pub shell: bool,
    /// Working directory (must be beneath an allowed root); default: the home directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Text written to the program's standard input (then closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Seconds before the whole process group is killed; default 60, at most 86400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    /// Bytes kept of stdout and of stderr each; default 1048576, at most 67108864. More output
    /// sets `truncated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<usize>,
}

/// The result of `exec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExecResult {
    /// Exit code, or null when killed by a signal or the timeout.
    pub exit_code: Option<i32>,
    /// Signal that ended the process, if any.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// How `stdout` is written: utf8 (the text as is), or base64 for binary output (not UTF-8,
    /// or so full of control bytes such as NUL that JSON would escape it six-fold).
    #[serde(default, skip_serializing_if = "Encoding::is_utf8")]
    pub stdout_encoding: Encoding,
    /// How `stderr` is written, like `stdout_encoding`.
    #[serde(default, skip_serializing_if = "Encoding::is_utf8")]
    pub stderr_encoding: Encoding,
    /// True when stdout or stderr was longer than max_output_bytes and was cut.
    pub truncated: bool,
    pub timed_out: bool,
    pub cancelled: bool,
    pub duration_ms: u64,
    /// How the command was confined, when it was (plan mode: a read-only Landlock sandbox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

impl ExecArgs {
    /// The run's timeout: `timeout_secs` checked, or the default.
    pub fn timeout(&self) -> Result<std::time::Duration, String> {
        match self.timeout_secs {
            Some(secs) => timeout_from_secs("timeout_secs", secs),
            None => Ok(DEFAULT_TIMEOUT),
        }
    }

    /// The bytes kept of each stream: `max_output_bytes` checked, or the default.
    pub fn max_output(&self) -> Result<usize, String> {
        match self.max_output_bytes {
            Some(bytes) => max_output_bytes("max_output_bytes", bytes),
            None => Ok(DEFAULT_MAX_OUTPUT),
        }
    }
}

impl Summary for ExecArgs {
    fn summary(&self, op: &str) -> String {
        format!(
            "{op}{} {}",
            if self.shell { " (shell)" } else { "" },
            self.argv.join(" ")
        )
    }
}
