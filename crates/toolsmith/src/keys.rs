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

fn create_private(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
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
    fn rotation_puts_the_new_key_first_and_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let old = load_keyring(dir.path()).unwrap();
        let sealed = old.seal("o", "t", "N", b"v").unwrap();
        let new = prepend_secret_key(dir.path()).unwrap();
        let ring = load_keyring(dir.path()).unwrap();
        assert_eq!(ring.current().id(), new.id());
        assert_eq!(ring.open("o", "t", "N", &sealed).unwrap(), b"v");
    }
}
