//! The server's keys: the key that signs tokens and the keyring that seals secrets.
//!
//! Both live outside the database: in environment variables (hex; for deployments that keep keys
//! in a secret manager, and for several processes sharing one PostgreSQL) or, by default, in
//! files under `<data-dir>/keys/` created with mode 0600 on first start. A stolen database alone
//! therefore reveals no secret and forges no token.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rand::RngCore;
use toolsmith_store::secrets::{Keyring, SecretKey};

/// Environment variable holding the secret keyring: hex keys separated by commas, newest first.
pub const SECRET_KEYS_ENV: &str = "TOOLSMITH_SECRET_KEYS";
/// Environment variable holding the token signing key in hex.
pub const TOKEN_KEY_ENV: &str = "TOOLSMITH_TOKEN_KEY";

fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
}

/// The secret keyring from the environment, or from `<data-dir>/keys/secret-keys` (one hex key
/// per line, newest first), created with a fresh key when absent.
pub fn load_keyring(data_dir: &Path) -> anyhow::Result<Keyring> {
    let text = match std::env::var(SECRET_KEYS_ENV) {
        Ok(value) => value.replace(',', "\n"),
        Err(_) => {
            let path = keys_dir(data_dir).join("secret-keys");
            read_or_create(&path, || format!("{}\n", SecretKey::generate().to_hex()))?
        }
    };
    let mut keys = Vec::new();
    for (i, line) in text.lines().map(str::trim).filter(|l| !l.is_empty()).enumerate() {
        match SecretKey::from_hex(line) {
            Some(key) => keys.push(key),
            None => bail!("secret key #{} is not 64 hex characters ({SECRET_KEYS_ENV} or keys/secret-keys)", i + 1),
        }
    }
    Keyring::new(keys).context("the secret keyring is empty")
}

/// Puts a new key at the front of the keyring file (it seals from now on; older keys still open).
pub fn prepend_secret_key(data_dir: &Path) -> anyhow::Result<SecretKey> {
    if std::env::var(SECRET_KEYS_ENV).is_ok() {
        bail!("{SECRET_KEYS_ENV} is set: rotate by putting a new key first in that variable");
    }
    let path = keys_dir(data_dir).join("secret-keys");
    let old = read_or_create(&path, String::new)?;
    let key = SecretKey::generate();
    write_private(&path, &format!("{}\n{old}", key.to_hex()))?;
    Ok(key)
}

/// The token signing key from the environment, or from `<data-dir>/keys/token.key`, created
/// when absent.
pub fn load_token_key(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let text = match std::env::var(TOKEN_KEY_ENV) {
        Ok(value) => value,
        Err(_) => read_or_create(&keys_dir(data_dir).join("token.key"), || {
            let mut key = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut key);
            format!("{}\n", hex::encode(key))
        })?,
    };
    let key = hex::decode(text.trim()).context("the token key is not hex")?;
    if key.len() < 32 {
        bail!("the token key must be at least 32 bytes (64 hex characters)");
    }
    Ok(key)
}

fn read_or_create(path: &Path, make: impl FnOnce() -> String) -> anyhow::Result<String> {
    if path.exists() {
        let mode = fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "key file is readable by other users; chmod 600 it");
        }
        return fs::read_to_string(path).with_context(|| format!("reading {}", path.display()));
    }
    let text = make();
    match create_private(path, &text) {
        Ok(()) => Ok(text),
        // Another process created it first: use theirs so both agree.
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(fs::read_to_string(path)?),
        Err(err) => Err(err).with_context(|| format!("creating {}", path.display())),
    }
}

/// Creates `path` holding `text` (mode 0600), failing with `AlreadyExists` when it exists. The
/// file appears complete or not at all: several servers starting at once on one data directory
/// must never read a key file another one has created but not written yet. It is written under a
/// name of this process's own and then hard-linked into place, which, unlike a rename, fails
/// instead of replacing a file another process put there first.
fn create_private(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let staging = dir.join(format!(".{name}.{}.{:016x}", std::process::id(), rand::random::<u64>()));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&staging)
        .and_then(|mut file| file.write_all(text.as_bytes()).and_then(|()| file.sync_all()));
    let placed = written.and_then(|()| match fs::hard_link(&staging, path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists && !path.exists() => {
            // A file system without hard links: a rename is the next best (a simultaneous
            // first start of two servers could then each keep its own key for a moment).
            fs::rename(&staging, path)
        }
        other => other,
    });
    let _ = fs::remove_file(&staging);
    placed?;
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("new");
    let _ = fs::remove_file(&tmp);
    create_private(&tmp, text)?;
    fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let ring = load_keyring(dir.path()).unwrap();
        let again = load_keyring(dir.path()).unwrap();
        assert_eq!(ring.current().id(), again.current().id());
        let mode = fs::metadata(dir.path().join("keys/secret-keys")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let token = load_token_key(dir.path()).unwrap();
        assert_eq!(token, load_token_key(dir.path()).unwrap());
        assert_eq!(token.len(), 32);
    }

    #[test]
    fn servers_starting_at_once_agree_on_the_keys() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let starts: Vec<_> = (0..8)
                .map(|_| {
                    let (dir, barrier) = (dir.path().to_path_buf(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        (load_keyring(&dir).unwrap().current().id().to_owned(), load_token_key(&dir).unwrap())
                    })
                })
                .collect();
            let keys: std::collections::BTreeSet<_> = starts.into_iter().map(|t| t.join().unwrap()).collect();
            assert_eq!(keys.len(), 1, "every server read the same complete keys");
            let leftovers = fs::read_dir(dir.path().join("keys")).unwrap().count();
            assert_eq!(leftovers, 2, "only the two key files remain");
        }
    }

    #[test]
    fn rotation_puts_the_new_key_first_and_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let old = load_keyring(dir.path()).unwrap();
        let (org, tool) = (toolsmith_domain::OrgId::parse("o").unwrap(), toolsmith_domain::ToolId::generate());
        let sealed = old.seal(&org, &tool, "N", b"v").unwrap();
        let new = prepend_secret_key(dir.path()).unwrap();
        let ring = load_keyring(dir.path()).unwrap();
        assert_eq!(ring.current().id(), new.id());
        assert_eq!(ring.open(&org, &tool, "N", &sealed).unwrap(), b"v");
    }
}
