//! Exporting one directory of a repository at one commit into a plain directory, through
//! `git archive` (the object database, never a checkout), and the ancestry check publishing
//! makes; git runs with the same hermetic environment as every other git command here.
//!
//! The tree is the organization's, pushed with git's plumbing if it likes: it may hold entries
//! git itself would never check out (`..`, `.git`), duplicate names, paths no filesystem
//! takes, or a few kilobytes of objects that list as millions of files. Its listing is checked
//! before anything is written, and the archive is unpacked as a stream, entry by entry, into
//! directories this export made, under a cap on files and bytes.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncBufReadExt;

use crate::git::{std_command, Git, KillOnDrop};
use crate::names::check_ref;
use crate::{RepoError, RepoStore};

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The commit has no directory at that path.
    #[error("the commit has no directory {0}")]
    NotADirectory(String),
    /// The tree holds something the server does not export; the message says what and where.
    #[error("{0}")]
    Refused(String),
    /// git or the filesystem failed.
    #[error("export failed: {0}")]
    Failed(String),
}

/// How much of a tree is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeLimits {
    /// Files, directories and links together.
    pub max_entries: u64,
    /// The files' sizes together.
    pub max_bytes: u64,
    /// The longest path, relative to the exported directory.
    pub max_path_bytes: usize,
}

impl Default for TreeLimits {
    fn default() -> Self {
        TreeLimits { max_entries: 100_000, max_bytes: 1 << 30, max_path_bytes: 1024 }
    }
}

fn git_command(repo: &Path) -> std::process::Command {
    let mut cmd = std_command();
    cmd.arg("--git-dir").arg(repo);
    cmd
}

impl RepoStore {
    /// Writes the directory `subdir` of `commit` in the organization's repository into `dest`,
    /// as [`export_tree`] does.
    pub async fn export_tree(
        &self,
        org: &str,
        commit: &str,
        subdir: &str,
        dest: &Path,
        limits: TreeLimits,
    ) -> Result<(), ExportError> {
        let git = self.git(org).map_err(|e| ExportError::Failed(e.to_string()))?;
        export_tree(git.dir(), commit, subdir, dest, limits).await
    }

    /// Whether `ancestor` is an ancestor of `descendant` (or the same commit) in the
    /// organization's repository; both are commit ids or branch names.
    pub async fn is_ancestor(&self, org: &str, ancestor: &str, descendant: &str) -> Result<bool, RepoError> {
        check_ref(ancestor)?;
        check_ref(descendant)?;
        let git = self.git(org)?;
        let out = git.output(&["merge-base", "--is-ancestor", "--end-of-options", ancestor, descendant]).await?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(RepoError::Git(format!("git merge-base: {}", String::from_utf8_lossy(&out.stderr).trim()))),
        }
    }
}

/// Writes the tree `path` of `commit` in the bare repository `repo` into `dest` (which must
/// exist): directories 0755, files 0644 or 0755, symbolic links kept as links and never followed.
pub async fn export_tree(
    repo: &Path,
    commit: &str,
    path: &str,
    dest: &Path,
    limits: TreeLimits,
) -> Result<(), ExportError> {
    let treeish = format!("{commit}:{path}");
    let git = Git::new(repo.to_owned());
    let is_tree = matches!(git.run_bytes(&["cat-file", "-t", "--end-of-options", &treeish]).await, Ok(out) if out.trim_ascii() == b"tree");
    if !is_tree {
        return Err(ExportError::NotADirectory(path.to_owned()));
    }
    check_listing(repo, &treeish, limits).await?;
    let (repo, dest) = (repo.to_owned(), dest.to_owned());
    tokio::task::spawn_blocking(move || unpack_archive(&repo, &treeish, &dest, limits))
        .await
        .map_err(|e| ExportError::Failed(e.to_string()))?
}

/// Why a path of the tree is not exported, if it is not.
fn refusal(path: &[u8], limits: &TreeLimits) -> Option<String> {
    let shown = String::from_utf8_lossy(path);
    if path.len() > limits.max_path_bytes {
        return Some(format!("the project holds a path longer than {} bytes: {shown:.80}…", limits.max_path_bytes));
    }
    for part in path.split(|b| *b == b'/') {
        let name = String::from_utf8_lossy(part);
        if part.is_empty() || part == b"." || part == b".." {
            return Some(format!(
                "the project holds an entry named {name:?} ({shown:?}), which git itself never checks out"
            ));
        }
        if part.eq_ignore_ascii_case(b".git") {
            return Some(format!(
                "the project holds an entry named {name:?} ({shown:?}); a tool's tree may not carry git's own files"
            ));
        }
    }
    None
}

