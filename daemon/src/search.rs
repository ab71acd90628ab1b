//! `file_search`: walks allowed roots with the `ignore` crate (gitignore-aware, hidden files
//! skipped unless asked, symlinks not followed) and matches by name glob, content regex and/or
//! image type. Every hit is filtered through the policy's path lists before it is returned.

use std::io::Read;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};
use regex::bytes::Regex;

use crate::ops::{FileSearchResult, SearchMatch};
use crate::policy::{Mode, Policy};

/// Default maximum number of matches.
pub const DEFAULT_MAX_RESULTS: usize = 200;
/// Files larger than this are not searched by content.
const MAX_CONTENT_BYTES: u64 = 10 * 1024 * 1024;
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
            .map(|r| Regex::new(r).map_err(|e| SearchError::Regex(r.to_string(), e.to_string())))
            .transpose()?;
        Ok(Query {
            name,
            content,
            images_only,
            include_hidden,
            max_results: max_results.unwrap_or(DEFAULT_MAX_RESULTS).max(1),
        })
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

    fn matches_content(&self, path: &Path, size: u64) -> bool {
        let Some(regex) = &self.content else {
            return true;
        };
        if size > MAX_CONTENT_BYTES {
            return false;
        }
        let mut bytes = Vec::new();
        let Ok(file) = std::fs::File::open(path) else {
            return false;
        };
        if file
            .take(MAX_CONTENT_BYTES)
            .read_to_end(&mut bytes)
            .is_err()
        {
            return false;
        }
        // Binary files (a NUL in the first 8 KiB) are skipped, as ripgrep does by default.
        if bytes.iter().take(8192).any(|&b| b == 0) {
            return false;
        }
        regex.is_match(&bytes)
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

/// Searches `roots` (already checked against the policy by the caller) for `query`.
pub fn search(policy: &Policy, mode: Mode, roots: &[PathBuf], query: &Query) -> FileSearchResult {
    let mut matches = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut truncated = false;
    'roots: for root in roots {
        let walker = ignore::WalkBuilder::new(root)
            .hidden(!query.include_hidden)
            .follow_links(false)
            .git_ignore(true)
            .git_global(false)
            .parents(true)
            .build();
        for entry in walker.flatten() {
            let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
            if !is_file {
                continue;
            }
            let path = entry.path();
            if !query.matches_name(path) || seen.contains(path) {
                continue;
            }
            if !policy.path_visible(mode, path) {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if !query.matches_content(path, meta.len()) {
                continue;
            }
            seen.insert(path.to_path_buf());
            if matches.len() >= query.max_results {
                truncated = true;
                break 'roots;
            }
            matches.push(SearchMatch {
                path: path.display().to_string(),
                size: meta.len(),
                modified_ms: meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as u64),
            });
        }
    }
    FileSearchResult {
        matches,
        truncated,
        searched_roots: roots.iter().map(|r| r.display().to_string()).collect(),
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
