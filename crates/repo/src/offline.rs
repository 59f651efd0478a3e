//! git for work that runs outside the async runtime, on a blocking thread (backups): the same
//! hermetic environment as every other git this crate runs.

use std::path::Path;
use std::process::{Command, Stdio};

/// A blocking git command pointed at the bare repository `git_dir`, without the machine's or the
/// user's configuration and with a fixed locale.
pub fn git(git_dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()))
        .env("LANG", "C")
        .env("LC_ALL", "C")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("HOME", "/nonexistent")
        .arg("--git-dir")
        .arg(git_dir)
        .stdin(Stdio::null());
    cmd
}
