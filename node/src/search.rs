//! `file_search`: walks allowed roots by descriptor and matches by name glob, content regex
//! and/or image type. Each folder is opened from its parent's descriptor without following
//! symlinks (a folder swapped for a symlink mid-walk is skipped, never followed out), hidden
//! files are skipped unless asked, `.gitignore` (inside a git repository) and `.ignore` files met
//! on the way are honoured, and every file is judged by the policy: by its path, and by its
//! identity once opened, so a hard link to a protected file is neither listed nor read.
//!
//! Bounded: a content regex may compile to at most `REGEX_SIZE_LIMIT` bytes (a pattern such as
//! `\p{L}{100}b` is refused with a message), and a search stops at its wall-clock budget
//! (`DEFAULT_TIME_BUDGET`), checked between files and between chunks of a file, reporting
//! `truncated_reason: "time budget"`. Content is matched in chunks of about `CHUNK` bytes cut
//! at line ends, so a match spanning a cut is not found; a line longer than a chunk is cut
//! with an overlap of `CHUNK_OVERLAP` bytes. `.gitignore` files above the searched folder are
//! not read.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cap_std::fs::{Dir, MetadataExt as _};
use globset::{GlobBuilder, GlobMatcher};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use regex::bytes::{Regex, RegexBuilder};

use crate::policy::{Intent, Mode, Policy, open_dir_nofollow};
use remote_agents_ops::{FileSearchResult, SearchMatch};

/// Default maximum number of matches.
pub const DEFAULT_MAX_RESULTS: usize = 200;
/// Files larger than this are not searched by content.
const MAX_CONTENT_BYTES: u64 = 10 * 1024 * 1024;
/// Largest compiled content regex, in bytes.
pub const REGEX_SIZE_LIMIT: usize = 2 * 1024 * 1024;
/// Largest lazy-DFA cache of a content regex, in bytes.
const REGEX_DFA_SIZE_LIMIT: usize = 8 * 1024 * 1024;
/// Wall-clock time one search may take before it stops and says so.
pub const DEFAULT_TIME_BUDGET: Duration = Duration::from_secs(10);
/// Content is matched this many bytes at a time, so the budget is checked in between.
const CHUNK: usize = 64 * 1024;
/// How much consecutive pieces of one long line overlap.
const CHUNK_OVERLAP: usize = 1024;
/// Folders deeper than this beneath a root are not entered.
const MAX_DEPTH: usize = 64;
/// `.gitignore`/`.ignore` files larger than this are not read.
const MAX_IGNORE_FILE: u64 = 1024 * 1024;
const IMAGE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "webp", "heic", "heif", "bmp", "tif", "tiff", "svg", "avif",
];

/// Errors in the search query.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("invalid name glob `{0}`: {1}")]
    Glob(String, String),
    #[error("invalid content regex `{0}`: {1}")]
    Regex(String, String),
    #[error("give at least one of name, content or images_only")]
    NoCriteria,
}

/// A compiled query.
pub struct Query {
    name: Option<GlobMatcher>,
    content: Option<Regex>,
    images_only: bool,
    include_hidden: bool,
    max_results: usize,
    time_budget: Duration,
}

/// Why a search stopped before it had looked everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    MaxResults,
    TimeBudget,
}

impl Stop {
    fn reason(self) -> &'static str {
        match self {
            Stop::MaxResults => "max results",
            Stop::TimeBudget => "time budget",
        }
    }
}

impl Query {
    pub fn new(
        name: Option<&str>,
        content: Option<&str>,
        images_only: bool,
        include_hidden: bool,
        max_results: Option<usize>,
    ) -> Result<Self, SearchError> {
        if name.is_none() && content.is_none() && !images_only {
            return Err(SearchError::NoCriteria);
        }
        let name = name
            .map(|g| {
                GlobBuilder::new(g)
                    .case_insensitive(true)
                    .literal_separator(true)
                    .build()
                    .map(|g| g.compile_matcher())
                    .map_err(|e| SearchError::Glob(g.to_string(), e.to_string()))
            })
            .transpose()?;
        let content = content
            .map(|r| {
                RegexBuilder::new(r)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
                    .build()
                    .map_err(|e| {
                        SearchError::Regex(
                            r.to_string(),
                            match e {
                                regex::Error::CompiledTooBig(limit) => format!(
                                    "it compiles to more than {limit} bytes; use a smaller \
                                     pattern (fewer or shorter repetitions, ASCII classes \
                                     such as [a-z] instead of \\p{{L}} or \\w)"
                                ),
                                other => other.to_string(),
                            },
                        )
                    })
            })
            .transpose()?;
        Ok(Query {
            name,
            content,
            images_only,
            include_hidden,
            max_results: max_results.unwrap_or(DEFAULT_MAX_RESULTS).max(1),
            time_budget: DEFAULT_TIME_BUDGET,
        })
    }

