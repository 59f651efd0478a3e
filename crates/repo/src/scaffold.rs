//! The tool scaffold: a ready-to-edit tool project (`templates/scaffold/` in the source tree,
//! compiled into the binary), served as a tarball and committed into every new repository.

use std::io::Write;
use std::process::Stdio;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::git::Git;
use crate::{RepoError, SERVICE_EMAIL, SERVICE_NAME};

/// The scaffold's files: path relative to the project directory, and content.
pub const FILES: &[(&str, &[u8])] = &[
    ("README.md", include_bytes!("../../../templates/scaffold/README.md")),
    ("pyproject.toml", include_bytes!("../../../templates/scaffold/pyproject.toml")),
    ("hello_world/__init__.py", include_bytes!("../../../templates/scaffold/hello_world/__init__.py")),
    ("hello_world/tool.py", include_bytes!("../../../templates/scaffold/hello_world/tool.py")),
    ("tests/test_tool.py", include_bytes!("../../../templates/scaffold/tests/test_tool.py")),
];

/// The directory the scaffold is committed under in a new repository, and the top folder of the
/// tarball.
pub const PROJECT_DIR: &str = "hello_world";

/// A fixed date for the archive entries and the scaffold commit, so that both are byte-for-byte
/// the same on every server and every run.
const EPOCH: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z

/// The scaffold as a gzip'd tar with everything under `hello_world/`, deterministic to the byte.
pub fn tar_gz() -> &'static [u8] {
    static ARCHIVE: OnceLock<Vec<u8>> = OnceLock::new();
    ARCHIVE.get_or_init(build_archive)
}

/// Hex SHA-256 of [`tar_gz`]: what versions record as the scaffold they were created with.
pub fn hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hex::encode(Sha256::digest(tar_gz())))
}

fn build_archive() -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    let mut dirs: Vec<String> = vec![PROJECT_DIR.to_owned()];
    for (path, _) in FILES {
        let mut parent = String::from(PROJECT_DIR);
        for part in path.split('/').rev().skip(1).collect::<Vec<_>>().into_iter().rev() {
            parent = format!("{parent}/{part}");
            if !dirs.contains(&parent) {
                dirs.push(parent.clone());
            }
        }
    }
    dirs.sort();
    let entries = dirs
        .iter()
        .map(|d| (format!("{d}/"), None))
        .chain(FILES.iter().map(|(p, c)| (format!("{PROJECT_DIR}/{p}"), Some(*c))));
    let mut all: Vec<(String, Option<&[u8]>)> = entries.collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, content) in all {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(EPOCH);
        header.set_uid(0);
        header.set_gid(0);
        match content {
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                // Writing into a Vec cannot fail.
                let _ = tar.append_data(&mut header, &path, std::io::empty());
            }
            Some(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(bytes.len() as u64);
                let _ = tar.append_data(&mut header, &path, bytes);
            }
        }
    }
    match tar.into_inner().and_then(|gz| gz.finish()) {
        Ok(bytes) => bytes,
        Err(_) => unreachable!("writing into memory does not fail"),
    }
}

/// Writes the scaffold under `dir/` as one commit without parents in `git`'s object store and
/// returns the commit id. The ref update is the caller's.
pub(crate) async fn commit_into(git: &Git, dir: &str) -> Result<String, RepoError> {
    let work = tempfile::tempdir()?;
    for (path, content) in FILES {
        let target = work.path().join(dir).join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::File::create(&target)?.write_all(content)?;
    }
    let index = work.path().join(".index");
    let mut add = git.command();
    add.env("GIT_INDEX_FILE", &index).arg("--work-tree").arg(work.path()).args(["add", "--", dir]);
    let out = add.stdout(Stdio::null()).stderr(Stdio::piped()).output().await?;
    if !out.status.success() {
        return Err(RepoError::Git(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    let mut write_tree = git.command();
    write_tree.env("GIT_INDEX_FILE", &index).arg("write-tree");
    let tree = output_line(write_tree).await?;
    let date = format!("{EPOCH} +0000");
    let mut commit = git.command();
    commit
        .env("GIT_AUTHOR_NAME", SERVICE_NAME)
        .env("GIT_AUTHOR_EMAIL", SERVICE_EMAIL)
        .env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_NAME", SERVICE_NAME)
        .env("GIT_COMMITTER_EMAIL", SERVICE_EMAIL)
        .env("GIT_COMMITTER_DATE", &date)
        .args(["commit-tree", &tree, "-m", "Start from the tool scaffold"]);
    output_line(commit).await
}

async fn output_line(mut cmd: tokio::process::Command) -> Result<String, RepoError> {
    let out = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).output().await?;
    if !out.status.success() {
        return Err(RepoError::Git(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_file_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates/scaffold");
        let mut on_disk = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if !path.components().any(|c| c.as_os_str() == "__pycache__") {
                    on_disk.push(path.strip_prefix(&root).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }

    #[test]
    fn archive_is_deterministic_and_holds_the_project() {
        assert_eq!(build_archive(), build_archive());
        assert_eq!(hash().len(), 64);
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tar_gz()));
        let names: Vec<String> =
            archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
        assert!(names.contains(&"hello_world/pyproject.toml".to_owned()), "{names:?}");
        assert!(names.contains(&"hello_world/hello_world/tool.py".to_owned()), "{names:?}");
        assert!(names.contains(&"hello_world/tests/".to_owned()), "{names:?}");
    }
}