/// Lists the tree (streamed: a few objects can list as millions of paths) and refuses it when
/// an entry is not exportable or the tree is too large.
async fn check_listing(repo: &Path, treeish: &str, limits: TreeLimits) -> Result<(), ExportError> {
    let mut child = Git::new(repo.to_owned())
        .command()
        .args(["ls-tree", "-r", "-t", "-l", "-z", "--end-of-options", treeish])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ExportError::Failed(e.to_string()))?;
    let stdout = child.stdout.take().ok_or_else(|| ExportError::Failed("git ls-tree has no output".into()))?;
    let mut reader = tokio::io::BufReader::new(stdout);
    let (mut entries, mut bytes) = (0u64, 0u64);
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut record = Vec::new();
    loop {
        record.clear();
        let read = reader.read_until(0, &mut record).await.map_err(|e| ExportError::Failed(e.to_string()))?;
        if read == 0 {
            break;
        }
        if record.last() == Some(&0) {
            record.pop();
        }
        let tab = record.iter().position(|b| *b == b'\t').ok_or_else(|| {
            ExportError::Failed(format!("unexpected git ls-tree output: {}", String::from_utf8_lossy(&record)))
        })?;
        let (meta, path) = (String::from_utf8_lossy(&record[..tab]).into_owned(), &record[tab + 1..]);
        let fields: Vec<&str> = meta.split_whitespace().collect();
        let [mode, kind, _object, size] = fields[..] else {
            return Err(ExportError::Failed(format!("unexpected git ls-tree output: {meta}")));
        };
        entries += 1;
        if entries > limits.max_entries {
            return Err(ExportError::Refused(format!(
                "the project directory holds more than {} files and directories",
                limits.max_entries
            )));
        }
        if let Some(why) = refusal(path, &limits) {
            return Err(ExportError::Refused(why));
        }
        if !seen.insert(path.to_vec()) {
            return Err(ExportError::Refused(format!(
                "the project holds two entries named {:?}",
                String::from_utf8_lossy(path)
            )));
        }
        let known = matches!((mode, kind), ("040000", "tree") | ("120000", "blob") | ("160000", "commit"))
            || (kind == "blob" && mode.starts_with("100"));
        if !known {
            return Err(ExportError::Refused(format!(
                "the project holds {:?} with mode {mode}, which is neither a file, a directory nor a link",
                String::from_utf8_lossy(path)
            )));
        }
        if kind == "blob" {
            bytes = bytes.saturating_add(size.parse::<u64>().unwrap_or(u64::MAX));
            if bytes > limits.max_bytes {
                return Err(ExportError::Refused(format!(
                    "the project directory's files are larger than {} MiB together",
                    limits.max_bytes >> 20
                )));
            }
        }
    }
    let out = child.wait_with_output().await.map_err(|e| ExportError::Failed(e.to_string()))?;
    if !out.status.success() {
        return Err(ExportError::Failed(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    Ok(())
}

fn unpack_archive(repo: &Path, treeish: &str, dest: &Path, limits: TreeLimits) -> Result<(), ExportError> {
    let mut child = KillOnDrop(
        git_command(repo)
            .args(["archive", "--format=tar", "--end-of-options", treeish])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ExportError::Failed(e.to_string()))?,
    );
    let mut stdout = child.0.stdout.take().ok_or_else(|| ExportError::Failed("git archive has no output".into()))?;
    let unpacked = unpack(&mut stdout, dest, &limits);
    if unpacked.is_err() {
        let _ = child.0.kill();
    } else {
        // The archive ends before git's output does (tar pads to whole records): closing the
        // pipe early would kill git with SIGPIPE.
        let _ = std::io::copy(&mut stdout, &mut std::io::sink());
    }
    drop(stdout);
    let mut stderr = String::new();
    if let Some(mut pipe) = child.0.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let status = child.0.wait().map_err(|e| ExportError::Failed(e.to_string()))?;
    unpacked?;
    if !status.success() {
        return Err(ExportError::Failed(stderr.trim().to_owned()));
    }
    Ok(())
}

fn unpack(archive: impl Read, dest: &Path, limits: &TreeLimits) -> Result<(), ExportError> {
    let io = |e: std::io::Error| ExportError::Failed(e.to_string());
    let mut archive = tar::Archive::new(archive);
    // Only what this export made is a directory to write into: an entry below a link (or below
    // a file of the same name) is refused rather than written wherever the link points.
    let mut dirs: HashSet<PathBuf> = HashSet::from([PathBuf::new()]);
    let (mut entries, mut bytes) = (0u64, 0u64);
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let kind = entry.header().entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader | tar::EntryType::XHeader) {
            continue;
        }
        let path = entry.path().map_err(io)?.into_owned();
        let raw = path.as_os_str().as_encoded_bytes();
        let normal = path.components().all(|c| matches!(c, Component::Normal(_)));
        if let Some(why) = refusal(raw.strip_suffix(b"/").unwrap_or(raw), limits) {
            return Err(ExportError::Refused(why));
        }
        if !normal {
            return Err(ExportError::Refused(format!("the project holds an entry at {:?}", path.display())));
        }
        entries += 1;
        if entries > limits.max_entries {
            return Err(ExportError::Refused(format!(
                "the project directory holds more than {} files and directories",
                limits.max_entries
            )));
        }
        let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if !dirs.contains(&parent) {
            return Err(ExportError::Refused(format!("{:?} is not inside a directory of the project", path.display())));
        }
        let target = dest.join(&path);
        match kind {
            tar::EntryType::Directory => {
                std::fs::DirBuilder::new().mode(0o755).create(&target).map_err(io)?;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
                dirs.insert(path);
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.header().size().map_err(io)?;
                bytes = bytes.saturating_add(size);
                if bytes > limits.max_bytes {
                    return Err(ExportError::Refused(format!(
                        "the project directory's files are larger than {} MiB together",
                        limits.max_bytes >> 20
                    )));
                }
                let mode = if entry.header().mode().map_err(io)? & 0o100 != 0 { 0o755 } else { 0o644 };
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(&target)
                    .map_err(io)?;
                file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(io)?;
                std::io::copy(&mut (&mut entry).take(size), &mut file).map_err(io)?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(io)?
                    .ok_or_else(|| ExportError::Failed("a link without target".into()))?;
                std::os::unix::fs::symlink(link, &target).map_err(io)?;
            }
            _ => {
                return Err(ExportError::Refused(format!(
                    "{:?} is neither a file, a directory nor a symbolic link",
                    path.display()
                )))
            }
        }
    }
    Ok(())
}