    /// The same query with another wall-clock budget.
    pub fn with_time_budget(mut self, budget: Duration) -> Self {
        self.time_budget = budget;
        self
    }

    fn matches_name(&self, path: &Path) -> bool {
        let Some(file_name) = path.file_name() else {
            return false;
        };
        if let Some(glob) = &self.name
            && !glob.is_match(file_name)
        {
            return false;
        }
        if self.images_only {
            let ext = path
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            if !IMAGE_EXTENSIONS.contains(&ext.as_str()) {
                return false;
            }
        }
        true
    }

    /// Whether the open `file` matches the content regex; `Err` when the budget ran out first.
    fn matches_content(&self, file: std::fs::File, deadline: Instant) -> Result<bool, Stop> {
        let Some(regex) = &self.content else {
            return Ok(true);
        };
        let mut bytes = Vec::new();
        if file
            .take(MAX_CONTENT_BYTES)
            .read_to_end(&mut bytes)
            .is_err()
        {
            return Ok(false);
        }
        // Binary files (a NUL in the first 8 KiB) are skipped, as ripgrep does by default.
        if bytes.iter().take(8192).any(|&b| b == 0) {
            return Ok(false);
        }
        let mut start = 0;
        while start < bytes.len() {
            if Instant::now() >= deadline {
                return Err(Stop::TimeBudget);
            }
            let mut end = (start + CHUNK).min(bytes.len());
            let mut next = end;
            if end < bytes.len() {
                match bytes[start..end].iter().rposition(|&b| b == b'\n') {
                    Some(newline) => {
                        end = start + newline + 1;
                        next = end;
                    }
                    None => next = end - CHUNK_OVERLAP,
                }
            }
            if regex.is_match(&bytes[start..end]) {
                return Ok(true);
            }
            start = next;
        }
        Ok(false)
    }
}

/// The default roots: the usual user folders first, then the whole home directory.
pub fn default_roots(home: &Path) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = ["Pictures", "Documents", "Downloads", "Desktop"]
        .iter()
        .map(|d| home.join(d))
        .filter(|p| p.is_dir())
        .collect();
    roots.push(home.to_path_buf());
    roots
}

/// One ignore file's rules, for the folder it sits in and beneath.
type IgnoreStack = Vec<Gitignore>;

/// Whether the innermost ignore file with an opinion on `path` ignores it.
fn ignored(stack: &IgnoreStack, path: &Path, is_dir: bool) -> bool {
    for rules in stack.iter().rev() {
        let matched = rules.matched(path, is_dir);
        if matched.is_ignore() {
            return true;
        }
        if matched.is_whitelist() {
            return false;
        }
    }
    false
}

/// Opens a regular file `name` in `dir` for reading without following a symlink.
fn open_file_nofollow(dir: &Dir, name: &OsStr) -> Option<std::fs::File> {
    use rustix::fs::{Mode as FileMode, OFlags, openat};
    openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        FileMode::empty(),
    )
    .ok()
    .map(std::fs::File::from)
}

/// The rules of the ignore file `name` in `dir`, read through the descriptor.
fn read_ignore_file(dir: &Dir, folder: &Path, name: &str) -> Option<Gitignore> {
    let file = open_file_nofollow(dir, OsStr::new(name))?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_IGNORE_FILE {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(MAX_IGNORE_FILE).read_to_end(&mut bytes).ok()?;
    let mut builder = GitignoreBuilder::new(folder);
    for line in String::from_utf8_lossy(&bytes).lines() {
        let _ = builder.add_line(Some(folder.join(name)), line);
    }
    builder.build().ok()
}

/// A search in progress.
struct Walk<'a> {
    policy: &'a Policy,
    mode: Mode,
    query: &'a Query,
    deadline: Instant,
    matches: Vec<SearchMatch>,
    seen: HashSet<PathBuf>,
    stop: Option<Stop>,
}

