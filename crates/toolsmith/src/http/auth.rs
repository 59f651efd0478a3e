//! The request guard: authentication, organization visibility, rate limiting and the
//! operation's permission, in that order, before a handler runs.
//!
//! Credentials are a token (`Authorization: Bearer`, or Basic with the token as password); the
//! operations that say so also take an organization's API key in its three headers.
//!
//! The order is deliberate. Credentials come first so nothing about an organization leaks to an
//! anonymous caller. An organization the caller has no place in answers exactly like one that
//! does not exist. Rate limiting precedes the permission check so that probing permissions is
//! throttled too. Body validation happens in the handler, after all of these.

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use toolsmith_domain::{OrgId, PermissionSet, UserId};
use toolsmith_store::UserRef;

use super::error::ApiError;
use super::operations::{rate_limit_message, Challenge, Operation};
use crate::app::AppState;
use crate::service::Caller;

/// A token as presented: from `Authorization: Bearer …`, or from Basic auth whose user name
/// must then match the token (`{org_id}_{user_id}`, what git sends).
struct Presented {
    token: String,
    basic_user: Option<String>,
}

fn presented(headers: &HeaderMap) -> Option<Presented> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(Presented { token: rest.to_owned(), basic_user: None });
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = String::from_utf8(STANDARD.decode(rest).ok()?).ok()?;
        let (user, password) = decoded.split_once(':')?;
        return Some(Presented { token: password.to_owned(), basic_user: Some(user.to_owned()) });
    }
    None
}

/// The `X-ORG-ID` header's value, when one is given. The header is optional, and clients that
/// fill their headers from a configuration send it empty when no organization is configured, so an
/// empty (or blank) value counts as absent rather than as a mismatch.
fn issuing_org(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get("x-org-id")?.as_bytes().trim_ascii();
    (!value.is_empty()).then_some(value)
}

/// The organization segment of a `/v1/{org}/…` path.
pub fn path_org(path: &str) -> Option<&str> {
    let mut segments = path.strip_prefix("/v1/")?.split('/');
    segments.next().filter(|s| !s.is_empty())
}

/// Runs the guard for `op` and, when it passes, the handler with a [`Caller`] in the request's
/// extensions; the rate-limit headers are added to whatever the handler answers.
pub async fn guard(State(state): State<AppState>, op: &'static Operation, mut req: Request, next: Next) -> Response {
    // The request body is not `Sync`, so only the parts the checks need cross the awaits.
    let headers = req.headers().clone();
    let path = req.uri().path().to_owned();
    match admit(&state, op, &headers, &path).await {
        Ok((caller, rate)) => {
            req.extensions_mut().insert(caller);
            let mut response = next.run(req).await;
            if let Some(rate) = rate {
                response.headers_mut().extend(rate.headers());
            }
            response
        }
        Err(err) if err.status() == StatusCode::UNAUTHORIZED => {
            let challenge = match op.challenge {
                Challenge::None => return err.into_response(),
                Challenge::Basic => "Basic realm=\"toolsmith\"",
                // RFC 6750: a request that carried credentials learns that they were refused.
                Challenge::Bearer if presented(&headers).is_some() || api_key_headers(&headers).is_some() => {
                    "Bearer realm=\"toolsmith\", error=\"invalid_token\""
                }
                Challenge::Bearer => "Bearer realm=\"toolsmith\"",
            };
            err.with_header(WWW_AUTHENTICATE, HeaderValue::from_static(challenge)).into_response()
        }
        Err(err) => err.into_response(),
    }
}

/// An organization's API key as presented in headers: (key id, secret, user id).
fn api_key_headers(headers: &HeaderMap) -> Option<(&str, &str, &str)> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    Some((header("x-api-key-id")?, header("x-api-key")?, header("x-user-id")?))
}

