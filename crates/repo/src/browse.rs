//! Reading a repository for the browsing endpoints: files, directories, history and branches.
//!
//! Everything is read from git's object database at a resolved commit, never from a checkout, so
//! a symlink in the tree is data (its target path), not something to follow.

use std::collections::HashMap;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::git::Git;
use crate::names::{check_ref, looks_like_sha, normalize_path};
use crate::{RepoError, RepoStore};

/// What a tree entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular (or executable) file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link; its content is the target path.
    Symlink,
    /// A submodule (a commit of another repository).
    Submodule,
}

impl EntryKind {
    fn from_mode(mode: &str) -> EntryKind {
        match mode {
            "040000" => EntryKind::Directory,
            "120000" => EntryKind::Symlink,
            "160000" => EntryKind::Submodule,
            _ => EntryKind::File,
        }
    }

    /// The lowercase name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Directory => "directory",
            EntryKind::Symlink => "symlink",
            EntryKind::Submodule => "submodule",
        }
    }
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name.
    pub name: String,
    /// Its path from the repository root.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
    /// Size in bytes, for files and symlinks.
    pub size: Option<u64>,
    /// The newest commit that changed it, when asked for.
    pub last_commit: Option<CommitInfo>,
}

/// A file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileContent {
    /// Its path.
    pub path: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// One file changed by a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedFile {
    /// Its path.
    pub path: String,
    /// `added`, `modified`, `deleted` or `type_changed`.
    pub change: &'static str,
    /// Lines added (absent for binary files or when stats were not asked for).
    pub additions: Option<u64>,
    /// Lines deleted (likewise).
    pub deletions: Option<u64>,
}

/// A commit as the browsing endpoints describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// Its id.
    pub sha: String,
    /// The full message.
    pub message: String,
    /// Committer time, seconds since the epoch.
    pub timestamp: i64,
    /// Author name as recorded in git.
    pub author_name: String,
    /// Author email as recorded in git.
    pub author_email: String,
    /// Parent ids.
    pub parents: Vec<String>,
    /// Changed files, when asked for.
    pub changed_files: Option<Vec<ChangedFile>>,
}

/// A branch and its newest commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchInfo {
    /// The branch name (without `refs/heads/`).
    pub name: String,
    /// The newest commit's id.
    pub sha: String,
    /// Its message.
    pub message: String,
    /// Its committer time, seconds since the epoch.
    pub timestamp: i64,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Whether another page follows.
    pub has_more: bool,
}

/// What the commit listing is asked for.
#[derive(Debug, Clone, Default)]
pub struct CommitQuery {
    /// Branch or commit to start from.
    pub reference: String,
    /// Only commits touching this path (or below it).
    pub path: Option<String>,
    /// Only commits committed at or after (seconds since the epoch).
    pub since: Option<i64>,
    /// Only commits committed at or before.
    pub until: Option<i64>,
    /// Page size.
    pub limit: usize,
    /// 1-based page number.
    pub page: usize,
    /// Include changed files.
    pub changed_files: bool,
    /// Include line counts (implies changed files).
    pub stats: bool,
}

struct TreeEntry {
    kind: EntryKind,
    oid: String,
    size: Option<u64>,
    path: String,
}

/// `%H %P %ct %an %ae %B`, separated by 0x1f, each commit starting with 0x1e and its message
/// ending with 0x1f so that file lists after it parse unambiguously.
const LOG_FORMAT: &str = "--format=%x1e%H%x1f%P%x1f%ct%x1f%an%x1f%ae%x1f%B%x1f";

impl RepoStore {
    /// Resolves a branch name or a full or abbreviated commit id to a commit id.
    pub async fn resolve(&self, org: &str, reference: &str) -> Result<String, RepoError> {
        check_ref(reference)?;
        let git = self.git(org)?;
        resolve(&git, reference).await
    }

    /// The bytes of the file at `path` in `reference`.
    pub async fn read_file(&self, org: &str, reference: &str, path: &str) -> Result<FileContent, RepoError> {
        check_ref(reference)?;
        let git = self.git(org)?;
        let commit = resolve(&git, reference).await?;
        read_file(&git, &commit, path, self.limits.max_file_bytes).await
    }

