//! `toolsmith admin backup DIR` and `toolsmith admin restore DIR`: a consistent copy of an
//! installation taken while it serves, and its return into an empty data directory.
//!
//! A backup is a directory:
//!
//! ```text
//! MANIFEST.json        written last: a backup without it is incomplete
//! toolsmith.db         the SQLite database (absent for PostgreSQL: see README, pg_dump)
//! keys/                secret-keys and token.key, mode 0600
//! repos/<org>.git      the bare repositories, refs, reflogs, hooks and configuration
//! artifacts/<digest>   the stored source trees versions run from
//! envs/<org>/<hash>    the complete environments versions run in
//! ```
//!
//! **Why it is consistent.** The database is copied first, in one read transaction (SQLite's
//! online backup API, in a single step), so it is one moment of the database however busy the
//! server is. Everything else only grows, and everything the database refers to was complete
//! before the row referring to it was committed: an artifact and an environment are renamed
//! into place before their version is inserted, commits are in the repository before anything
//! names them, and keys are only ever added (rotation prepends a key and keeps the old ones).
//! Copying those after the database therefore finds everything the copied rows need; what was
//! added meanwhile (a newer commit, an artifact of a version published a second later) is
//! harmless extra. Keys are copied after the database for the same reason: a rotation between
//! the two would otherwise leave secrets sealed with a key the backup lacks.
//!
//! **Repositories** are copied file by file, because git's own files are what the server serves
//! (hooks, configuration and reflogs included, and commits of published versions that a forced
//! push has made unreachable, which a clone would drop). git never changes an object file once
//! written and writes objects before any ref names them, so: the refs are read first, through
//! git, into the copy's `packed-refs`; then the reflogs; then loose objects, then packs, whose
//! list is read again until no new pack appears (a concurrent `gc` moves loose objects into a
//! new pack before deleting them, and writes a new pack before deleting old ones). Finally `git
//! fsck --connectivity-only` checks that every object the copied refs and reflogs reach is
//! there; if a concurrent `gc` won a race, the repository is copied again.
//!
//! Environments are copied, not rebuilt: a restore must not depend on the package index being
//! reachable, nor on it still serving the locked versions. uv's caches, the runtime's harness
//! and scratch directories are not copied; a server recreates them.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::config::StorageArgs;

/// The file that marks a complete backup; written last.
pub const MANIFEST: &str = "MANIFEST.json";
/// The layout version of backups this build writes and reads.
const FORMAT: u64 = 1;
/// How often a repository is copied again when a concurrent `git gc` raced the copy.
const REPO_ATTEMPTS: usize = 5;

/// What a backup or a restore copied.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Whether the SQLite database was copied (not for PostgreSQL).
    pub database: bool,
    /// Repositories copied.
    pub repositories: usize,
    /// Artifacts (stored source trees) copied.
    pub artifacts: usize,
    /// Environments copied.
    pub environments: usize,
    /// Key files copied.
    pub key_files: usize,
    /// Bytes of regular files copied.
    pub bytes: u64,
    /// How long it took.
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{} repositories, {} artifacts, {} environments, {} key files; {:.1} MiB in {:.2} s",
            if self.database { "the SQLite database, " } else { "" },
            self.repositories,
            self.artifacts,
            self.environments,
            self.key_files,
            self.bytes as f64 / (1u64 << 20) as f64,
            self.elapsed.as_secs_f64()
        )
    }
}

