//! `/v1/{org}/mcp` (extension): the organization's MCP server over Streamable HTTP.
//!
//! The server is stateless in both revisions it speaks, so any node behind a load balancer
//! answers any request: it issues no session id, answers `GET` (which would open a stream) and
//! `DELETE` (which would end a session) with 405, and answers every POSTed request with one JSON
//! object (or, for a client that accepts only `text/event-stream`, a stream of that one message).
//!
//! A request follows 2026-07-28 when its `MCP-Protocol-Version` header names that revision or its
//! `_meta` carries the per-request envelope; otherwise it follows 2025-11-25. Before a method
//! runs, the transport checks what the revision asks of every request: the media types, the
//! protocol version header, and (2026-07-28) the envelope and the routing headers that must
//! repeat the body. The request guard has already authenticated the caller (a token, or an API
//! key's headers), hidden foreign organizations (404) and counted the rate limit.

pub mod methods;
pub mod rpc;

use axum::extract::{Request, State};
use axum::http::header::{ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_TYPE, ORIGIN, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{Map, Value};
use toolsmith_domain::{TagFilter, ToolName};

use crate::app::{normalize_origin, AppState};
use crate::mcp::{meta, CURRENT_REVISION, METHOD_HEADER, NAME_HEADER, PREVIOUS_REVISION, PROTOCOL_VERSION_HEADER};
use crate::service::catalog::Narrowing;
use crate::service::invoke::VersionSelector;
use crate::service::Caller;
use methods::{Context, Era};
use rpc::{Message, RpcError, HEADER_MISMATCH, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND};

/// How the answer to a request is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    EventStream,
}

/// The response format the `Accept` header allows, JSON preferred; `None` when it allows neither.
/// A missing header accepts anything (RFC 9110).
fn negotiate(headers: &HeaderMap) -> Option<Format> {
    let Some(accept) = headers.get(ACCEPT) else { return Some(Format::Json) };
    let accept = accept.to_str().ok()?;
    let mut json = false;
    let mut events = false;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            let p = p.trim().to_ascii_lowercase();
            p.strip_prefix("q=").is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
        });
        if refused {
            continue;
        }
        match media.as_str() {
            "application/json" | "application/*" | "*/*" => json = true,
            "text/event-stream" | "text/*" => events = true,
            _ => {}
        }
    }
    if json {
        Some(Format::Json)
    } else if events {
        Some(Format::EventStream)
    } else {
        None
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/json"))
}

