//! Exporting one directory of a repository at one commit into a plain directory, through
//! `git archive` (the object database, never a checkout).

use std::path::Path;
use std::process::Stdio;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The commit has no directory at that path.
    #[error("the commit has no directory {0}")]
    NotADirectory(String),
    /// git or the filesystem failed.
    #[error("export failed: {0}")]
    Failed(String),
}

/// Writes the tree `path` of `commit` in the bare repository `repo` into `dest` (which must
/// exist); symlinks are kept as links and never followed.
pub async fn export_tree(repo: &Path, commit: &str, path: &str, dest: &Path) -> Result<(), ExportError> {
    let treeish = format!("{commit}:{path}");
    let is_tree = matches!(git(repo, &["cat-file", "-t", "--end-of-options", &treeish]).await, Ok(out) if out.trim_ascii() == b"tree");
    if !is_tree {
        return Err(ExportError::NotADirectory(path.to_owned()));
    }
    let archive =
        git(repo, &["archive", "--format=tar", "--end-of-options", &treeish]).await.map_err(ExportError::Failed)?;
    let dest = dest.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut tar = tar::Archive::new(archive.as_slice());
        tar.set_preserve_permissions(false);
        tar.unpack(&dest).map_err(|e| ExportError::Failed(e.to_string()))
    })
    .await
    .map_err(|e| ExportError::Failed(e.to_string()))?
}

async fn git(repo: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let out = tokio::process::Command::new("git")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .arg("--git-dir")
        .arg(repo)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Whether `ancestor` is an ancestor of `descendant` (or the same commit) in `repo`.
pub async fn is_ancestor(repo: &Path, ancestor: &str, descendant: &str) -> Result<bool, String> {
    let out = tokio::process::Command::new("git")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .arg("--git-dir")
        .arg(repo)
        .args(["merge-base", "--is-ancestor", "--end-of-options", ancestor, descendant])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| e.to_string())?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
    }
}