    /// Several files of one commit, in the order asked; fails if any path is not a file.
    pub async fn read_files(
        &self,
        org: &str,
        reference: &str,
        paths: &[String],
    ) -> Result<Vec<FileContent>, RepoError> {
        check_ref(reference)?;
        let git = self.git(org)?;
        let commit = resolve(&git, reference).await?;
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            files.push(read_file(&git, &commit, path, self.limits.max_file_bytes).await?);
        }
        Ok(files)
    }

    /// The entries of the directory at `path` in `reference`, directories first, then by name;
    /// with `last_commit`, each entry carries the newest commit that touched it, found in one walk
    /// of the directory's history.
    pub async fn list_directory(
        &self,
        org: &str,
        reference: &str,
        path: &str,
        last_commit: bool,
    ) -> Result<Vec<DirEntry>, RepoError> {
        check_ref(reference)?;
        let path = normalize_path(path)?;
        let git = self.git(org)?;
        let commit = resolve(&git, reference).await?;
        if !path.is_empty() {
            match tree_entry(&git, &commit, &path).await? {
                None => return Err(RepoError::PathNotFound),
                Some(e) if e.kind != EntryKind::Directory => return Err(RepoError::IsAFile),
                Some(_) => {}
            }
        }
        let spec = if path.is_empty() { String::new() } else { format!("{path}/") };
        let mut args = vec!["ls-tree", "-l", "-z", "--end-of-options", commit.as_str()];
        if !spec.is_empty() {
            args.extend(["--", spec.as_str()]);
        }
        let out = git.run_bytes(&args).await?;
        let mut entries: Vec<DirEntry> = parse_ls_tree(&out)
            .into_iter()
            .map(|e| DirEntry {
                name: e.path.rsplit('/').next().unwrap_or(&e.path).to_owned(),
                path: e.path,
                kind: e.kind,
                size: e.size,
                last_commit: None,
            })
            .collect();
        entries
            .sort_by(|a, b| (a.kind != EntryKind::Directory, &a.name).cmp(&(b.kind != EntryKind::Directory, &b.name)));
        if last_commit && !entries.is_empty() {
            let found = last_commits(&git, &commit, &path, entries.iter().map(|e| e.name.clone()).collect()).await?;
            for entry in &mut entries {
                entry.last_commit = found.get(&entry.name).cloned();
            }
        }
        Ok(entries)
    }

    /// A page of the history of `query.reference`, newest first.
    pub async fn commits(&self, org: &str, query: &CommitQuery) -> Result<Page<CommitInfo>, RepoError> {
        check_ref(&query.reference)?;
        let path = query.path.as_deref().map(normalize_path).transpose()?;
        let git = self.git(org)?;
        let commit = resolve(&git, &query.reference).await?;
        // A page past anything git can count, or a window ending before the first moment git can
        // record, is empty, whatever the history holds.
        let Some((skip, limit)) = page_window(query.limit, query.page) else { return Ok(Page::empty()) };
        if query.until.is_some_and(|t| t < 0) {
            return Ok(Page::empty());
        }
        let skip = format!("--skip={skip}");
        let count = format!("--max-count={}", limit + 1);
        let mut args: Vec<String> = vec!["log".into(), LOG_FORMAT.into(), skip, count, "--no-renames".into()];
        let with_files = query.changed_files || query.stats;
        if with_files {
            args.extend(["--raw".into(), "--no-abbrev".into()]);
        }
        if query.stats {
            args.push("--numstat".into());
        }
        // `@<seconds> +0000` is git's raw date form; without the zone, git reads numbers of fewer
        // than nine digits (before 1973) as something else. Git's clock starts at the epoch, so an
        // earlier `since` means "from the beginning".
        if let Some(since) = query.since {
            args.push(format!("--since=@{} +0000", since.max(0)));
        }
        if let Some(until) = query.until {
            args.push(format!("--until=@{until} +0000"));
        }
        args.extend(["--end-of-options".into(), commit]);
        if let Some(p) = path.filter(|p| !p.is_empty()) {
            args.extend(["--".into(), p]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let text = git.run(&refs).await?;
        let mut items: Vec<CommitInfo> = text
            .split('\u{1e}')
            .filter(|r| !r.is_empty())
            .filter_map(|r| parse_commit(r, with_files, query.stats))
            .collect();
        let has_more = items.len() > limit;
        items.truncate(limit);
        Ok(Page { items, has_more })
    }

    /// One branch; [`RepoError::RefNotFound`] when it does not exist.
    pub async fn branch(&self, org: &str, name: &str) -> Result<BranchInfo, RepoError> {
        check_ref(name)?;
        let git = self.git(org)?;
        let all = branches(&git, Some(name)).await?;
        all.into_iter().find(|b| b.name == name).ok_or(RepoError::RefNotFound)
    }

    /// A page of branches sorted by name (1-based page number).
    pub async fn branches(&self, org: &str, limit: usize, page: usize) -> Result<Page<BranchInfo>, RepoError> {
        let git = self.git(org)?;
        let all = branches(&git, None).await?;
        let Some((start, limit)) = page_window(limit, page) else { return Ok(Page::empty()) };
        let items: Vec<BranchInfo> = all.iter().skip(start).take(limit).cloned().collect();
        Ok(Page { has_more: all.len() > start.saturating_add(items.len()), items })
    }
}

impl<T> Page<T> {
    fn empty() -> Self {
        Page { items: Vec::new(), has_more: false }
    }
}

/// The most items git counts in `--skip` and `--max-count` (it reads them as a C `int`).
const GIT_MAX_COUNT: usize = i32::MAX as usize;

/// The items to skip and the page size for 1-based page `page` of `limit` items (a `limit` of 0
/// counts as 1, page 0 as page 1); `None` when the page starts beyond what git can count, so
/// that no caller's number overflows or reaches git as a number it refuses.
pub fn page_window(limit: usize, page: usize) -> Option<(usize, usize)> {
    let limit = limit.clamp(1, GIT_MAX_COUNT - 1);
    let skip = limit.checked_mul(page.saturating_sub(1))?;
    (skip <= GIT_MAX_COUNT).then_some((skip, limit))
}

async fn resolve(git: &Git, reference: &str) -> Result<String, RepoError> {
    let mut candidates = vec![format!("refs/heads/{reference}^{{commit}}")];
    if looks_like_sha(reference) {
        candidates.push(format!("{reference}^{{commit}}"));
    }
    for candidate in candidates {
        let out = git.output(&["rev-parse", "--verify", "--quiet", "--end-of-options", &candidate]).await?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned());
        }
    }
    Err(RepoError::RefNotFound)
}