/// The HTTP status of an error answer: what the error says, else the revision's rule. 2026-07-28
/// gives the errors of a malformed or misrouted request 400 and an unknown method 404; 2025-11-25
/// answers a method's error with 200.
fn status_of(era: Era, error: &RpcError) -> StatusCode {
    if let Some(status) = error.status {
        return status;
    }
    match (era, error.code) {
        (Era::Handshake, _) => StatusCode::OK,
        (Era::Stateless, METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        (Era::Stateless, code) if (-32700..=-32600).contains(&code) || (-32022..=-32020).contains(&code) => {
            StatusCode::BAD_REQUEST
        }
        (Era::Stateless, _) => StatusCode::OK,
    }
}

fn respond(format: Format, status: StatusCode, body: &Value) -> Response {
    if format == Format::EventStream && status == StatusCode::OK {
        let stream = format!("event: message\ndata: {body}\n\n");
        return (
            status,
            [
                (CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
                (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            stream,
        )
            .into_response();
    }
    (status, [(CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_string()).into_response()
}

/// An error answer, with the headers its status calls for.
fn refuse(format: Format, era: Era, id: Option<&rpc::Id>, error: RpcError) -> Response {
    let status = status_of(era, &error);
    let mut response = respond(format, status, &error.body(id));
    let headers = response.headers_mut();
    if status == StatusCode::FORBIDDEN {
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"toolsmith\", error=\"insufficient_scope\""),
        );
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(HeaderName::from_static("retry-after"), HeaderValue::from_static("1"));
    }
    response
}

/// `GET`, `DELETE` and every other method but `POST`: 405, since this server opens no streams and
/// keeps no sessions.
pub async fn not_allowed() -> Response {
    let error = RpcError::new(INVALID_REQUEST, "This MCP server is stateless: send each message as a POST.")
        .with_status(StatusCode::METHOD_NOT_ALLOWED);
    let mut response = refuse(Format::Json, Era::Stateless, None, error);
    response.headers_mut().insert(ALLOW, HeaderValue::from_static("POST"));
    response
}

/// Refuses a request whose `Origin` header is not an allowed origin (403), before anything else:
/// a page a browser shows must not reach the server through DNS rebinding. Requests without the
/// header (every client that is not a browser) pass.
pub async fn check_origin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(origin) = req.headers().get(ORIGIN) {
        let allowed = origin
            .to_str()
            .is_ok_and(|o| state.settings().mcp_allowed_origins.iter().any(|a| *a == normalize_origin(o)));
        if !allowed {
            let error = RpcError::new(INVALID_REQUEST, "Forbidden: this origin may not call the MCP server.")
                .with_status(StatusCode::FORBIDDEN);
            return refuse(Format::Json, Era::Stateless, None, error);
        }
    }
    next.run(req).await
}

/// The endpoint URL's narrowing: `tag=key:value` filters and `version=<tool name>:<specifier>`
/// pins, each repeatable. Anything else in the query is refused, so that a misspelt parameter does
/// not silently offer every tool.
fn narrowing(query: Option<&str>) -> Result<Narrowing, RpcError> {
    let bad = |message: String| RpcError::bad_request(INVALID_PARAMS, message);
    let mut narrowing = Narrowing::default();
    let pairs =
        query.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect::<Vec<_>>()).unwrap_or_default();
    for (key, value) in pairs {
        match key.as_str() {
            "tag" => narrowing.tags.push(TagFilter::parse(&value).ok_or_else(|| {
                bad(format!("Query parameter tag={value:?}: a tag filter has the form key:value, key:* or key:."))
            })?),
            "version" => {
                let (name, spec) = value.split_once(':').ok_or_else(|| {
                    bad(format!(
                        "Query parameter version={value:?}: a pin has the form <tool name>:<version specifier>."
                    ))
                })?;
                let name = ToolName::parse(name).map_err(|e| {
                    bad(format!("Query parameter version={value:?}: the tool name is not valid ({e})."))
                })?;
                let selector = VersionSelector::parse(spec).map_err(|e| {
                    bad(format!("Query parameter version={value:?}: not a version or a PEP 440 specifier ({e})."))
                })?;
                if narrowing.pins.iter().any(|(n, _)| n == name.as_str()) {
                    return Err(bad(format!("Query parameter version pins the tool {:?} twice.", name.as_str())));
                }
                narrowing.pins.push((name.as_str().to_owned(), selector));
            }
            other => {
                return Err(bad(format!(
                "Unknown query parameter {other:?}: this endpoint takes tag=key:value and version=<tool>:<specifier>."
            )))
            }
        }
    }
    Ok(narrowing)
}

/// The one value of a header; a repeated or unreadable one is a mismatch, since readers of the
/// first and of the last copy would disagree.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, RpcError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(RpcError::bad_request(HEADER_MISMATCH, format!("The {name} header appears more than once.")));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| RpcError::bad_request(HEADER_MISMATCH, format!("The {name} header is not visible ASCII.")))
}

/// A header value as sent: verbatim, or base64 in `=?base64?…?=` when the value is not plain
/// visible ASCII. `None` for a malformed wrapper.
fn header_text(value: &str) -> Option<String> {
    match value.strip_prefix("=?base64?").and_then(|v| v.strip_suffix("?=")) {
        Some(encoded) => String::from_utf8(STANDARD.decode(encoded).ok()?).ok(),
        None => Some(value.to_owned()),
    }
}

/// Decides the request's revision and checks what it asks of every request.
fn era_of(headers: &HeaderMap, message: &Message) -> Result<Era, RpcError> {
    let version = single(headers, PROTOCOL_VERSION_HEADER)?;
    let method_header = single(headers, METHOD_HEADER)?;
    let name_header = single(headers, NAME_HEADER)?;
    let (method, params) = match message {
        Message::Request { method, params, .. } => (method.as_str(), Some(params)),
        Message::Notification { method } => (method.as_str(), None),
    };
    let envelope = params
        .and_then(|p| p.get("_meta"))
        .and_then(Value::as_object)
        .filter(|m| m.contains_key(meta::PROTOCOL_VERSION) || m.contains_key(meta::CLIENT_CAPABILITIES));
    if let Some(found) = method_header.filter(|m| *m != method) {
        return Err(RpcError::bad_request(
            HEADER_MISMATCH,
            format!("The Mcp-Method header ({found}) does not match the request's method ({method})."),
        ));
    }
    let Some(params) = params else {
        // A notification is acknowledged and dropped: neither revision has one this server acts
        // on. Only a version it does not speak is worth telling.
        return match version {
            Some(v) if v != CURRENT_REVISION && v != PREVIOUS_REVISION => Err(RpcError::unsupported_revision(v)),
            _ => Ok(if version == Some(CURRENT_REVISION) { Era::Stateless } else { Era::Handshake }),
        };
    };
    if version == Some(CURRENT_REVISION) || envelope.is_some() {
        stateless_envelope(version, method, method_header, name_header, params)?;
        return Ok(Era::Stateless);
    }
    if method == "initialize" {
        return Ok(Era::Handshake);
    }
    match version {
        Some(PREVIOUS_REVISION) => Ok(Era::Handshake),
        Some(other) => Err(RpcError::unsupported_revision(other)),
        None => Err(RpcError::bad_request(
            INVALID_REQUEST,
            format!(
                "The MCP-Protocol-Version header is missing. Send {CURRENT_REVISION} with the request's envelope in \
                 _meta, or initialize and then send {PREVIOUS_REVISION}."
            ),
        )),
    }
}

/// 2026-07-28: the envelope in `_meta`, the headers that repeat it and the body, and the revision.
fn stateless_envelope(
    version: Option<&str>,
    method: &str,
    method_header: Option<&str>,
    name_header: Option<&str>,
    params: &Map<String, Value>,
) -> Result<(), RpcError> {
    let envelope = params.get("_meta").and_then(Value::as_object);
    let missing: Vec<&str> = [meta::PROTOCOL_VERSION, meta::CLIENT_CAPABILITIES]
        .into_iter()
        .filter(|k| !envelope.is_some_and(|m| m.contains_key(*k)))
        .collect();
    if !missing.is_empty() {
        return Err(RpcError::bad_request(
            INVALID_PARAMS,
            format!("params._meta is missing the required key(s): {}.", missing.join(", ")),
        ));
    }
    let declared = envelope.and_then(|m| m.get(meta::PROTOCOL_VERSION));
    if version.is_none() || declared.and_then(Value::as_str) != version {
        return Err(RpcError::bad_request(
            HEADER_MISMATCH,
            "The MCP-Protocol-Version header does not match the protocol version in params._meta.",
        ));
    }
    if method_header.is_none() {
        return Err(RpcError::bad_request(HEADER_MISMATCH, "The Mcp-Method header is missing."));
    }
    if method == "tools/call" {
        if let Some(Value::String(name)) = params.get("name") {
            if name_header.and_then(header_text).as_deref() != Some(name.as_str()) {
                return Err(RpcError::bad_request(
                    HEADER_MISMATCH,
                    "The Mcp-Name header does not match the tool the request names.",
                ));
            }
        }
    }
    match version {
        Some(CURRENT_REVISION) => Ok(()),
        Some(other) => Err(RpcError::unsupported_revision(other)),
        None => Err(RpcError::bad_request(HEADER_MISMATCH, "The MCP-Protocol-Version header is missing.")),
    }
}

/// `POST /v1/{org}/mcp`: one JSON-RPC message in, its answer out.
pub async fn post(State(state): State<AppState>, Extension(caller): Extension<Caller>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    if !is_json(headers) {
        let error = RpcError::new(INVALID_REQUEST, "The body must be JSON: send Content-Type: application/json.")
            .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        return refuse(Format::Json, Era::Stateless, None, error);
    }
    let Some(format) = negotiate(headers) else {
        let error = RpcError::new(INVALID_REQUEST, "Not acceptable: accept application/json or text/event-stream.")
            .with_status(StatusCode::NOT_ACCEPTABLE);
        return refuse(Format::Json, Era::Stateless, None, error);
    };
    let limit = state.settings().max_body_bytes;
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        let error = RpcError::new(INVALID_REQUEST, format!("The body is larger than {limit} bytes."))
            .with_status(StatusCode::PAYLOAD_TOO_LARGE);
        return refuse(format, Era::Stateless, None, error);
    };
    let message = match rpc::read(&bytes) {
        Ok(message) => message,
        Err((id, error)) => return refuse(format, Era::Stateless, id.as_ref(), error),
    };
    let narrowing = match narrowing(parts.uri.query()) {
        Ok(narrowing) => narrowing,
        Err(error) => return refuse(format, Era::Stateless, message.id(), error),
    };
    let era = match era_of(headers, &message) {
        Ok(era) => era,
        Err(error) => return refuse(format, Era::Stateless, message.id(), error),
    };
    let Message::Request { id, method, params } = message else {
        return StatusCode::ACCEPTED.into_response();
    };
    let cx = Context { state: &state, caller: &caller, era, narrowing: &narrowing };
    match methods::dispatch(&cx, &method, &params).await {
        Ok(result) => respond(format, StatusCode::OK, &rpc::result(&id, result)),
        Err(error) => refuse(format, era, Some(&id), error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> Option<Format> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
        negotiate(&headers)
    }

    #[test]
    fn accept_prefers_json_and_honours_refusals() {
        assert_eq!(negotiate(&HeaderMap::new()), Some(Format::Json));
        assert_eq!(accept("application/json, text/event-stream"), Some(Format::Json));
        assert_eq!(accept("text/event-stream"), Some(Format::EventStream));
        assert_eq!(accept("*/*"), Some(Format::Json));
        assert_eq!(accept("Application/JSON; charset=utf-8"), Some(Format::Json));
        assert_eq!(accept("application/json;q=0, text/event-stream"), Some(Format::EventStream));
        assert_eq!(accept("text/html"), None);
        assert_eq!(accept("application/json;q=0"), None);
    }

    #[test]
    fn the_query_narrows_or_is_refused() {
        let n = narrowing(Some("tag=team:core&tag=tier:*&version=get_weather:%3E%3D1%2C%3C2")).unwrap();
        assert_eq!(n.tags.len(), 2);
        assert_eq!(n.pins.len(), 1);
        assert_eq!(n.pins[0].0, "get_weather");
        for bad in [
            "tag=team",
            "version=get_weather",
            "version=Bad-Name:1.0.0",
            "version=x:banana",
            "tags=a:b",
            "version=a:1.0.0&version=a:2.0.0",
        ] {
            let e = narrowing(Some(bad)).unwrap_err();
            assert_eq!((e.code, e.status), (INVALID_PARAMS, Some(StatusCode::BAD_REQUEST)), "{bad}");
        }
    }

    #[test]
    fn header_values_may_be_wrapped_in_base64() {
        assert_eq!(header_text("plain").as_deref(), Some("plain"));
        assert_eq!(header_text(&format!("=?base64?{}?=", STANDARD.encode("caf\u{e9}"))).as_deref(), Some("caf\u{e9}"));
        assert_eq!(header_text("=?base64?***?="), None);
    }
}