/// The principal of a request's credentials: a token, or (where the operation takes them) an API
/// key of the addressed organization; 401 for anything else.
async fn authenticate(
    state: &AppState,
    op: &'static Operation,
    headers: &HeaderMap,
    path: &str,
) -> Result<UserRef, ApiError> {
    if let Some(presented) = presented(headers) {
        let claims = state.tokens().verify(&presented.token).map_err(|err| {
            tracing::debug!(error = %err, "token refused");
            ApiError::unauthorized()
        })?;
        if let Some(user) = &presented.basic_user {
            if *user != format!("{}_{}", claims.org, claims.sub) {
                return Err(ApiError::unauthorized());
            }
        }
        // A token names its user by ids this server issued; one that does not parse was not.
        return match (OrgId::parse(&claims.org), claims.sub.parse::<UserId>()) {
            (Ok(org_id), Ok(user_id)) => Ok(UserRef { org_id, user_id }),
            _ => Err(ApiError::unauthorized()),
        };
    }
    let (key_id, secret, user) =
        api_key_headers(headers).filter(|_| op.api_key_headers).ok_or_else(ApiError::unauthorized)?;
    // A key belongs to one organization: the one addressed. Its users are that organization's.
    let org = path_org(path).and_then(|o| OrgId::parse(o).ok()).ok_or_else(ApiError::unauthorized)?;
    crate::identity::api_key::verify(state.store(), &org, key_id, secret, user)
        .await?
        .ok_or_else(ApiError::unauthorized)
}

async fn admit(
    state: &AppState,
    op: &'static Operation,
    headers: &HeaderMap,
    path: &str,
) -> Result<(Caller, Option<super::rate_limit::RateStatus>), ApiError> {
    let user = authenticate(state, op, headers, path).await?;
    if let Some(issuer) = issuing_org(headers) {
        if issuer != user.org_id.as_str().as_bytes() {
            return Err(ApiError::unauthorized());
        }
    }

    let org_not_found = || ApiError::not_found(op.org_not_found);
    let org = path_org(path).ok_or_else(org_not_found)?;
    let org = OrgId::parse(org).map_err(|_| org_not_found())?;
    let access = state.store().access(&org, &user).await?;
    if !access.org_exists {
        return Err(org_not_found());
    }
    if user.org_id == org {
        // A deleted user's token stops working at once, not when it expires.
        if !access.user_exists {
            return Err(ApiError::unauthorized());
        }
    } else if access.roles.is_empty() {
        return Err(org_not_found());
    }
    let roles = access.roles;

    let bucket = format!("{}|{}|{}", op.id, user.org_id, user.user_id);
    let rate = if op.per_minute == 0 { None } else { state.limiter().hit(&bucket, op.per_minute).await };
    if let Some(status) = rate.filter(|s| s.exceeded) {
        let mut err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, rate_limit_message(op.per_minute));
        for (name, value) in status.headers().iter() {
            err = err.with_header(name.clone(), value.clone());
        }
        return Err(err);
    }

    let caller = Caller::new(org, user, PermissionSet::from_roles(roles));
    if let Some(permission) = op.permission {
        caller.require(permission).map_err(ApiError::from_service(op))?;
    }
    Ok((caller, rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_from_bearer_and_basic() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc.def.ghi"));
        let p = presented(&h).unwrap();
        assert_eq!((p.token.as_str(), p.basic_user), ("abc.def.ghi", None));
        let basic = format!("Basic {}", STANDARD.encode("acme_0123:tok.en.x"));
        h.insert(AUTHORIZATION, HeaderValue::from_str(&basic).unwrap());
        let p = presented(&h).unwrap();
        assert_eq!((p.token.as_str(), p.basic_user.as_deref()), ("tok.en.x", Some("acme_0123")));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Digest x"));
        assert!(presented(&h).is_none());
    }

    #[test]
    fn empty_org_header_is_absent() {
        let mut h = HeaderMap::new();
        assert_eq!(issuing_org(&h), None);
        h.insert("x-org-id", HeaderValue::from_static(""));
        assert_eq!(issuing_org(&h), None);
        h.insert("x-org-id", HeaderValue::from_static("acme"));
        assert_eq!(issuing_org(&h), Some(&b"acme"[..]));
    }

    #[test]
    fn org_segment() {
        assert_eq!(path_org("/v1/acme/tool/"), Some("acme"));
        assert_eq!(path_org("/v1//tool"), None);
        assert_eq!(path_org("/v2/acme"), None);
    }
}
