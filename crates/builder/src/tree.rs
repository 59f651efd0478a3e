//! Ownership, modes and removal of directory trees that sandboxed code wrote.
//!
//! A build's sandboxes write into host directories (an environment being installed, a project
//! copy being locked, a throwaway cache), and what they leave there is hostile: symbolic links
//! to server files, directories nested deeper than any path or stack allows, files without read
//! permission. Every walk here goes through directory descriptors (`openat` relative to the
//! parent, never a whole path), never follows a symbolic link, and keeps one descriptor open
//! however deep the tree is (it climbs back through `..`), with its stack on the heap.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Gid, Mode, OFlags, Stat, Uid, CWD};
use toolsmith_runtime::sandbox::running_as_root;
use toolsmith_runtime::Identity;

/// One thing a walk meets.
enum Visit<'a> {
    /// A directory about to be entered (`name` in `parent`).
    Enter { parent: BorrowedFd<'a>, name: &'a CString },
    /// A directory just opened (the root of the walk included): its own descriptor.
    Opened { dir: BorrowedFd<'a> },
    /// Anything else: a file, a symbolic link, a device, a socket.
    Leaf { parent: BorrowedFd<'a>, name: &'a CString, stat: &'a Stat },
    /// A directory whose contents have all been visited (`name` in `parent`).
    Leave { parent: BorrowedFd<'a>, name: &'a CString },
}

struct Frame {
    /// Entries of this directory not visited yet.
    pending: Vec<CString>,
    /// The directory's own name in its parent; `None` for the root of the walk.
    name: Option<CString>,
}

fn open_dir(parent: impl AsFd, name: &CString) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        parent,
        name.as_c_str(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn entries(dir: &OwnedFd) -> io::Result<Vec<CString>> {
    let mut names = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// Walks everything below `root` (not `root` itself), depth first.
fn walk(root: &Path, mut visit: impl FnMut(Visit<'_>) -> io::Result<()>) -> io::Result<()> {
    let mut current =
        rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
    visit(Visit::Opened { dir: current.as_fd() })?;
    let mut stack = vec![Frame { pending: entries(&current)?, name: None }];
    while let Some(frame) = stack.last_mut() {
        match frame.pending.pop() {
            Some(name) => {
                let stat = match rustix::fs::statat(&current, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(stat) => stat,
                    Err(rustix::io::Errno::NOENT) => continue,
                    Err(e) => return Err(e.into()),
                };
                if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
                    visit(Visit::Enter { parent: current.as_fd(), name: &name })?;
                    let child = open_dir(&current, &name)?;
                    visit(Visit::Opened { dir: child.as_fd() })?;
                    let pending = entries(&child)?;
                    current = child;
                    stack.push(Frame { pending, name: Some(name) });
                } else {
                    visit(Visit::Leaf { parent: current.as_fd(), name: &name, stat: &stat })?;
                }
            }
            None => {
                let Some(Frame { name: Some(name), .. }) = stack.pop() else { return Ok(()) };
                current = open_dir(&current, &CString::from(c".."))?;
                visit(Visit::Leave { parent: current.as_fd(), name: &name })?;
            }
        }
    }
    Ok(())
}

fn ids(identity: Identity) -> (Uid, Gid) {
    (Uid::from_raw(identity.uid), Gid::from_raw(identity.gid))
}

/// Gives `root` and everything in it to `identity`, so that a sandbox running as it may write
/// there. Only a server running as root changes owners (otherwise sandboxes run as the server's
/// own uid, which already owns the tree): then it does nothing.
pub fn give(root: &Path, identity: Identity) -> io::Result<()> {
    if !running_as_root() {
        return Ok(());
    }
    let (uid, gid) = ids(identity);
    rustix::fs::chownat(CWD, root, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)?;
    walk(root, |visit| match visit {
        Visit::Enter { parent, name } | Visit::Leaf { parent, name, .. } => {
            Ok(rustix::fs::chownat(parent, name.as_c_str(), Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)?)
        }
        Visit::Opened { .. } | Visit::Leave { .. } => Ok(()),
    })
}

/// The mode a sealed entry gets: readable by everyone, writable by its owner only, executable
/// where its owner could execute it; no set-id or sticky bits.
fn sealed_mode(mode: u32, directory: bool) -> Mode {
    let executable = directory || mode & 0o100 != 0;
    Mode::from_raw_mode(if executable { 0o755 } else { 0o644 })
}

/// Makes `root` and everything in it the server's and read-only to everyone else: owned by root
/// (when the server is root), directories 0755, files 0644 or 0755. What a sandbox built is then
/// readable by any sandbox identity and writable by none. Modes and owners are changed through
/// descriptors opened without following links, so a link swapped in for a file is never
/// followed; links are re-owned, never followed; FIFOs and sockets (which nothing legitimate
/// leaves behind) are removed.
pub fn seal(root: &Path) -> io::Result<()> {
    let owner = running_as_root().then_some((Uid::ROOT, Gid::ROOT));
    let settle = |fd: BorrowedFd<'_>, directory: bool| -> io::Result<()> {
        if let Some((uid, gid)) = owner {
            rustix::fs::fchown(fd, Some(uid), Some(gid))?;
        }
        let mode = rustix::fs::fstat(fd)?.st_mode;
        Ok(rustix::fs::fchmod(fd, sealed_mode(mode, directory))?)
    };
    walk(root, |visit| match visit {
        Visit::Opened { dir } => settle(dir, true),
        Visit::Leaf { parent, name, stat } => match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => {
                let file = rustix::fs::openat(
                    parent,
                    name.as_c_str(),
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                if FileType::from_raw_mode(rustix::fs::fstat(&file)?.st_mode) != FileType::RegularFile {
                    return Err(io::Error::other("a file changed while being sealed"));
                }
                settle(file.as_fd(), false)
            }
            FileType::Symlink => {
                if let Some((uid, gid)) = owner {
                    rustix::fs::chownat(parent, name.as_c_str(), Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)?;
                }
                Ok(())
            }
            _ => Ok(rustix::fs::unlinkat(parent, name.as_c_str(), AtFlags::empty())?),
        },
        Visit::Enter { .. } | Visit::Leave { .. } => Ok(()),
    })
}

/// Removes `root` and everything in it, however deep, without following links. A directory the
/// server may not write to (possible only when it is not root) is opened up first.
pub fn remove(root: &Path) -> io::Result<()> {
    let root_owner = running_as_root();
    match rustix::fs::statat(CWD, root, AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) != FileType::Directory => {
            return std::fs::remove_file(root);
        }
        Ok(_) => {}
    }
    if !root_owner {
        rustix::fs::chmod(root, Mode::from_raw_mode(0o700))?;
    }
    walk(root, |visit| match visit {
        Visit::Enter { parent, name } => {
            if !root_owner {
                rustix::fs::chmodat(parent, name.as_c_str(), Mode::from_raw_mode(0o700), AtFlags::empty())?;
            }
            Ok(())
        }
        Visit::Leaf { parent, name, .. } => Ok(rustix::fs::unlinkat(parent, name.as_c_str(), AtFlags::empty())?),
        Visit::Leave { parent, name } => Ok(rustix::fs::unlinkat(parent, name.as_c_str(), AtFlags::REMOVEDIR)?),
        Visit::Opened { .. } => Ok(()),
    })?;
    std::fs::remove_dir(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn deep_trees_and_links_are_handled_without_following_anything() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "keep").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600)).unwrap();
        let root = dir.path().join("tree");
        std::fs::create_dir(&root).unwrap();
        // Deeper than PATH_MAX allows any one path to reach.
        let mut deep = root.clone();
        std::fs::create_dir(deep.join("d")).unwrap();
        deep.push("d");
        let depth = 3000;
        {
            let mut fd = rustix::fs::open(&deep, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
            for _ in 0..depth {
                rustix::fs::mkdirat(&fd, "d", Mode::from_raw_mode(0o700)).unwrap();
                fd = rustix::fs::openat(&fd, "d", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
            }
            rustix::fs::openat(&fd, "f", OFlags::WRONLY | OFlags::CREATE, Mode::from_raw_mode(0o600)).unwrap();
        }
        std::fs::write(root.join("tool.py"), "x").unwrap();
        std::fs::set_permissions(root.join("tool.py"), std::fs::Permissions::from_mode(0o4700)).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();

        seal(&root).unwrap();
        let tool = std::fs::metadata(root.join("tool.py")).unwrap();
        assert_eq!(tool.mode() & 0o7777, 0o755, "set-id bits go, the owner's execute bit spreads");
        assert_eq!(std::fs::metadata(&outside).unwrap().mode() & 0o777, 0o600, "the link's target is untouched");
        assert!(std::fs::symlink_metadata(root.join("link")).unwrap().file_type().is_symlink());
        if running_as_root() {
            let builder = Identity { uid: 1_999_999_001, gid: 1_999_999_001 };
            give(&root, builder).unwrap();
            assert_eq!(std::fs::metadata(root.join("tool.py")).unwrap().uid(), builder.uid);
            assert_eq!(std::fs::symlink_metadata(root.join("link")).unwrap().uid(), builder.uid);
            assert_eq!(std::fs::metadata(&outside).unwrap().uid(), 0, "the link's target keeps its owner");
            seal(&root).unwrap();
            assert_eq!(std::fs::metadata(root.join("d/d")).unwrap().uid(), 0);
        }

        remove(&root).unwrap();
        assert!(!root.exists());
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep", "removal does not follow links");
    }
}
