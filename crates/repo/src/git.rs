//! Running git: hermetic (no system or user configuration, a fixed locale) and asynchronous.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use tokio::process::Command;

use crate::RepoError;

/// A bare repository to run git commands in.
#[derive(Debug, Clone)]
pub(crate) struct Git {
    dir: PathBuf,
}

/// A git command with toolsmith's environment: nothing from the machine's or the user's git
/// configuration applies, so behaviour does not depend on where the server runs.
pub(crate) fn command() -> Command {
    let mut cmd = Command::from(std_command());
    cmd.kill_on_drop(true);
    cmd
}

/// The same environment for a process driven from blocking code (the long-lived object readers
/// and the archive export); its owner kills it when dropped, as [`command`] does.
pub(crate) fn std_command() -> std::process::Command {
    let mut cmd = std::process::Command::new("git");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()))
        .env("LANG", "C")
        .env("LC_ALL", "C")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("HOME", "/nonexistent")
        .stdin(Stdio::null());
    cmd
}

/// A child process that is killed and reaped when dropped, for blocking code.
pub(crate) struct KillOnDrop(pub(crate) std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Git {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Git { dir }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// A command already pointed at this repository.
    pub(crate) fn command(&self) -> Command {
        let mut cmd = command();
        cmd.arg("--git-dir").arg(&self.dir).arg("-c").arg("core.quotePath=false");
        cmd
    }

    /// Runs git and returns its raw output whatever the exit status.
    pub(crate) async fn output(&self, args: &[&str]) -> Result<Output, RepoError> {
        Ok(self.command().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).output().await?)
    }

    /// Runs git and returns stdout; a non-zero exit is an error carrying stderr.
    pub(crate) async fn run_bytes(&self, args: &[&str]) -> Result<Vec<u8>, RepoError> {
        let out = self.output(args).await?;
        if !out.status.success() {
            return Err(RepoError::Git(format!(
                "git {}: {}",
                args.first().unwrap_or(&""),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(out.stdout)
    }

    /// Runs git and returns stdout as text.
    pub(crate) async fn run(&self, args: &[&str]) -> Result<String, RepoError> {
        let bytes = self.run_bytes(args).await?;
        String::from_utf8(bytes).map_err(|_| RepoError::Git("git printed something that is not UTF-8".into()))
    }

    /// Runs a git command that is not tied to an existing repository (`init`).
    pub(crate) async fn run_global(args: &[&str], dir: Option<&Path>) -> Result<(), RepoError> {
        let mut cmd = command();
        cmd.args(args);
        if let Some(dir) = dir {
            cmd.arg(dir);
        }
        let out = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).output().await?;
        if !out.status.success() {
            return Err(RepoError::Git(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
        }
        Ok(())
    }
}
