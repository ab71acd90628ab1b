//! `file_search`: finds files by name glob, content regex and/or images only. Gate: the mode
//! allows reading, the patterns compile, and the given roots resolve for reading (of the default
//! roots, those that do not are left out).
//!
//! With `ai_fallback`, a search that finds nothing asks the host's AI CLI to locate the file:
//! a task in the provider's read-only (plan) mode, whatever the host's mode, with the host's deny
//! lists and the node's own files as its disallowed paths, gated like `task_dispatch` (the
//! provider's program passes the command lists; the `task` capability is checked where callers
//! are authorized). The AI's answer is only a list of candidates: each path it names is resolved
//! and opened through the policy like any read, and listed only if it is a regular file the host
//! hands out; the others are reported with the reason.

use std::path::PathBuf;
use std::sync::Arc;

use remote_agents_ops::operation::FileSearch;
use remote_agents_ops::{
    AiSearch, FileSearchArgs, FileSearchResult, FoundBy, Outcome, RejectedPath, SearchMatch,
    TaskProvider, TaskState,
};
use tokio_util::sync::CancellationToken;

use super::task_dispatch::provider_denials;
use super::{Call, Run, blocking};
use crate::node::Node;
use crate::policy::{Access, Intent, Mode, OpenError, Policy, Refusal};
use crate::search;
use crate::task::{Launch, TaskProgress};

/// What the gate approved: the roots, the query, and the fallback task if one was asked for.
pub(in crate::node) struct Checked {
    roots: Vec<PathBuf>,
    query: search::Query,
    max_results: usize,
    fallback: Option<Fallback>,
}

/// The AI fallback, ready to start: the task, or why none can run.
enum Fallback {
    Launch(Box<Launch>),
    /// No provider was named and none is installed: reported in the result, since a search
    /// that finds its file never needed one.
    NoProvider(String),
}

impl Run for FileSearch {
    type Checked = Checked;

    fn check(node: &Node, mode: Mode, a: FileSearchArgs) -> Result<Checked, Refusal> {
        Policy::check_mode(mode, Access::Read)?;
        let query = search::Query::new(
            a.name.as_deref(),
            a.content.as_deref(),
            a.images_only,
            a.include_hidden,
            a.max_results,
        )
        .map_err(|e| Refusal {
            reason: e.to_string(),
        })?;
        let roots: Vec<PathBuf> = match &a.roots {
            Some(roots) => roots
                .iter()
                .map(|r| {
                    node.policy()
                        .resolve(mode, std::path::Path::new(r), Intent::Read)
                        .map(|r| r.absolute)
                })
                .collect::<Result<_, _>>()?,
            None => search::default_roots(node.policy().home())
                .into_iter()
                .filter_map(|r| node.policy().resolve(mode, &r, Intent::Read).ok())
                .map(|r| r.absolute)
                .collect(),
        };
        let fallback = if a.ai_fallback {
            Some(fallback(node, mode, &a, &roots)?)
        } else {
            None
        };
        Ok(Checked {
            roots,
            query,
            max_results: a.max_results.unwrap_or(search::DEFAULT_MAX_RESULTS),
            fallback,
        })
    }

    async fn execute(node: Arc<Node>, call: Call, checked: Checked) -> Outcome {
        let Checked {
            roots,
            query,
            max_results,
            fallback,
        } = checked;
        let searching = node.clone();
        let found = blocking(move || {
            Outcome::ok(&search::search(
                &searching.policy(),
                searching.effective_mode(),
                &roots,
                &query,
            ))
        })
        .await;
        let Some(fallback) = fallback else {
            return found;
        };
        let Outcome::Ok { result } = &found else {
            return found;
        };
        let mut result: FileSearchResult = match serde_json::from_value(result.clone()) {
            Ok(result) => result,
            Err(e) => return Outcome::failed(format!("search result: {e}")),
        };
        if !result.matches.is_empty() {
            return found;
        }
        let launch = match fallback {
            Fallback::Launch(launch) => launch,
            Fallback::NoProvider(error) => {
                result.ai = Some(AiSearch {
                    provider: TaskProvider::Claude,
                    task_id: None,
                    session_id: None,
                    answer: None,
                    error: Some(error),
                    rejected: Vec::new(),
                });
                return Outcome::ok(&result);
            }
        };
        let ai = ask_the_ai(&node, &call, *launch, max_results, &mut result.matches).await;
        if !result.matches.is_empty() {
            result.found_by = Some(FoundBy::Ai);
        }
        result.ai = Some(ai);
        Outcome::ok(&result)
    }
}

