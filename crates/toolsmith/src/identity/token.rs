//! Bearer tokens: HS256 JWTs signed with a server key.
//!
//! HS256 with a key shared by every server process keeps verification a local computation (no
//! database round trip), which matters on the invoke path. The token names the user and the
//! organization that issued it; what the user may do is looked up per request, so revoking a role
//! takes effect at once, while revoking an API key stops new sign-ins and lets issued tokens
//! expire.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use toolsmith_domain::time::Timestamp;

type HmacSha256 = Hmac<Sha256>;

const ISSUER: &str = "toolsmith";

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer; always `toolsmith`.
    pub iss: String,
    /// The user's id.
    pub sub: String,
    /// The organization the user belongs to (the token's issuing organization).
    pub org: String,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
}

/// Why a token was refused; all of them answer 401, the variants only help the logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts with JSON inside.
    #[error("malformed token")]
    Malformed,
    /// Signed with another key or algorithm, or altered.
    #[error("bad signature")]
    BadSignature,
    /// Past its expiry.
    #[error("expired")]
    Expired,
}

/// Issues and verifies tokens with one key.
#[derive(Clone)]
pub struct TokenSigner {
    key: Vec<u8>,
}

impl TokenSigner {
    /// A signer with a key of at least 32 bytes.
    pub fn new(key: Vec<u8>) -> Self {
        TokenSigner { key }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
    }

    /// Issues a token for `user_id` of `org_id`, valid for `ttl_secs`.
    pub fn issue(&self, org_id: &str, user_id: &str, ttl_secs: i64) -> (String, Timestamp) {
        let now = Timestamp::now();
        let expires = now.plus_secs(ttl_secs);
        let claims = Claims {
            iss: ISSUER.to_owned(),
            sub: user_id.to_owned(),
            org: org_id.to_owned(),
            iat: now.as_secs(),
            exp: expires.as_secs(),
        };
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        (format!("{signing_input}.{signature}"), Timestamp(expires.as_secs() * 1_000_000))
    }

    /// Verifies a token's signature, algorithm, issuer and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(header.as_bytes());
        mac.update(b".");
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature).map_err(|_| TokenError::BadSignature)?;
        // Only after the signature holds is the content trusted enough to parse.
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).map_err(|_| TokenError::Malformed)?)
                .map_err(|_| TokenError::Malformed)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(TokenError::BadSignature);
        }
        let claims: Claims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?)
                .map_err(|_| TokenError::Malformed)?;
        if claims.iss != ISSUER {
            return Err(TokenError::BadSignature);
        }
        if claims.exp <= Timestamp::now().as_secs() {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_carry_their_claims() {
        let signer = TokenSigner::new(vec![7; 32]);
        let (token, expires) = signer.issue("acme", "0123456789abcdef01234567", 3600);
        let claims = signer.verify(&token).unwrap();
        assert_eq!((claims.org.as_str(), claims.sub.as_str()), ("acme", "0123456789abcdef01234567"));
        assert_eq!(claims.exp * 1_000_000, expires.0);
    }

    #[test]
    fn foreign_altered_expired_and_garbage_tokens_fail() {
        let signer = TokenSigner::new(vec![7; 32]);
        let (token, _) = signer.issue("acme", "u", 3600);
        assert_eq!(TokenSigner::new(vec![8; 32]).verify(&token), Err(TokenError::BadSignature));
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged =
            URL_SAFE_NO_PAD.encode(br#"{"iss":"toolsmith","sub":"u","org":"other","iat":0,"exp":99999999999}"#);
        parts[1] = &forged;
        assert_eq!(signer.verify(&parts.join(".")), Err(TokenError::BadSignature));
        let (expired, _) = signer.issue("acme", "u", -10);
        assert_eq!(signer.verify(&expired), Err(TokenError::Expired));
        assert_eq!(signer.verify("a.b"), Err(TokenError::Malformed));
        assert_eq!(signer.verify(""), Err(TokenError::Malformed));
    }
}
