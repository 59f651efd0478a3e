//! JSON-RPC 2.0 as MCP uses it: reading one message from a POST body, and the error codes and
//! answers the server gives.

use axum::http::StatusCode;
use serde_json::{json, Map, Value};

/// Not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON, but not one request or notification object.
pub const INVALID_REQUEST: i64 = -32600;
/// No such method (in the request's revision).
pub const METHOD_NOT_FOUND: i64 = -32601;
/// The method's parameters are not acceptable, or name a tool the server does not offer.
pub const INVALID_PARAMS: i64 = -32602;
/// A failure of the server's own.
pub const INTERNAL_ERROR: i64 = -32603;
/// toolsmith's own (the implementation-defined range): the server is at its limit of concurrent
/// invocations, or cannot run tools at all; retrying later may succeed.
pub const SERVER_UNAVAILABLE: i64 = -32000;
/// toolsmith's own: the caller lacks a permission the request needs.
pub const FORBIDDEN: i64 = -32003;
/// 2026-07-28: a routing header disagrees with the body, or is missing.
pub const HEADER_MISMATCH: i64 = -32020;
/// 2026-07-28: the request's protocol revision is not served.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// A JSON-RPC request id: a string or an integer (MCP allows no other, and never `null`).
pub type Id = Value;

/// An error answer, with the HTTP status it goes with.
#[derive(Debug, Clone)]
pub struct RpcError {
    /// The JSON-RPC error code.
    pub code: i64,
    /// One sentence saying what is wrong.
    pub message: String,
    /// Details a client can act on (the revisions served, for an unsupported one).
    pub data: Option<Value>,
    /// The HTTP status, when the error decides it; otherwise the revision's rule does.
    pub status: Option<StatusCode>,
}

impl RpcError {
    /// An error whose HTTP status follows the revision's rule.
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError { code, message: message.into(), data: None, status: None }
    }

    /// An error of the transport, before any method ran: always `400 Bad Request`.
    pub fn bad_request(code: i64, message: impl Into<String>) -> RpcError {
        RpcError::new(code, message).with_status(StatusCode::BAD_REQUEST)
    }

    /// The protocol revision named is not served; `data` lists the ones that are.
    pub fn unsupported_revision(requested: &str) -> RpcError {
        let mut error = RpcError::bad_request(
            UNSUPPORTED_PROTOCOL_VERSION,
            format!(
                "Unsupported protocol version {requested:?}; this server speaks {}.",
                crate::mcp::REVISIONS.join(" and ")
            ),
        );
        error.data = Some(json!({"supported": crate::mcp::REVISIONS, "requested": requested}));
        error
    }

    /// Sets the HTTP status.
    pub fn with_status(mut self, status: StatusCode) -> RpcError {
        self.status = Some(status);
        self
    }

    /// The error object of the answer.
    pub fn body(&self, id: Option<&Id>) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(data) = &self.data {
            error["data"] = data.clone();
        }
        json!({"jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": error})
    }
}

/// A successful answer.
pub fn result(id: &Id, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// What a POST body held.
#[derive(Debug)]
pub enum Message {
    /// A request, which is owed an answer.
    Request {
        /// Its id.
        id: Id,
        /// The method.
        method: String,
        /// Its parameters (an empty object when it had none).
        params: Map<String, Value>,
    },
    /// A notification, which is not.
    Notification {
        /// The method.
        method: String,
    },
}

impl Message {
    /// The request's id, for the answer to an error found after reading it.
    pub fn id(&self) -> Option<&Id> {
        match self {
            Message::Request { id, .. } => Some(id),
            Message::Notification { .. } => None,
        }
    }
}

/// Reads one message from a POST body. Batches are refused: MCP removed them in 2025-06-18, and
/// neither revision served has them. Responses are refused too: this server sends no requests.
pub fn read(body: &[u8]) -> Result<Message, (Option<Id>, RpcError)> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| (None, RpcError::bad_request(PARSE_ERROR, format!("Parse error: the body is not JSON ({e})."))))?;
    let object = match value {
        Value::Object(object) => object,
        Value::Array(_) => {
            return Err((
                None,
                RpcError::bad_request(
                    INVALID_REQUEST,
                    "Batches are not supported: send one JSON-RPC message per request.",
                ),
            ))
        }
        _ => {
            return Err((
                None,
                RpcError::bad_request(INVALID_REQUEST, "The body must be one JSON-RPC request or notification object."),
            ))
        }
    };
    let id = match object.get("id") {
        None => None,
        Some(id @ Value::String(_)) => Some(id.clone()),
        Some(id @ Value::Number(n)) if n.is_i64() || n.is_u64() => Some(id.clone()),
        Some(_) => {
            return Err((None, RpcError::bad_request(INVALID_REQUEST, "A request id must be a string or an integer.")))
        }
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((id, RpcError::bad_request(INVALID_REQUEST, "The message must say \"jsonrpc\": \"2.0\".")));
    }
    let method = match object.get("method") {
        Some(Value::String(method)) => method.clone(),
        Some(_) => return Err((id, RpcError::bad_request(INVALID_REQUEST, "The method must be a string."))),
        None if object.contains_key("result") || object.contains_key("error") => {
            return Err((
                id,
                RpcError::bad_request(INVALID_REQUEST, "This server sends no requests, so it takes no responses."),
            ))
        }
        None => return Err((id, RpcError::bad_request(INVALID_REQUEST, "The message has no method."))),
    };
    let params = match object.get("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(params)) => params.clone(),
        Some(_) => return Err((id, RpcError::bad_request(INVALID_PARAMS, "The params must be an object."))),
    };
    Ok(match id {
        Some(id) => Message::Request { id, method, params },
        None => Message::Notification { method },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> i64 {
        read(body.as_bytes()).unwrap_err().1.code
    }

    #[test]
    fn requests_and_notifications_are_read() {
        let Message::Request { id, method, params } =
            read(br#"{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"cursor":"x"}}"#).unwrap()
        else {
            panic!("a request")
        };
        assert_eq!((id, method.as_str(), params["cursor"].as_str()), (json!(7), "tools/list", Some("x")));
        let message = read(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(matches!(message, Message::Notification { method } if method == "notifications/initialized"));
    }

    #[test]
    fn everything_else_gets_the_code_json_rpc_gives_it() {
        assert_eq!(code("{"), PARSE_ERROR);
        assert_eq!(code(""), PARSE_ERROR);
        assert_eq!(code(&"[".repeat(10_000)), PARSE_ERROR);
        assert_eq!(code(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#), INVALID_REQUEST);
        assert_eq!(code("42"), INVALID_REQUEST);
        assert_eq!(code(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#), INVALID_REQUEST);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#), INVALID_REQUEST);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#), INVALID_REQUEST);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#), INVALID_REQUEST);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":3}"#), INVALID_REQUEST);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#), INVALID_REQUEST);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}"#), INVALID_PARAMS);
        let (id, _) = read(br#"{"jsonrpc":"2.0","id":"a","method":"x","params":"y"}"#).unwrap_err();
        assert_eq!(id, Some(json!("a")), "the id is kept for the answer once it is known");
    }
}