/// The fallback task for a search of `roots`, gated as a task on this host.
fn fallback(
    node: &Node,
    mode: Mode,
    a: &FileSearchArgs,
    roots: &[PathBuf],
) -> Result<Fallback, Refusal> {
    let policy = node.policy();
    let limits = node.tasks().limits();
    let provider = match a.ai_provider {
        Some(provider) => provider,
        None => {
            let installed = TaskProvider::ALL
                .into_iter()
                .find(|p| crate::task::find_program(p.program(), limits.path.as_deref()).is_some());
            match installed {
                Some(provider) => provider,
                None => {
                    return Ok(Fallback::NoProvider(format!(
                        "ai_fallback: none of the AI CLIs ({}) is installed on this host{}",
                        TaskProvider::ALL.map(|p| p.program()).join(", "),
                        limits
                            .path
                            .as_deref()
                            .map(|p| format!(" (looked in the task PATH {p})"))
                            .unwrap_or_default()
                    )));
                }
            }
        }
    };
    policy
        .check_command(mode, &[provider.program().to_string()], false)
        .map_err(|r| Refusal {
            reason: format!("ai_fallback refused: {}", r.reason),
        })?;
    // Read-only whatever the host allows: the AI only looks.
    let task_mode = Mode::Plan;
    let (deny_commands, deny_paths) = provider_denials(&policy, task_mode);
    let wall = std::time::Duration::from_secs(limits.max_wall_secs);
    let timeout =
        std::time::Duration::from_secs_f64(remote_agents_ops::AI_SEARCH_TIMEOUT_SECS).min(wall);
    let max_turns = Some(
        limits
            .max_turns
            .map_or(remote_agents_ops::AI_SEARCH_MAX_TURNS, |limit| {
                limit.min(remote_agents_ops::AI_SEARCH_MAX_TURNS)
            }),
    );
    Ok(Fallback::Launch(Box::new(Launch {
        provider,
        prompt: prompt(a, roots),
        cwd: roots
            .first()
            .cloned()
            .unwrap_or_else(|| policy.home().to_path_buf()),
        model: None,
        max_turns,
        budget_usd: limits.max_budget_usd,
        timeout,
        resume: None,
        mode: task_mode,
        allowed_tools: Vec::new(),
        disallowed_tools: Vec::new(),
        deny_commands,
        deny_paths,
    })))
}

/// The question put to the AI: what was searched for, where, and the answer's exact form.
fn prompt(a: &FileSearchArgs, roots: &[PathBuf]) -> String {
    let mut wanted = Vec::new();
    if let Some(name) = &a.name {
        wanted.push(format!("a file name matching the glob `{name}`"));
    }
    if let Some(content) = &a.content {
        wanted.push(format!(
            "content matching the regular expression `{content}`"
        ));
    }
    if a.images_only {
        wanted.push("an image".to_string());
    }
    let roots: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    format!(
        "Locate a file on this machine. A search for {} under {} found nothing. Find the file \
         the user most likely means: look for similar names, other extensions, other folders \
         and archives of it. Only look; change nothing.\n\n\
         Answer with one line per file you found, best match first, at most {}, each exactly \
         `PATH: ` followed by the file's absolute path. If you found nothing, answer `NONE`.",
        wanted.join(", "),
        if roots.is_empty() {
            "the user's folders".to_string()
        } else {
            roots.join(", ")
        },
        a.max_results
            .unwrap_or(search::DEFAULT_MAX_RESULTS)
            .min(MAX_AI_PATHS)
    )
}

/// Paths at most taken from an AI's answer.
const MAX_AI_PATHS: usize = 20;

