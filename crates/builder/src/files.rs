//! Reading a tool's files on the host, as data.
//!
//! A project tree comes from a repository its organization controls. Every file the server
//! itself reads from it (`pyproject.toml`, `uv.lock`) is opened without following symbolic
//! links, must be a regular file and is read up to a cap. A committed `pyproject.toml` that
//! links to a server file is refused with the same answer whether the target exists or not,
//! and one that links to `/dev/zero` is refused before a byte is read.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

/// The largest `pyproject.toml` the server reads.
pub const PYPROJECT_MAX_BYTES: u64 = 1 << 20;
/// The largest `uv.lock` the server reads.
pub const LOCK_MAX_BYTES: u64 = 16 << 20;

/// Why a project file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// There is no such entry.
    #[error("{0} does not exist")]
    Missing(String),
    /// The entry is not something the server reads: the message names the file and why.
    #[error("{0}")]
    Refused(String),
    /// The filesystem failed.
    #[error("reading {0} failed: {1}")]
    Io(String, std::io::Error),
}

fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes & ((1 << 20) - 1) == 0 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// Reads `name` (one path component) in `dir`: a regular file of at most `cap` bytes.
pub fn read_project_file(dir: &Path, name: &str, cap: u64) -> Result<Vec<u8>, ReadError> {
    let path = dir.join(name);
    let not_regular = || ReadError::Refused(format!("{name} is not a regular file; the server reads it only as one"));
    let linked = || {
        ReadError::Refused(format!(
            "{name} is a symbolic link; the server reads it only as a regular file committed in the project directory"
        ))
    };
    let fd: OwnedFd = match rustix::fs::open(
        &path,
        // Non-blocking, so that opening a FIFO does not wait for a writer.
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Err(ReadError::Missing(name.to_owned())),
        Err(rustix::io::Errno::LOOP) => return Err(linked()),
        Err(e) => {
            // O_NOFOLLOW answers ELOOP for a link, but look again rather than trust every
            // filesystem to: the answer must not depend on the link's target.
            return Err(match std::fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => linked(),
                Ok(m) if !m.is_file() => not_regular(),
                _ => ReadError::Io(name.to_owned(), e.into()),
            });
        }
    };
    let mut file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(|e| ReadError::Io(name.to_owned(), e))?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    let too_big = |size: u64| {
        ReadError::Refused(format!(
            "{name} is {} long, more than the {} the server reads",
            size_text(size),
            size_text(cap)
        ))
    };
    if meta.len() > cap {
        return Err(too_big(meta.len()));
    }
    let mut content = Vec::with_capacity(meta.len() as usize);
    (&mut file).take(cap + 1).read_to_end(&mut content).map_err(|e| ReadError::Io(name.to_owned(), e))?;
    if content.len() as u64 > cap {
        return Err(too_big(content.len() as u64));
    }
    Ok(content)
}

/// [`read_project_file`] on the blocking pool, for the build's async steps.
pub(crate) async fn read_project_file_async(dir: &Path, name: &str, cap: u64) -> Result<Vec<u8>, ReadError> {
    let (dir, file) = (dir.to_owned(), name.to_owned());
    crate::blocking::unblock(move || Ok(read_project_file(&dir, &file, cap)))
        .await
        .unwrap_or_else(|e| Err(ReadError::Io(name.to_owned(), e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_special_files_are_refused_alike() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "key").unwrap();
        let project = dir.path().join("p");
        std::fs::create_dir(&project).unwrap();
        std::os::unix::fs::symlink(&secret, project.join("present")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("absent"), project.join("absent")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", project.join("zero")).unwrap();
        let present = read_project_file(&project, "present", 100).unwrap_err().to_string();
        let absent = read_project_file(&project, "absent", 100).unwrap_err().to_string();
        assert_eq!(present.replace("present", "X"), absent.replace("absent", "X"), "no existence oracle");
        assert!(present.contains("symbolic link"), "{present}");
        assert!(read_project_file(&project, "zero", 100).unwrap_err().to_string().contains("symbolic link"));

        std::fs::create_dir(project.join("dir")).unwrap();
        assert!(read_project_file(&project, "dir", 100).unwrap_err().to_string().contains("not a regular file"));
        rustix::fs::mknodat(
            rustix::fs::CWD,
            project.join("fifo"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        assert!(read_project_file(&project, "fifo", 100).unwrap_err().to_string().contains("not a regular file"));

        std::fs::write(project.join("big"), vec![b'x'; 101]).unwrap();
        let big = read_project_file(&project, "big", 100).unwrap_err().to_string();
        assert!(big.contains("big is 101 bytes long") && big.contains("100 bytes"), "{big}");
        std::fs::write(project.join("ok"), "fine").unwrap();
        assert_eq!(read_project_file(&project, "ok", 100).unwrap(), b"fine");
        assert!(matches!(read_project_file(&project, "nothing", 100), Err(ReadError::Missing(_))));
    }
}