async fn tree_entry(git: &Git, commit: &str, path: &str) -> Result<Option<TreeEntry>, RepoError> {
    let out = git.run_bytes(&["ls-tree", "-l", "-z", "--end-of-options", commit, "--", path]).await?;
    Ok(parse_ls_tree(&out).into_iter().find(|e| e.path == path))
}

async fn read_file(git: &Git, commit: &str, raw_path: &str, max_bytes: u64) -> Result<FileContent, RepoError> {
    let path = normalize_path(raw_path)?;
    if path.is_empty() {
        return Err(RepoError::IsADirectory);
    }
    let entry = tree_entry(git, commit, &path).await?.ok_or(RepoError::PathNotFound)?;
    match entry.kind {
        EntryKind::Directory => return Err(RepoError::IsADirectory),
        EntryKind::Submodule => return Err(RepoError::PathNotFound),
        EntryKind::File | EntryKind::Symlink => {}
    }
    if entry.size.unwrap_or(0) > max_bytes {
        return Err(RepoError::TooLarge { limit: max_bytes });
    }
    let bytes = git.run_bytes(&["cat-file", "blob", &entry.oid]).await?;
    Ok(FileContent { path, bytes })
}

fn parse_ls_tree(out: &[u8]) -> Vec<TreeEntry> {
    out.split(|b| *b == 0)
        .filter(|r| !r.is_empty())
        .filter_map(|record| {
            let record = String::from_utf8_lossy(record);
            let (meta, path) = record.split_once('\t')?;
            let mut fields = meta.split_whitespace();
            let (mode, _kind, oid, size) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
            Some(TreeEntry {
                kind: EntryKind::from_mode(mode),
                oid: oid.to_owned(),
                size: size.parse().ok(),
                path: path.to_owned(),
            })
        })
        .collect()
}

fn parse_commit(record: &str, with_files: bool, stats: bool) -> Option<CommitInfo> {
    let mut fields = record.splitn(7, '\u{1f}');
    let sha = fields.next()?.to_owned();
    let parents = fields.next()?.split_whitespace().map(str::to_owned).collect();
    let timestamp = git_time(fields.next()?)?;
    let author_name = fields.next()?.to_owned();
    let author_email = fields.next()?.to_owned();
    let message = fields.next()?.trim_end().to_owned();
    let rest = fields.next().unwrap_or_default();
    let changed_files = with_files.then(|| parse_changes(rest, stats));
    Some(CommitInfo { sha, message, timestamp, author_name, author_email, parents, changed_files })
}