/// Writes a backup of the installation in `storage` into `dest`, which must not exist or be
/// empty. Works while servers run.
pub fn backup(storage: &StorageArgs, dest: &Path) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let data = &storage.data_dir;
    if !data.is_dir() {
        bail!("the data directory {} does not exist", data.display());
    }
    prepare_empty(dest, "backup directory")?;
    if dest.canonicalize()?.starts_with(data.canonicalize()?) {
        bail!("the backup directory {} is inside the data directory {}", dest.display(), data.display());
    }
    let mut summary = Summary::default();

    if storage.database_url.is_none() {
        let db = data.join("toolsmith.db");
        snapshot_sqlite(&db, &dest.join("toolsmith.db"))
            .with_context(|| format!("copying the database {}", db.display()))?;
        summary.database = true;
        summary.bytes += std::fs::metadata(dest.join("toolsmith.db"))?.len();
    }
    summary.key_files = copy_keys(&data.join("keys"), &dest.join("keys"), &mut summary.bytes)?;

    let repos = data.join("repos");
    if repos.is_dir() {
        private_dir(&dest.join("repos"))?;
        for (name, path) in visible_entries(&repos)? {
            if !name.ends_with(".git") || !path.join("HEAD").is_file() {
                continue;
            }
            summary.bytes += copy_repo(&path, &dest.join("repos").join(&name))
                .with_context(|| format!("copying the repository {}", path.display()))?;
            summary.repositories += 1;
        }
    }
    let (count, bytes) = copy_artifacts(&data.join("artifacts"), &dest.join("artifacts"))?;
    summary.artifacts = count;
    summary.bytes += bytes;
    let (count, bytes) = copy_environments(&data.join("envs"), &dest.join("envs"))?;
    summary.environments = count;
    summary.bytes += bytes;

    summary.elapsed = started.elapsed();
    let manifest = json!({
        "format": FORMAT,
        "toolsmith_version": env!("CARGO_PKG_VERSION"),
        "created_at": toolsmith_domain::time::Timestamp::now().to_rfc3339(),
        "database": if summary.database { "sqlite" } else { "postgresql" },
        "keys_from_environment": keys_from_environment(),
        "repositories": summary.repositories,
        "artifacts": summary.artifacts,
        "environments": summary.environments,
        "key_files": summary.key_files,
    });
    write_synced(&dest.join(MANIFEST), serde_json::to_string_pretty(&manifest)?.as_bytes(), 0o600)?;
    sync_dir(dest)?;
    Ok(summary)
}

/// Restores the backup in `src` into the data directory of `storage`, which must not exist or be
/// empty. For a backup of a PostgreSQL installation the database must have been restored
/// (`pg_restore`) into `--database-url` beforehand.
pub fn restore(storage: &StorageArgs, src: &Path) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(src.join(MANIFEST))
            .with_context(|| format!("{} has no {MANIFEST}: it is no complete toolsmith backup", src.display()))?,
    )
    .with_context(|| format!("reading {}", src.join(MANIFEST).display()))?;
    if manifest["format"].as_u64() != Some(FORMAT) {
        bail!("the backup's format {} is not one this toolsmith reads ({FORMAT})", manifest["format"]);
    }
    let sqlite = manifest["database"] == "sqlite";
    match (sqlite, &storage.database_url) {
        (true, Some(_)) => {
            bail!("this backup holds a SQLite database; restore it without --database-url / TOOLSMITH_DATABASE_URL")
        }
        (false, None) => bail!(
            "this backup is of a PostgreSQL installation: restore the database with pg_restore first, \
             then run this again with --database-url"
        ),
        _ => {}
    }
    let has_keys = src.join("keys/secret-keys").is_file() && src.join("keys/token.key").is_file();
    if !has_keys && !keys_from_environment() {
        bail!(
            "the backup holds no keys (they were given in the environment when it was taken): set {} and {} \
             to the installation's keys and run this again",
            crate::keys::SECRET_KEYS_ENV,
            crate::keys::TOKEN_KEY_ENV
        );
    }
    let data = &storage.data_dir;
    prepare_empty(data, "data directory")?;
    let mut summary = Summary::default();
    if sqlite {
        let bytes = copy_file(&src.join("toolsmith.db"), &data.join("toolsmith.db"), Some(0o600))?;
        summary.database = true;
        summary.bytes += bytes;
    }
    summary.key_files = copy_keys(&src.join("keys"), &data.join("keys"), &mut summary.bytes)?;
    let repos = src.join("repos");
    if repos.is_dir() {
        std::fs::create_dir(data.join("repos"))?;
        for (name, path) in visible_entries(&repos)? {
            summary.bytes += copy_tree(&path, &data.join("repos").join(&name))?;
            summary.repositories += 1;
        }
    }
    let (count, bytes) = copy_artifacts(&src.join("artifacts"), &data.join("artifacts"))?;
    summary.artifacts = count;
    summary.bytes += bytes;
    let (count, bytes) = copy_environments(&src.join("envs"), &data.join("envs"))?;
    summary.environments = count;
    summary.bytes += bytes;
    sync_dir(data)?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Whether the keys come from environment variables rather than the data directory's files (a
