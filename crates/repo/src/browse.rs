//! Reading a repository for the browsing endpoints: files, directories, history and branches.
//!
//! Everything is read from git's object database at a resolved commit, never from a checkout, so
//! a symlink in the tree is data (its target path), not something to follow. Reads run in
//! process ([`crate::objects`], [`crate::history`]) on a blocking thread; only the changed files
//! and line counts of a commit page come from one `git diff-tree` run, so that they are git's
//! own diff.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use crate::git::Git;
use crate::history::{entry_at, last_commits, log, LogQuery};
use crate::names::{check_ref, looks_like_sha, normalize_path};
use crate::objects::{lock, Commit, Listed, Listing, Mode, Oid, Repo};
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
    fn from_mode(mode: Mode) -> EntryKind {
        match mode {
            Mode::Directory => EntryKind::Directory,
            Mode::Symlink => EntryKind::Symlink,
            Mode::Submodule => EntryKind::Submodule,
            Mode::File | Mode::Executable => EntryKind::File,
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

impl RepoStore {
    /// Resolves a branch name or a full or abbreviated commit id to a commit id.
    pub async fn resolve(&self, org: &str, reference: &str) -> Result<String, RepoError> {
        check_ref(reference)?;
        let repo = self.reader(org)?;
        let reference = reference.to_owned();
        blocking(move || Ok(resolve(&repo, &reference)?.0.to_string())).await
    }

    /// The bytes of the file at `path` in `reference`.
    pub async fn read_file(&self, org: &str, reference: &str, path: &str) -> Result<FileContent, RepoError> {
        check_ref(reference)?;
        let repo = self.reader(org)?;
        let (reference, path, max) = (reference.to_owned(), path.to_owned(), self.limits.max_file_bytes);
        blocking(move || {
            let (_, commit) = resolve(&repo, &reference)?;
            read_file(&repo, &commit, &path, max)
        })
        .await
    }

    /// Several files of one commit, in the order asked; fails if any path is not a file.
    pub async fn read_files(
        &self,
        org: &str,
        reference: &str,
        paths: &[String],
    ) -> Result<Vec<FileContent>, RepoError> {
        check_ref(reference)?;
        let repo = self.reader(org)?;
        let (reference, paths, max) = (reference.to_owned(), paths.to_vec(), self.limits.max_file_bytes);
        blocking(move || {
            let (_, commit) = resolve(&repo, &reference)?;
            paths.iter().map(|path| read_file(&repo, &commit, path, max)).collect()
        })
        .await
    }

    /// The entries of the directory at `path` in `reference`, directories first, then by name;
    /// with `last_commit`, each entry carries the newest commit that changed it, as
    /// `git log -1 -- <path>/<name>` names it.
    pub async fn list_directory(
        &self,
        org: &str,
        reference: &str,
        path: &str,
        last_commit: bool,
    ) -> Result<Vec<DirEntry>, RepoError> {
        check_ref(reference)?;
        let path = normalize_path(path)?;
        let repo = self.reader(org)?;
        let reference = reference.to_owned();
        blocking(move || list_directory(&repo, &reference, &path, last_commit)).await
    }

    /// A page of the history of `query.reference`, newest first, as `git log` orders and, with a
    /// path, simplifies it.
    pub async fn commits(&self, org: &str, query: &CommitQuery) -> Result<Page<CommitInfo>, RepoError> {
        check_ref(&query.reference)?;
        let path = query.path.as_deref().map(normalize_path).transpose()?.filter(|p| !p.is_empty());
        let repo = self.reader(org)?;
        let reference = query.reference.clone();
        let start = blocking({
            let repo = repo.clone();
            move || resolve(&repo, &reference)
        })
        .await?;
        // A page past anything git can count, or a window ending before the first moment git can
        // record, is empty, whatever the history holds.
        let Some((skip, limit)) = page_window(query.limit, query.page) else { return Ok(Page::empty()) };
        let Ok(until) = query.until.map(u64::try_from).transpose() else { return Ok(Page::empty()) };
        // Git's clock starts at the epoch, so an earlier `since` means "from the beginning".
        let since = query.since.map(|s| u64::try_from(s.max(0)).unwrap_or(0));
        let walked = blocking({
            let (repo, path) = (repo.clone(), path.clone());
            move || {
                let query = LogQuery { path: path.as_deref(), since, until, skip, count: limit.saturating_add(1) };
                log(&repo, start, &query)
            }
        })
        .await?;
        let has_more = walked.len() > limit;
        let walked = &walked[..walked.len().min(limit)];
        let mut changes = if query.changed_files || query.stats {
            let shas: Vec<&str> = walked.iter().map(|(oid, _)| &**oid).collect();
            Some(changed_files(&Git::new(self.path_of(org)?), &shas, path.as_deref(), query.stats).await?)
        } else {
            None
        };
        let items = walked
            .iter()
            .map(|(oid, c)| {
                let files = changes.as_mut().map(|all| all.remove(&**oid).unwrap_or_default());
                commit_info(oid, c, files)
            })
            .collect();
        Ok(Page { items, has_more })
    }

    /// One branch; [`RepoError::RefNotFound`] when it does not exist.
    pub async fn branch(&self, org: &str, name: &str) -> Result<BranchInfo, RepoError> {
        check_ref(name)?;
        let repo = self.reader(org)?;
        let full = format!("refs/heads/{name}").into_bytes();
        blocking(move || {
            let oid = repo.read_ref(&full)?.ok_or(RepoError::RefNotFound)?;
            branch_info(&repo, &full, &oid)?.ok_or(RepoError::RefNotFound)
        })
        .await
    }

    /// A page of branches sorted by name (1-based page number).
    pub async fn branches(&self, org: &str, limit: usize, page: usize) -> Result<Page<BranchInfo>, RepoError> {
        let repo = self.reader(org)?;
        let Some((start, limit)) = page_window(limit, page) else { return Ok(Page::empty()) };
        blocking(move || {
            let mut all = Vec::new();
            for r in repo.list_refs("refs/heads/")? {
                if let Some(info) = branch_info(&repo, &r.name, &r.oid)? {
                    all.push(info);
                }
            }
            let items: Vec<BranchInfo> = all.iter().skip(start).take(limit).cloned().collect();
            Ok(Page { has_more: all.len() > start.saturating_add(items.len()), items })
        })
        .await
    }
}

/// Runs a read on a blocking thread: the object reader waits on pipes and locks.
async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, RepoError> + Send + 'static,
) -> Result<T, RepoError> {
    tokio::task::spawn_blocking(read).await.map_err(|e| RepoError::Git(format!("a read failed: {e}")))?
}

impl<T> Page<T> {
    fn empty() -> Self {
        Page { items: Vec::new(), has_more: false }
    }
}

/// The most items a page window counts: git reads `--skip` and `--max-count` as a C `int`, and
/// pages keep the bounds they had when git counted them.
const GIT_MAX_COUNT: usize = i32::MAX as usize;

/// The items to skip and the page size for 1-based page `page` of `limit` items (a `limit` of 0
/// counts as 1, page 0 as page 1); `None` when the page starts beyond what git can count, so
/// that no caller's number overflows.
pub fn page_window(limit: usize, page: usize) -> Option<(usize, usize)> {
    let limit = limit.clamp(1, GIT_MAX_COUNT - 1);
    let skip = limit.checked_mul(page.saturating_sub(1))?;
    (skip <= GIT_MAX_COUNT).then_some((skip, limit))
}

/// The commit a branch name or a (possibly abbreviated) commit id names: the branch first, then,
/// for something that looks like an id, whatever git makes of `<ref>^{commit}`.
fn resolve(repo: &Repo, reference: &str) -> Result<(Oid, Arc<Commit>), RepoError> {
    if let Some(target) = repo.read_ref(format!("refs/heads/{reference}").as_bytes())? {
        if let Some(found) = repo.commit_of_target(&target)? {
            return Ok(found);
        }
    }
    if looks_like_sha(reference) {
        if let Some(found) = repo.peel_to_commit(reference)? {
            return Ok(found);
        }
    }
    Err(RepoError::RefNotFound)
}

fn read_file(repo: &Repo, commit: &Commit, raw_path: &str, max_bytes: u64) -> Result<FileContent, RepoError> {
    let path = normalize_path(raw_path)?;
    if path.is_empty() {
        return Err(RepoError::IsADirectory);
    }
    let (mode, oid) = entry_at(repo, &commit.tree, &path)?.ok_or(RepoError::PathNotFound)?;
    match EntryKind::from_mode(mode) {
        EntryKind::Directory => return Err(RepoError::IsADirectory),
        EntryKind::Submodule => return Err(RepoError::PathNotFound),
        EntryKind::File | EntryKind::Symlink => {}
    }
    let bytes = repo.blob(&oid, max_bytes)?;
    Ok(FileContent { path, bytes: bytes.to_vec() })
}

fn list_directory(repo: &Repo, reference: &str, path: &str, last_commit: bool) -> Result<Vec<DirEntry>, RepoError> {
    let (commit_id, commit) = resolve(repo, reference)?;
    let tree = match entry_at(repo, &commit.tree, path)? {
        None => return Err(RepoError::PathNotFound),
        Some((Mode::Directory, oid)) => oid,
        Some(_) => return Err(RepoError::IsAFile),
    };
    let listing = listing(repo, &tree)?;
    let found = if last_commit && !listing.is_empty() { Some(last_commits(repo, &commit_id, path)?) } else { None };
    let mut infos: HashMap<Oid, CommitInfo> = HashMap::new();
    let mut entries = Vec::with_capacity(listing.len());
    for listed in listing.iter() {
        let e = &listed.entry;
        let last_commit = match found.as_ref().and_then(|f| f.get(&e.raw_name).cloned().flatten()) {
            Some(oid) => match infos.get(&oid) {
                Some(info) => Some(info.clone()),
                None => {
                    let c = repo.commit(&oid)?.ok_or_else(|| RepoError::Git(format!("commit {oid} cannot be read")))?;
                    let info = commit_info(&oid, &c, None);
                    infos.insert(oid, info.clone());
                    Some(info)
                }
            },
            None => None,
        };
        entries.push(DirEntry {
            path: if path.is_empty() { e.name.to_string() } else { format!("{path}/{}", e.name) },
            name: e.name.to_string(),
            kind: EntryKind::from_mode(e.mode),
            size: listed.size,
            last_commit,
        });
    }
    Ok(entries)
}

/// A tree's entries as the directory endpoint lists them, cached by tree id.
fn listing(repo: &Repo, tree_id: &Oid) -> Result<Listing, RepoError> {
    let cached = lock(&repo.objects.listings).get(tree_id);
    if let Some(found) = cached {
        return Ok(found);
    }
    let tree = repo.tree(tree_id)?;
    let blobs: Vec<&Oid> = tree
        .entries
        .iter()
        .filter(|e| matches!(e.mode, Mode::File | Mode::Executable | Mode::Symlink))
        .map(|e| &e.oid)
        .collect();
    let mut sizes = repo.blob_sizes(&blobs)?.into_iter();
    let mut listing: Vec<Listed> = tree
        .entries
        .iter()
        .map(|e| {
            let size = match e.mode {
                Mode::File | Mode::Executable | Mode::Symlink => sizes.next().flatten(),
                Mode::Directory | Mode::Submodule => None,
            };
            Listed { entry: e.clone(), size }
        })
        .collect();
    fn key(l: &Listed) -> (bool, &str) {
        (l.entry.mode != Mode::Directory, &l.entry.name)
    }
    listing.sort_by(|a, b| key(a).cmp(&key(b)));
    let listing = Arc::new(listing);
    lock(&repo.objects.listings).insert(tree_id.clone(), listing.clone(), 64 + listing.len() * 128);
    Ok(listing)
}

fn commit_info(oid: &Oid, c: &Commit, changed_files: Option<Vec<ChangedFile>>) -> CommitInfo {
    CommitInfo {
        sha: oid.to_string(),
        message: c.message.clone(),
        timestamp: c.timestamp(),
        author_name: c.author_name.clone(),
        author_email: c.author_email.clone(),
        parents: c.parents.iter().map(|p| p.to_string()).collect(),
        changed_files,
    }
}

/// A branch as listed: only branches that point at a commit are shown, as
/// `git for-each-ref` shows a committer date only for those.
fn branch_info(repo: &Repo, full_name: &[u8], target: &Oid) -> Result<Option<BranchInfo>, RepoError> {
    let Some(c) = repo.commit(target)? else { return Ok(None) };
    let name = full_name.strip_prefix(b"refs/heads/").unwrap_or(full_name);
    Ok(Some(BranchInfo {
        name: String::from_utf8_lossy(name).into_owned(),
        sha: target.to_string(),
        message: c.message.clone(),
        timestamp: c.timestamp(),
    }))
}

/// The files each of `commits` changed (against its parent; a merge lists none, a root commit
/// all of its files), with line counts when `stats`, and only below `path` when given: one
/// `git diff-tree --stdin` for the whole page.
async fn changed_files(
    git: &Git,
    commits: &[&str],
    path: Option<&str>,
    stats: bool,
) -> Result<HashMap<String, Vec<ChangedFile>>, RepoError> {
    if commits.is_empty() {
        return Ok(HashMap::new());
    }
    let mut cmd = git.command();
    cmd.args(["--literal-pathspecs", "diff-tree", "--stdin", "-r", "--root", "--raw", "-z", "--no-renames"]);
    if stats {
        cmd.arg("--numstat");
    }
    if let Some(p) = path {
        cmd.args(["--", p]);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let input: String = commits.iter().map(|c| format!("{c}\n")).collect();
    let mut stdin = child.stdin.take().ok_or_else(|| RepoError::Git("git diff-tree has no input".into()))?;
    // A page is at most a few kilobytes of ids: it fits in the pipe before git answers.
    stdin.write_all(input.as_bytes()).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        return Err(RepoError::Git(format!("git diff-tree: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(parse_changes(&out.stdout, stats))
}

/// Parses `git diff-tree -z --raw [--numstat]` output: a commit id, its raw records (meta, then
/// the path), then its line counts (`added<TAB>deleted<TAB>path`, `-` for binary files).
fn parse_changes(out: &[u8], stats: bool) -> HashMap<String, Vec<ChangedFile>> {
    let mut all: HashMap<String, Vec<ChangedFile>> = HashMap::new();
    let mut tokens = out.split(|b| *b == 0);
    let mut current: Option<String> = None;
    while let Some(token) = tokens.next() {
        if token.is_empty() {
            continue;
        }
        if let Some(meta) = token.strip_prefix(b":") {
            let Some(path) = tokens.next() else { break };
            let change = match meta.split(|b| *b == b' ').nth(4) {
                Some(b"A") => "added",
                Some(b"D") => "deleted",
                Some(b"T") => "type_changed",
                _ => "modified",
            };
            if let Some(files) = current.as_ref().and_then(|c| all.get_mut(c)) {
                let path = String::from_utf8_lossy(path).into_owned();
                files.push(ChangedFile { path, change, additions: None, deletions: None });
            }
        } else if token.contains(&b'\t') {
            if !stats {
                continue;
            }
            let mut parts = token.splitn(3, |b| *b == b'\t');
            let (Some(add), Some(del), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
            let path = String::from_utf8_lossy(path);
            if let Some(file) =
                current.as_ref().and_then(|c| all.get_mut(c)).and_then(|f| f.iter_mut().find(|f| f.path == path))
            {
                // Binary files show "-": no line counts.
                file.additions = std::str::from_utf8(add).ok().and_then(|a| a.parse().ok());
                file.deletions = std::str::from_utf8(del).ok().and_then(|d| d.parse().ok());
            }
        } else {
            let id = String::from_utf8_lossy(token).into_owned();
            all.entry(id.clone()).or_default();
            current = Some(id);
        }
    }
    all
}