/// A commit time as git prints it (unsigned seconds); one beyond `i64` (a pushed commit may carry
/// any number) saturates rather than hiding the commit.
fn git_time(text: &str) -> Option<i64> {
    text.parse::<u64>().ok().map(|t| i64::try_from(t).unwrap_or(i64::MAX))
}

fn parse_changes(text: &str, stats: bool) -> Vec<ChangedFile> {
    let mut files: Vec<ChangedFile> = Vec::new();
    for line in text.lines() {
        if let Some(raw) = line.strip_prefix(':') {
            let Some((meta, path)) = raw.split_once('\t') else { continue };
            let change = match meta.split_whitespace().nth(4) {
                Some("A") => "added",
                Some("D") => "deleted",
                Some("T") => "type_changed",
                _ => "modified",
            };
            files.push(ChangedFile { path: path.to_owned(), change, additions: None, deletions: None });
        } else if stats {
            let mut parts = line.splitn(3, '\t');
            let (Some(add), Some(del), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
            if let Some(file) = files.iter_mut().find(|f| f.path == path) {
                // Binary files show "-": no line counts.
                file.additions = add.parse().ok();
                file.deletions = del.parse().ok();
            }
        }
    }
    files
}

/// Walks the history of `dir` once, newest first, and assigns each child name the first commit
/// that touched it; stops as soon as every name has one.
async fn last_commits(
    git: &Git,
    commit: &str,
    dir: &str,
    names: Vec<String>,
) -> Result<HashMap<String, CommitInfo>, RepoError> {
    let mut wanted: std::collections::HashSet<String> = names.into_iter().collect();
    let mut found = HashMap::new();
    let mut cmd = git.command();
    cmd.args(["log", LOG_FORMAT, "--name-only", "--no-renames", "--end-of-options", commit]);
    if !dir.is_empty() {
        cmd.args(["--", dir]);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| RepoError::Git("no stdout".into()))?;
    let mut reader = BufReader::new(stdout);
    let mut record = Vec::new();
    let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
    let finish =
        |record: &[u8], found: &mut HashMap<String, CommitInfo>, wanted: &mut std::collections::HashSet<String>| {
            let text = String::from_utf8_lossy(record);
            let Some(info) = parse_commit(&text, false, false) else { return };
            let files = text.rsplit('\u{1f}').next().unwrap_or_default();
            for file in files.lines().filter(|l| !l.is_empty()) {
                let Some(rest) = file.strip_prefix(prefix.as_str()) else { continue };
                let child_name = rest.split('/').next().unwrap_or(rest);
                if wanted.remove(child_name) {
                    found.insert(child_name.to_owned(), info.clone());
                }
            }
        };
    loop {
        let mut chunk = Vec::new();
        let n = reader.read_until(0x1e, &mut chunk).await?;
        if n == 0 {
            break;
        }
        if chunk.last() == Some(&0x1e) {
            chunk.pop();
            record.extend_from_slice(&chunk);
            if !record.is_empty() {
                finish(&record, &mut found, &mut wanted);
            }
            record.clear();
            if wanted.is_empty() {
                break;
            }
        } else {
            record.extend_from_slice(&chunk);
        }
    }
    if !record.is_empty() && !wanted.is_empty() {
        finish(&record, &mut found, &mut wanted);
    }
    // Done early: the rest of the history is not needed.
    let _ = child.start_kill();
    let _ = child.wait().await;
    Ok(found)
}

async fn branches(git: &Git, only: Option<&str>) -> Result<Vec<BranchInfo>, RepoError> {
    let pattern = match only {
        Some(name) => format!("refs/heads/{name}"),
        None => "refs/heads/".to_owned(),
    };
    let text = git
        .run(&[
            "for-each-ref",
            "--sort=refname",
            "--format=%(refname:strip=2)%1f%(objectname)%1f%(committerdate:unix)%1f%(contents)%1e",
            "--end-of-options",
            &pattern,
        ])
        .await?;
    Ok(text
        .split('\u{1e}')
        .filter_map(|record| {
            let record = record.trim_start_matches('\n');
            let mut fields = record.splitn(4, '\u{1f}');
            Some(BranchInfo {
                name: fields.next()?.to_owned(),
                sha: fields.next()?.to_owned(),
                timestamp: git_time(fields.next()?)?,
                message: fields.next()?.trim_end().to_owned(),
            })
        })
        .collect())
}