/// backup then cannot hold them: they live wherever the deployment keeps them).
pub fn keys_from_environment() -> bool {
    std::env::var_os(crate::keys::SECRET_KEYS_ENV).is_some() || std::env::var_os(crate::keys::TOKEN_KEY_ENV).is_some()
}

/// Creates `dir` (mode 0700) or accepts it when it exists and is empty.
fn prepare_empty(dir: &Path, what: &str) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!("the {what} {} is not empty; give an empty or new directory", dir.display());
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating the {what} {}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("reading the {what} {}", dir.display())),
    }
}

fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// The entries of `dir` whose names do not start with a dot (those are staging directories of
/// work in progress), sorted by name.
fn visible_entries(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            found.push((name, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Copies the live SQLite database at `from` into the new file `to` through SQLite's online
/// backup API, in one step: one read transaction, so the copy is the database as of one moment
/// while writers go on (in WAL mode readers do not block them).
fn snapshot_sqlite(from: &Path, to: &Path) -> anyhow::Result<()> {
    use rusqlite::{Connection, OpenFlags};
    if !from.is_file() {
        bail!("{} does not exist", from.display());
    }
    let source =
        Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    source.busy_timeout(toolsmith_store::Store::BUSY_TIMEOUT)?;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(to)?;
    let mut target = Connection::open(to)?;
    {
        use rusqlite::backup::{Backup, StepResult};
        let copy = Backup::new(&source, &mut target)?;
        let deadline = Instant::now() + toolsmith_store::Store::BUSY_TIMEOUT;
        // -1: every page in one step, hence in one read transaction.
        loop {
            match copy.step(-1)? {
                StepResult::Done => break,
                StepResult::More => continue,
                StepResult::Busy | StepResult::Locked if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                StepResult::Busy | StepResult::Locked => bail!("the database stayed locked"),
                // The enum may grow; anything else is no snapshot.
                _ => bail!("the database could not be copied"),
            }
        }
    }
    target.close().map_err(|(_, e)| e)?;
    drop(source);
    std::fs::File::open(to)?.sync_all()?;
    Ok(())
}

fn copy_keys(from: &Path, to: &Path, bytes: &mut u64) -> anyhow::Result<usize> {
    let mut copied = 0;
    for name in ["secret-keys", "token.key"] {
        let source = from.join(name);
        if source.is_file() {
            private_dir(to)?;
            *bytes += copy_file(&source, &to.join(name), Some(0o600))?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// Copies every artifact directory; staging directories (a build storing one right now) are
/// skipped, since a finished artifact is renamed into place whole.
fn copy_artifacts(from: &Path, to: &Path) -> anyhow::Result<(usize, u64)> {
    if !from.is_dir() {
        return Ok((0, 0));
    }
    create_like(from, to)?;
    let (mut count, mut bytes) = (0, 0);
    for (name, path) in visible_entries(from)? {
        if path.symlink_metadata()?.is_dir() {
            bytes += copy_tree(&path, &to.join(&name))?;
            count += 1;
        }
    }
    Ok((count, bytes))
}

/// Copies every complete environment (`<org>/<hash>`, or a bare `<hash>` from before
/// environments were kept per organization); one without its `.complete` marker is a build in
/// progress, or one that died, and no version refers to it.
fn copy_environments(from: &Path, to: &Path) -> anyhow::Result<(usize, u64)> {
    if !from.is_dir() {
        return Ok((0, 0));
    }
    create_like(from, to)?;
    let (mut count, mut bytes) = (0, 0);
    for (name, path) in visible_entries(from)? {
        if !path.symlink_metadata()?.is_dir() {
            continue;
        }
        if path.join(".complete").is_file() {
            bytes += copy_tree(&path, &to.join(&name))?;
            count += 1;
            continue;
        }
        let org_to = to.join(&name);
        create_like(&path, &org_to)?;
        for (env, env_path) in visible_entries(&path)? {
            if env_path.symlink_metadata()?.is_dir() && env_path.join(".complete").is_file() {
                bytes += copy_tree(&env_path, &org_to.join(&env))?;
                count += 1;
            }
        }
    }
    Ok((count, bytes))
}

/// Creates directory `to` with the mode (and, run by root, the owner) of `from`.
fn create_like(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = from.symlink_metadata()?;
    match std::fs::create_dir(to) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        other => other?,
    }
    settle(to, &meta)
}

/// Gives `to` the mode of `meta`, and its owner when the process may (run by root).
fn settle(to: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
    if toolsmith_runtime::sandbox::running_as_root() {
        std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    }
    if !meta.file_type().is_symlink() {
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    Ok(())
}

/// Copies a file (contents synced), giving it `mode` or the source's; returns its size.
fn copy_file(from: &Path, to: &Path, mode: Option<u32>) -> anyhow::Result<u64> {
    let meta = from.symlink_metadata().with_context(|| format!("reading {}", from.display()))?;
    let mut source = std::fs::File::open(from).with_context(|| format!("reading {}", from.display()))?;
    let mut target = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .with_context(|| format!("creating {}", to.display()))?;
    let bytes = std::io::copy(&mut source, &mut target)?;
    target.sync_all()?;
    settle(to, &meta)?;
    if let Some(mode) = mode {
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(bytes)
}

/// Copies the tree at `from` to the new `to` as it is: directories, regular files and symbolic
/// links (never followed) with their modes (and owners, run by root); anything else (sockets,
/// FIFOs) is left out. Returns the bytes of files copied.
pub fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<u64> {
    let meta = from.symlink_metadata().with_context(|| format!("reading {}", from.display()))?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)?;
        settle(to, &meta)?;
        return Ok(0);
    }
    if kind.is_file() {
        return copy_file(from, to, None);
    }
    if !kind.is_dir() {
        return Ok(0);
    }
    std::fs::DirBuilder::new().create(to).with_context(|| format!("creating {}", to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700))?;
    let mut bytes = 0;
    let mut entries: Vec<_> = std::fs::read_dir(from)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        bytes += copy_tree(&entry.path(), &to.join(entry.file_name()))?;
    }
    // The mode last: a read-only directory must be filled first.
    settle(to, &meta)?;
    Ok(bytes)
}

fn git_output(dir: &Path, args: &[&str]) -> anyhow::Result<std::process::Output> {
    toolsmith_repo::offline::git(dir).args(args).output().with_context(|| format!("running git {}", args.join(" ")))
}

/// Copies the bare repository `from` to the new `to` consistently (see the module's
/// documentation); returns the bytes copied.
fn copy_repo(from: &Path, to: &Path) -> anyhow::Result<u64> {
    let mut last_problem = String::new();
    for attempt in 1..=REPO_ATTEMPTS {
        if to.exists() {
            std::fs::remove_dir_all(to)?;
        }
        let bytes = copy_repo_once(from, to)?;
        let checked = git_output(to, &["fsck", "--connectivity-only", "--no-progress", "--no-dangling"])?;
        if checked.status.success() {
            return Ok(bytes);
        }
        last_problem = String::from_utf8_lossy(&checked.stderr).trim().to_owned();
        tracing::warn!(repo = %from.display(), attempt, problem = %last_problem, "the repository changed while being copied; copying it again");
    }
    bail!("the repository kept changing while being copied ({REPO_ATTEMPTS} attempts): {last_problem}")
}

fn copy_repo_once(from: &Path, to: &Path) -> anyhow::Result<u64> {
    // 1. Where every ref points, as git reads them at one moment.
    let refs = git_output(from, &["for-each-ref", "--format=%(objectname) %(refname)"])?;
    if !refs.status.success() {
        bail!("git for-each-ref: {}", String::from_utf8_lossy(&refs.stderr).trim());
    }
    create_like(from, to)?;
    let mut bytes = 0;
    let mut packed = b"# pack-refs with: sorted\n".to_vec();
    let mut lines: Vec<&[u8]> = refs.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    lines.sort_by(|a, b| a.split(|c| *c == b' ').nth(1).cmp(&b.split(|c| *c == b' ').nth(1)));
    for line in lines {
        packed.extend_from_slice(line);
        packed.push(b'\n');
    }
    write_synced(&to.join("packed-refs"), &packed, 0o644)?;
    std::fs::create_dir_all(to.join("refs/heads"))?;
    std::fs::create_dir_all(to.join("refs/tags"))?;
    bytes += copy_file(&from.join("HEAD"), &to.join("HEAD"), None)?;
    // 2. Reflogs, read after the refs: every entry they hold names objects written before it.
    if from.join("logs").is_dir() {
        bytes += copy_tree_skipping_locks(&from.join("logs"), &to.join("logs"))?;
    }
    // 3. Objects: loose ones, then packs.
    let objects = from.join("objects");
    let objects_to = to.join("objects");
    create_like(&objects, &objects_to)?;
    for (name, path) in visible_entries(&objects)? {
        let loose = name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit());
        if loose {
            create_like(&path, &objects_to.join(&name))?;
            for (file, file_path) in visible_entries(&path)? {
                bytes += copy_if_present(&file_path, &objects_to.join(&name).join(&file))?;
            }
        } else if name == "info" {
            bytes += copy_tree_skipping_locks(&path, &objects_to.join("info"))?;
        }
        // `pack` follows; `incoming-*` and `tmp_*` are pushes not accepted yet.
    }
    bytes += copy_packs(&objects.join("pack"), &objects_to.join("pack"))?;
    // 4. What the server set up: configuration, hooks, description.
    for name in ["config", "description"] {
        if from.join(name).is_file() {
            bytes += copy_file(&from.join(name), &to.join(name), None)?;
        }
    }
    for name in ["hooks", "info"] {
        if from.join(name).is_dir() {
            bytes += copy_tree_skipping_locks(&from.join(name), &to.join(name))?;
        }
    }
    Ok(bytes)
}

/// Copies the packs of `from` until a listing finds no pack not copied yet. A pack is its
/// `.pack` with its `.idx` (and whatever else shares its name); one deleted half-way through is
/// dropped from the copy, since a concurrent repack deletes a pack only after writing the one
/// that replaces it.
fn copy_packs(from: &Path, to: &Path) -> anyhow::Result<u64> {
    if !from.is_dir() {
        return Ok(0);
    }
    create_like(from, to)?;
    let mut copied = std::collections::BTreeSet::new();
    let mut bytes = 0;
    loop {
        let mut fresh = Vec::new();
        for (name, _) in visible_entries(from)? {
            if let Some(base) = name.strip_suffix(".pack") {
                if !copied.contains(base) {
                    fresh.push(base.to_owned());
                }
            }
        }
        if fresh.is_empty() {
            return Ok(bytes);
        }
        for base in fresh {
            copied.insert(base.clone());
            // The index last but one and the pack last: git finds a pack by its index.
            let mut parts = Vec::new();
            for (name, path) in visible_entries(from)? {
                if name.starts_with(&format!("{base}.")) && !name.ends_with(".idx") && !name.ends_with(".pack") {
                    parts.push((name, path));
                }
            }
            parts.push((format!("{base}.idx"), from.join(format!("{base}.idx"))));
            parts.push((format!("{base}.pack"), from.join(format!("{base}.pack"))));
            let mut complete = true;
            let mut pack_bytes = 0;
            for (name, path) in &parts {
                match copy_if_present(path, &to.join(name))? {
                    0 if !path.exists() && (name.ends_with(".idx") || name.ends_with(".pack")) => complete = false,
                    n => pack_bytes += n,
                }
            }
            if complete {
                bytes += pack_bytes;
            } else {
                for (name, _) in &parts {
                    let _ = std::fs::remove_file(to.join(name));
                }
            }
        }
    }
}

/// Copies a file that git may remove meanwhile (a loose object packed by a concurrent `gc`);
/// one that is gone is skipped.
fn copy_if_present(from: &Path, to: &Path) -> anyhow::Result<u64> {
    match copy_file(from, to, None) {
        Ok(bytes) => Ok(bytes),
        Err(err)
            if err
                .downcast_ref::<std::io::Error>()
                .or_else(|| err.chain().find_map(|c| c.downcast_ref::<std::io::Error>()))
                .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) =>
        {
            let _ = std::fs::remove_file(to);
            Ok(0)
        }
        Err(err) => Err(err),
    }
}

/// Copies a directory of git's, leaving out lock files (an update in progress) and files that
/// disappear while being copied.
fn copy_tree_skipping_locks(from: &Path, to: &Path) -> anyhow::Result<u64> {
    create_like(from, to)?;
    let mut bytes = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".lock") {
            continue;
        }
        let kind = match entry.file_type() {
            Ok(kind) => kind,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        if kind.is_dir() {
            bytes += copy_tree_skipping_locks(&entry.path(), &to.join(&name))?;
        } else if kind.is_file() {
            bytes += copy_if_present(&entry.path(), &to.join(&name))?;
        } else {
            bytes += copy_tree(&entry.path(), &to.join(&name))?;
        }
    }
    Ok(bytes)
}

fn write_synced(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}