impl Walk<'_> {
    fn visit(
        &mut self,
        dir: &Dir,
        folder: &Path,
        depth: usize,
        ignores: &mut IgnoreStack,
        in_repo: bool,
    ) {
        let in_repo = in_repo || dir.symlink_metadata(".git").is_ok();
        let depth_before = ignores.len();
        if in_repo && let Some(rules) = read_ignore_file(dir, folder, ".gitignore") {
            ignores.push(rules);
        }
        if let Some(rules) = read_ignore_file(dir, folder, ".ignore") {
            ignores.push(rules);
        }
        let mut entries: Vec<_> = match dir.entries() {
            Ok(entries) => entries
                .flatten()
                .filter_map(|e| Some((e.file_name(), e.file_type().ok()?)))
                .collect(),
            Err(_) => Vec::new(),
        };
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, file_type) in entries {
            if self.stop.is_some() {
                break;
            }
            if Instant::now() >= self.deadline {
                self.stop = Some(Stop::TimeBudget);
                break;
            }
            if !self.query.include_hidden && name.as_encoded_bytes().starts_with(b".") {
                continue;
            }
            let path = folder.join(&name);
            if ignored(ignores, &path, file_type.is_dir()) {
                continue;
            }
            if file_type.is_dir() {
                // A folder the gate hides is not entered: names beneath it never show.
                if depth < MAX_DEPTH
                    && !self.policy.entry_hidden(self.mode, &path, None)
                    && let Ok(sub) = open_dir_nofollow(dir, &name)
                {
                    self.visit(&sub, &path, depth + 1, ignores, in_repo);
                }
            } else if file_type.is_file() {
                self.file(dir, &name, path);
            }
        }
        ignores.truncate(depth_before);
    }

    fn file(&mut self, dir: &Dir, name: &OsStr, path: PathBuf) {
        if !self.query.matches_name(&path)
            || self.seen.contains(&path)
            || !self.policy.path_visible(self.mode, &path)
        {
            return;
        }
        // Judge the file by what it is, not by its name: a hard link to a protected file is
        // skipped. Content is read from the very descriptor that was judged.
        let (size, modified, identity, file) = if self.query.content.is_some() {
            let Some(file) = open_file_nofollow(dir, name) else {
                return;
            };
            let Ok(meta) = file.metadata() else {
                return;
            };
            if !meta.is_file() {
                return;
            }
            (
                meta.len(),
                meta.modified().ok(),
                (meta.dev(), meta.ino()),
                Some(file),
            )
        } else {
            let Ok(meta) = dir.symlink_metadata(name) else {
                return;
            };
            if !meta.is_file() {
                return;
            }
            (
                meta.len(),
                meta.modified().ok().map(|t| t.into_std()),
                (meta.dev(), meta.ino()),
                None,
            )
        };
        if self.policy.entry_hidden(self.mode, &path, Some(identity)) {
            return;
        }
        if let Some(file) = file {
            if size > MAX_CONTENT_BYTES {
                return;
            }
            match self.query.matches_content(file, self.deadline) {
                Ok(true) => {}
                Ok(false) => return,
                Err(stop) => {
                    self.stop = Some(stop);
                    return;
                }
            }
        }
        if self.matches.len() >= self.query.max_results {
            self.stop = Some(Stop::MaxResults);
            return;
        }
        self.matches.push(SearchMatch {
            path: path.display().to_string(),
            size,
            modified_ms: modified
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64),
        });
        self.seen.insert(path);
    }
}

