//! API keys: an id and a high-entropy secret with a recognizable prefix. Only the secret's
//! SHA-256 is stored: the secret is high-entropy, so a fast hash is enough, and a leaked database
//! does not leak usable keys.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use toolsmith_domain::{ApiKeyId, UserId};

/// The prefix of every API key secret, so that secret scanners and people recognize one.
pub const SECRET_PREFIX: &str = "tsk_";

/// A freshly generated key: its id, its secret (shown once) and the secret's hash (stored).
pub struct NewApiKey {
    /// The key id, sent as `x-api-key-id`.
    pub id: toolsmith_domain::ApiKeyId,
    /// The secret, sent as `x-api-key`; never stored.
    pub secret: String,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
}

/// Generates a key with 256 bits of entropy.
pub fn generate() -> NewApiKey {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    NewApiKey { id: toolsmith_domain::ApiKeyId::generate(), secret_sha256: hash(&secret), secret }
}

/// The stored form of a secret.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` matches `stored_sha256`, compared in constant time.
pub fn matches(secret: &str, stored_sha256: &str) -> bool {
    let candidate = hash(secret);
    candidate.len() == stored_sha256.len()
        && candidate.bytes().zip(stored_sha256.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The user, when `secret` is the secret of the organization's live (not revoked, not expired)
/// key `key_id` and `user_id` is a user of that organization: what signing in with an API key,
/// and presenting one on an endpoint that takes keys directly, both require. Ids as presented;
/// ones this server cannot have issued are refused like wrong ones.
pub async fn verify(
    store: &toolsmith_store::Store,
    org_id: &toolsmith_domain::OrgId,
    key_id: &str,
    secret: &str,
    user_id: &str,
) -> Result<Option<toolsmith_store::UserRef>, toolsmith_store::StoreError> {
    let (Ok(key_id), Ok(user_id)) = (key_id.parse::<ApiKeyId>(), user_id.parse::<UserId>()) else { return Ok(None) };
    let Some(record) = store.get_api_key(org_id, &key_id).await? else { return Ok(None) };
    let now = toolsmith_domain::time::Timestamp::now();
    let live = record.revoked_at.is_none() && record.expires_at.is_none_or(|at| at > now);
    if !live || !matches(secret, &record.secret_sha256) || store.get_user(org_id, &user_id).await?.is_none() {
        return Ok(None);
    }
    Ok(Some(toolsmith_store::UserRef { org_id: org_id.clone(), user_id }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_match_only_their_own_secret() {
        let key = generate();
        assert!(key.secret.starts_with(SECRET_PREFIX));
        assert!(matches(&key.secret, &key.secret_sha256));
        assert!(!matches("tsk_wrong", &key.secret_sha256));
        assert_ne!(generate().secret, key.secret);
    }
}
