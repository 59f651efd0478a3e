//! The bodies of the repository endpoints (`/v1/{org}/tool/repo/…`). They are toolsmith's own
//! (the compatible API's document no longer has them); `/openapi.json` and docs/API.md describe
//! them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Serialize;
use toolsmith_domain::time::Timestamp;
use toolsmith_repo::browse::{BranchInfo, CommitInfo, DirEntry, FileContent};

use super::ToolUserInfo;
use crate::service::repo::Pushers;

fn secs_to_rfc3339(secs: i64) -> String {
    Timestamp(secs.saturating_mul(1_000_000)).to_rfc3339()
}

/// The last commit of a directory entry.
#[derive(Debug, Serialize)]
pub struct CommitSummary {
    sha: String,
    message: String,
    timestamp: String,
    committer: Option<ToolUserInfo>,
}

/// One directory entry.
#[derive(Debug, Serialize)]
pub struct EntryOut {
    name: String,
    path: String,
    #[serde(rename = "type")]
    kind: &'static str,
    size: Option<u64>,
    last_commit: Option<CommitSummary>,
}

/// `GET …/repo/directory`.
#[derive(Debug, Serialize)]
pub struct DirectoryOut {
    entries: Vec<EntryOut>,
}

impl DirectoryOut {
    /// The listing of `entries`, with the pushers of their last commits.
    pub fn new(entries: Vec<DirEntry>, pushers: &Pushers) -> Self {
        let entries = entries
            .into_iter()
            .map(|e| EntryOut {
                last_commit: e.last_commit.map(|c| CommitSummary {
                    committer: pushers.get(&c.sha).map(Into::into),
                    timestamp: secs_to_rfc3339(c.timestamp),
                    sha: c.sha,
                    message: c.message,
                }),
                name: e.name,
                path: e.path,
                kind: e.kind.as_str(),
                size: e.size,
            })
            .collect();
        DirectoryOut { entries }
    }
}

/// One file of `POST …/repo/files`: text as UTF-8, anything else as base64.
#[derive(Debug, Serialize)]
pub struct FileOut {
    path: String,
    content: String,
    encoding: &'static str,
    size: usize,
}

/// `POST …/repo/files`.
#[derive(Debug, Serialize)]
pub struct FilesOut {
    files: Vec<FileOut>,
}

impl FilesOut {
    /// The answer for `files`, in request order.
    pub fn new(files: Vec<FileContent>) -> Self {
        let files = files
            .into_iter()
            .map(|f| {
                let size = f.bytes.len();
                match String::from_utf8(f.bytes) {
                    Ok(text) => FileOut { path: f.path, content: text, encoding: "utf-8", size },
                    Err(e) => {
                        FileOut { path: f.path, content: STANDARD.encode(e.as_bytes()), encoding: "base64", size }
                    }
                }
            })
            .collect();
        FilesOut { files }
    }
}

/// A commit's git author.
#[derive(Debug, Serialize)]
pub struct Author {
    name: String,
    email: String,
}

/// A file a commit changed.
#[derive(Debug, Serialize)]
pub struct ChangedFileOut {
    path: String,
    change_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    additions: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deletions: Option<u64>,
}

/// Lines added and deleted by a commit.
#[derive(Debug, Serialize)]
pub struct Stats {
    additions: u64,
    deletions: u64,
}

/// One commit of `GET …/repo/commits`.
#[derive(Debug, Serialize)]
pub struct CommitOut {
    sha: String,
    message: String,
    timestamp: String,
    author: Author,
    committer: Option<ToolUserInfo>,
    parents: Vec<String>,
    changed_files: Option<Vec<ChangedFileOut>>,
    stats: Option<Stats>,
}

impl CommitOut {
    /// The wire form of a commit; `with_stats` adds its line counts.
    pub fn new(c: CommitInfo, pushers: &Pushers, with_stats: bool) -> Self {
        let stats = with_stats.then(|| {
            let files = c.changed_files.as_deref().unwrap_or_default();
            Stats {
                additions: files.iter().filter_map(|f| f.additions).fold(0, u64::saturating_add),
                deletions: files.iter().filter_map(|f| f.deletions).fold(0, u64::saturating_add),
            }
        });
        CommitOut {
            committer: pushers.get(&c.sha).map(Into::into),
            timestamp: secs_to_rfc3339(c.timestamp),
            author: Author { name: c.author_name, email: c.author_email },
            parents: c.parents,
            changed_files: c.changed_files.map(|files| {
                files
                    .into_iter()
                    .map(|f| ChangedFileOut {
                        path: f.path,
                        change_type: f.change,
                        additions: f.additions,
                        deletions: f.deletions,
                    })
                    .collect()
            }),
            stats,
            sha: c.sha,
            message: c.message,
        }
    }
}

/// `GET …/repo/commits`: a page of history.
#[derive(Debug, Serialize)]
pub struct CommitsOut {
    /// The commits, newest first.
    pub commits: Vec<CommitOut>,
    /// Whether another page follows.
    pub has_more: bool,
    /// The next page's number.
    pub continuation_token: Option<usize>,
}

/// One branch: `GET …/repo/branch/{name}`, and an item of the branch list.
#[derive(Debug, Serialize)]
pub struct BranchOut {
    name: String,
    latest_commit_sha: String,
    latest_commit_message: String,
    latest_commit_timestamp: String,
    latest_commit_committer: Option<ToolUserInfo>,
}

impl BranchOut {
    /// The wire form of a branch.
    pub fn new(b: BranchInfo, pushers: &Pushers) -> Self {
        BranchOut {
            latest_commit_committer: pushers.get(&b.sha).map(Into::into),
            latest_commit_timestamp: secs_to_rfc3339(b.timestamp),
            name: b.name,
            latest_commit_sha: b.sha,
            latest_commit_message: b.message,
        }
    }
}

/// `GET …/repo/branches`: a page of branches.
#[derive(Debug, Serialize)]
pub struct BranchesOut {
    /// The branches.
    pub branches: Vec<BranchOut>,
    /// Whether another page follows.
    pub has_more: bool,
    /// The next page's number.
    pub continuation_token: Option<usize>,
}