/// Runs the fallback task to its end (cancelled with the call) and moves the paths its answer
/// names that the policy hands out into `matches`.
async fn ask_the_ai(
    node: &Arc<Node>,
    call: &Call,
    launch: Launch,
    max_results: usize,
    matches: &mut Vec<SearchMatch>,
) -> AiSearch {
    let tasks = node.tasks().clone();
    let provider = launch.provider;
    let failed = |error: String| AiSearch {
        provider,
        task_id: None,
        session_id: None,
        answer: None,
        error: Some(error),
        rejected: Vec::new(),
    };
    let progress = call.ctx.progress.clone().map(|p| {
        let sink: TaskProgress =
            Arc::new(move |turns, max, message| p(f64::from(turns), max.map(f64::from), message));
        sink
    });
    let started = match tasks.start(
        node.agent_id(),
        launch,
        call.ctx.cancel.child_token(),
        progress,
    ) {
        Ok(status) => status,
        Err(error) => return failed(format!("ai_fallback: {error}")),
    };
    let wait = std::time::Duration::from_secs(tasks.limits().max_wall_secs + 60);
    let status = match tasks
        .wait(&started.task_id, wait, false, &CancellationToken::new())
        .await
    {
        Ok(Some(status)) => status,
        Ok(None) => return failed("ai_fallback: the task's record was lost".into()),
        Err(e) => return failed(format!("ai_fallback: {e}")),
    };
    let mut ai = AiSearch {
        provider,
        task_id: Some(status.task_id.clone()),
        session_id: status.session_id.clone(),
        answer: status.answer.clone(),
        error: status.error.clone(),
        rejected: Vec::new(),
    };
    if status.state != TaskState::Done {
        ai.error.get_or_insert_with(|| {
            format!("ai_fallback: the task ended {}", status.state.as_str())
        });
        return ai;
    }
    let named = named_paths(status.answer.as_deref().unwrap_or_default());
    let policy = node.policy();
    let mode = node.effective_mode();
    let checked = crate::runtime::spawn_blocking(move || {
        named
            .into_iter()
            .map(|path| {
                let verdict = handed_out(&policy, mode, &path);
                (path, verdict)
            })
            .collect::<Vec<_>>()
    })
    .await;
    let checked = match checked {
        Ok(checked) => checked,
        Err(e) => {
            ai.error = Some(format!("ai_fallback: checking the named paths failed: {e}"));
            return ai;
        }
    };
    for (path, verdict) in checked {
        match verdict {
            Ok(found) if matches.len() < max_results => {
                if !matches.iter().any(|m| m.path == found.path) {
                    matches.push(found);
                }
            }
            Ok(_) => ai.rejected.push(RejectedPath {
                path,
                reason: format!("beyond max_results ({max_results})"),
            }),
            Err(reason) => ai.rejected.push(RejectedPath { path, reason }),
        }
    }
    ai
}

/// The paths an answer names on its `PATH: ` lines (the form the prompt asks for; tolerant of
/// list markers and backticks a model adds), at most `MAX_AI_PATHS`.
fn named_paths(answer: &str) -> Vec<String> {
    answer
        .lines()
        .filter_map(|line| {
            let line = line.trim().trim_start_matches(['-', '*', ' ']);
            let rest = line.strip_prefix("PATH:")?;
            let path = rest.trim().trim_matches('`').trim();
            (!path.is_empty()).then(|| path.to_string())
        })
        .take(MAX_AI_PATHS)
        .collect()
}

/// `path` as a match, if it is an absolute path to a regular file the policy lets this host
/// read (judged by its path and, once opened, by its identity, as the search judges files).
fn handed_out(policy: &Policy, mode: Mode, path: &str) -> Result<SearchMatch, String> {
    let candidate = std::path::Path::new(path);
    if !candidate.is_absolute() {
        return Err("not an absolute path".into());
    }
    let resolved = policy
        .resolve(mode, candidate, Intent::Read)
        .map_err(|r| r.reason)?;
    let (_file, meta) = resolved.open_read().map_err(|e| match e {
        OpenError::Refused(refusal) => refusal.reason,
        OpenError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => "no such file".into(),
        OpenError::Io(e) => format!("cannot open: {e}"),
    })?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    Ok(SearchMatch {
        path: resolved.absolute.display().to_string(),
        size: meta.len(),
        modified_ms: meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::named_paths;

    #[test]
    fn an_answer_names_its_paths_on_path_lines_only() {
        let answer = "I looked in Documents.\nPATH: /home/u/Documents/report-2024.pdf\n\
                      - PATH: `/home/u/old/report.pdf`\nPATH:\nNONE\nThe path: /etc/passwd";
        assert_eq!(
            named_paths(answer),
            [
                "/home/u/Documents/report-2024.pdf",
                "/home/u/old/report.pdf"
            ]
        );
        assert!(named_paths("NONE").is_empty());
    }
}