/// Searches `roots` (already checked against the policy by the caller, and resolved again here
/// by descriptor) for `query`.
pub fn search(policy: &Policy, mode: Mode, roots: &[PathBuf], query: &Query) -> FileSearchResult {
    let mut walk = Walk {
        policy,
        mode,
        query,
        deadline: Instant::now() + query.time_budget,
        matches: Vec::new(),
        seen: HashSet::new(),
        stop: None,
    };
    for root in roots {
        if walk.stop.is_some() {
            break;
        }
        let Ok(resolved) = policy.resolve(mode, root, Intent::Read) else {
            continue;
        };
        let Ok(dir) = resolved.open_dir() else {
            continue;
        };
        // Inside a repository that starts above the root, its .gitignore files apply.
        let in_repo = resolved
            .absolute
            .ancestors()
            .skip(1)
            .any(|a| a.join(".git").exists());
        walk.visit(&dir, &resolved.absolute, 0, &mut Vec::new(), in_repo);
    }
    let found = !walk.matches.is_empty();
    FileSearchResult {
        matches: walk.matches,
        truncated: walk.stop.is_some(),
        truncated_reason: walk.stop.map(|s| s.reason().to_string()),
        searched_roots: roots.iter().map(|r| r.display().to_string()).collect(),
        found_by: found.then_some(remote_agents_ops::FoundBy::Search),
        ai: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyConfig;

    fn tree() -> (tempfile::TempDir, PathBuf, Policy) {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::create_dir_all(root.join("Pictures/trip")).unwrap();
        std::fs::create_dir_all(root.join("Documents")).unwrap();
        std::fs::create_dir_all(root.join("secret")).unwrap();
        std::fs::write(root.join("Pictures/trip/beach.JPG"), "img").unwrap();
        std::fs::write(root.join("Documents/report-2024.txt"), "total: 42 apples").unwrap();
        std::fs::write(root.join("Documents/notes.md"), "nothing here").unwrap();
        std::fs::write(root.join("Documents/blob.bin"), b"apples\0\0").unwrap();
        std::fs::write(root.join("secret/apples.txt"), "apples").unwrap();
        std::fs::write(root.join(".hidden.txt"), "apples").unwrap();
        let data = root.join(".data");
        std::fs::create_dir_all(&data).unwrap();
        let policy = Policy::new(
            &PolicyConfig {
                roots: vec![root.clone()],
                deny_paths: vec!["**/secret/**".into()],
                ..Default::default()
            },
            &data,
        )
        .unwrap();
        (tmp, root, policy)
    }

    fn names(result: &FileSearchResult) -> Vec<String> {
        let mut v: Vec<String> = result
            .matches
            .iter()
            .map(|m| {
                Path::new(&m.path)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn finds_by_name_content_and_image_type() {
        let (_t, root, p) = tree();
        let roots = default_roots(&root);
        let q = Query::new(Some("report-*"), None, false, false, None).unwrap();
        assert_eq!(
            names(&search(&p, Mode::Plan, &roots, &q)),
            vec!["report-2024.txt"]
        );
        let q = Query::new(None, Some(r"\d+ apples"), false, false, None).unwrap();
        assert_eq!(
            names(&search(&p, Mode::Plan, &roots, &q)),
            vec!["report-2024.txt"]
        );
        let q = Query::new(None, None, true, false, None).unwrap();
        assert_eq!(
            names(&search(&p, Mode::Plan, &roots, &q)),
            vec!["beach.JPG"]
        );
    }

    #[test]
    fn denied_hidden_and_binary_files_are_not_returned() {
        let (_t, root, p) = tree();
        let q = Query::new(None, Some("apples"), false, false, None).unwrap();
        let found = names(&search(&p, Mode::Plan, std::slice::from_ref(&root), &q));
        assert_eq!(found, vec!["report-2024.txt"]);
        let q = Query::new(None, Some("apples"), false, true, None).unwrap();
        let found = names(&search(&p, Mode::Plan, &[root], &q));
        assert_eq!(found, vec![".hidden.txt", "report-2024.txt"]);
    }

    /// `\p{L}{100}b` took 17.9 s on one 9 MB file: a regex that compiles to more than
    /// `REGEX_SIZE_LIMIT` is refused with a message saying what to do.
    #[test]
    fn a_content_regex_that_compiles_too_big_is_refused() {
        let err = Query::new(None, Some(r"\p{L}{100}b"), false, false, None)
            .err()
            .expect("the huge regex compiled");
        assert!(
            matches!(&err, SearchError::Regex(_, why) if why.contains("smaller pattern")),
            "{err}"
        );
        assert!(Query::new(None, Some(r"\w{20}b"), false, false, None).is_ok());
    }

    /// A search stops at its wall-clock budget, between files and between chunks of one
    /// file, and says so instead of running on.
    #[test]
    fn a_search_past_its_time_budget_stops_and_says_so() {
        let (_t, root, p) = tree();
        let line = "lorem ipsum dolor sit amet apples\n".repeat(3000);
        std::fs::write(root.join("Documents/big.txt"), &line).unwrap();
        let q = Query::new(None, Some("no such words"), false, false, None)
            .unwrap()
            .with_time_budget(Duration::ZERO);
        let started = Instant::now();
        let result = search(&p, Mode::Plan, std::slice::from_ref(&root), &q);
        assert!(result.truncated);
        assert_eq!(result.truncated_reason.as_deref(), Some("time budget"));
        assert!(started.elapsed() < Duration::from_secs(5));
        // Within budget the same tree is searched to the end; a match past the first chunk of
        // a file is found.
        std::fs::write(
            root.join("Documents/big.txt"),
            format!("{line}needle\n{line}"),
        )
        .unwrap();
        let q = Query::new(None, Some("(?m)^needle$"), false, false, None).unwrap();
        let result = search(&p, Mode::Plan, std::slice::from_ref(&root), &q);
        assert_eq!(names(&result), vec!["big.txt"]);
        assert!(!result.truncated && result.truncated_reason.is_none());
    }

    /// A root with a folder `x` (holding `inside.txt`) and a link `link-x` to a folder outside
    /// the roots that holds `outside-secret.txt`; both files contain "apples". The swap tests
    /// exchange `x` and `link-x` and check nothing outside is ever listed.
    fn swap_fixture() -> (tempfile::TempDir, std::path::PathBuf, Policy) {
        let tmp = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(tmp.path()).unwrap();
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(root.join("x")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("outside-secret.txt"), "apples").unwrap();
        std::fs::write(root.join("x/inside.txt"), "apples").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link-x")).unwrap();
        let data = base.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let p = Policy::new(
            &PolicyConfig {
                roots: vec![root.clone()],
                ..Default::default()
            },
            &data,
        )
        .unwrap();
        (tmp, root, p)
    }

    /// `file_search` walked by ordinary paths and listed files outside the roots when a folder
    /// was swapped for a symlink mid-walk (84 of 1,000): it walks by descriptor now.
    #[test]
    fn a_search_never_walks_out_through_a_folder_swapped_for_a_symlink() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let (_tmp, root, p) = swap_fixture();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let swapper = {
            let stop = stop.clone();
            let root = root.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    crate::fs::tests::exchange(&root.join("x"), &root.join("link-x"));
                }
            })
        };
        let by_name = Query::new(Some("*secret*"), None, false, false, None).unwrap();
        let by_content = Query::new(None, Some("apples"), false, false, None).unwrap();
        let mut leaks = 0;
        for _ in 0..500 {
            for q in [&by_name, &by_content] {
                let result = search(&p, Mode::Plan, std::slice::from_ref(&root), q);
                leaks += result
                    .matches
                    .iter()
                    .filter(|m| m.path.contains("outside-secret"))
                    .count();
            }
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
        assert_eq!(leaks, 0, "files outside the root were listed");
    }

    /// A search root checked by the gate and swapped for a symlink before the walk was walked
    /// through the link, out of the roots.
    #[test]
    fn a_search_root_swapped_for_a_symlink_after_the_check_lists_nothing_outside() {
        let (_tmp, root, p) = swap_fixture();
        let checked = p
            .resolve(Mode::Plan, &root.join("x"), Intent::Read)
            .unwrap();
        crate::fs::tests::exchange(&root.join("x"), &root.join("link-x"));
        let q = Query::new(Some("*secret*"), None, false, false, None).unwrap();
        let result = search(&p, Mode::Plan, &[checked.absolute], &q);
        assert!(result.matches.is_empty(), "{:?}", result.matches);
    }

    /// A hard link to a file under a denied folder was found (and its content matched) by
    /// search like any other file.
    #[test]
    fn a_hard_link_to_a_denied_file_is_not_found() {
        let (_t, root, _) = tree();
        std::fs::hard_link(
            root.join("secret/apples.txt"),
            root.join("Documents/fruit.txt"),
        )
        .unwrap();
        let p = Policy::new(
            &PolicyConfig {
                roots: vec![root.clone()],
                deny_paths: vec![format!("{}/secret/**", root.display())],
                ..Default::default()
            },
            &root.join(".data"),
        )
        .unwrap();
        for q in [
            Query::new(None, Some("apples"), false, false, None).unwrap(),
            Query::new(Some("fruit*"), None, false, false, None).unwrap(),
        ] {
            let found = names(&search(&p, Mode::Plan, std::slice::from_ref(&root), &q));
            assert!(!found.contains(&"fruit.txt".to_string()), "{found:?}");
        }
    }

    #[test]
    fn max_results_truncates_and_empty_queries_are_rejected() {
        let (_t, root, p) = tree();
        let q = Query::new(Some("*"), None, false, false, Some(1)).unwrap();
        let result = search(&p, Mode::Plan, &[root], &q);
        assert_eq!(result.matches.len(), 1);
        assert!(result.truncated);
        assert!(matches!(
            Query::new(None, None, false, false, None),
            Err(SearchError::NoCriteria)
        ));
    }
}
