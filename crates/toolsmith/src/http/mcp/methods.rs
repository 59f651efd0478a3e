//! The methods of the MCP server, in both revisions: the handshake (`initialize`, `ping`) or the
//! discovery (`server/discover`), and the tools (`tools/list`, `tools/call`). Tools are listed and
//! called through the use cases: the catalog, and the same invoke use case as the HTTP API's
//! invoke endpoint, so validation, limits, masking and records cannot differ.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};
use toolsmith_domain::{Permission, ToolName};

use super::rpc::{RpcError, FORBIDDEN, INTERNAL_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND, SERVER_UNAVAILABLE};
use crate::app::AppState;
use crate::http::error::Loc;
use crate::http::params::{Fields, Problems};
use crate::http::wire::invoke::user_variables;
use crate::mcp::{meta, CURRENT_REVISION, PREVIOUS_REVISION, REVISIONS};
use crate::service::catalog::{self, CatalogTool, Narrowing};
use crate::service::invoke::{Finished, Input, Invocation, Mode, SensitiveVariables, Surface, VersionSelector};
use crate::service::{self, Caller, Error};

/// Which revision's rules a request follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// 2025-11-25: `initialize`, then requests under the negotiated version.
    Handshake,
    /// 2026-07-28: every request stands alone, with its envelope in `_meta`.
    Stateless,
}

/// What every method sees.
pub struct Context<'a> {
    /// The service.
    pub state: &'a AppState,
    /// Who asks, in which organization.
    pub caller: &'a Caller,
    /// The request's revision.
    pub era: Era,
    /// The tags and pins of the endpoint's URL.
    pub narrowing: &'a Narrowing,
}

/// A method's failure: a JSON-RPC error, or a refusal of the caller (403).
pub type Outcome = Result<Value, RpcError>;

/// Runs one request's method.
pub async fn dispatch(cx: &Context<'_>, method: &str, params: &Map<String, Value>) -> Outcome {
    let result = match (cx.era, method) {
        (Era::Handshake, "initialize") => initialize(cx, params)?,
        (Era::Handshake, "ping") => json!({}),
        (Era::Stateless, "server/discover") => discover(cx),
        (_, "tools/list") => list_tools(cx, params).await?,
        (_, "tools/call") => call_tool(cx, params).await?,
        _ => {
            let revision = if cx.era == Era::Stateless { CURRENT_REVISION } else { PREVIOUS_REVISION };
            return Err(RpcError::new(METHOD_NOT_FOUND, format!("Method not found: {method} (protocol {revision}).")));
        }
    };
    Ok(complete(cx.era, result))
}

/// A 2026-07-28 result says that it is complete and which server answered.
fn complete(era: Era, mut result: Value) -> Value {
    if era == Era::Stateless {
        result["resultType"] = json!("complete");
        let info = server_info();
        match result.get_mut("_meta").and_then(Value::as_object_mut) {
            Some(m) => {
                m.insert(meta::SERVER_INFO.into(), info);
            }
            None => result["_meta"] = json!({ meta::SERVER_INFO: info }),
        }
    }
    result
}

fn server_info() -> Value {
    json!({"name": "toolsmith", "title": "toolsmith", "version": env!("CARGO_PKG_VERSION")})
}

fn instructions(cx: &Context<'_>) -> String {
    format!(
        "The tools of the organization {:?}: Python functions run in a sandbox; every call is recorded with its \
         caller. A failed call returns its exception as an error result.",
        cx.caller.org.as_str()
    )
}

fn capabilities() -> Value {
    json!({"tools": {"listChanged": false}})
}

fn initialize(cx: &Context<'_>, params: &Map<String, Value>) -> Outcome {
    if !params.get("protocolVersion").is_some_and(Value::is_string) {
        return Err(RpcError::new(INVALID_PARAMS, "initialize needs params.protocolVersion, a string."));
    }
    // Whatever the client asked for, the answer is the one handshake revision served: a client
    // that does not speak it disconnects, as the lifecycle specifies.
    Ok(json!({
        "protocolVersion": PREVIOUS_REVISION,
        "capabilities": capabilities(),
        "serverInfo": server_info(),
        "instructions": instructions(cx),
    }))
}

fn discover(cx: &Context<'_>) -> Value {
    json!({
        "supportedVersions": REVISIONS,
        "capabilities": capabilities(),
        "instructions": instructions(cx),
        "cacheScope": "private",
        "ttlMs": 0,
    })
}

const CURSOR_PREFIX: &str = "after:";

/// The opaque cursor of the page after the tool `name`.
pub fn cursor_after(name: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{name}"))
}

/// The tool name a cursor continues after; `None` for anything this server did not issue.
pub fn read_cursor(cursor: &str) -> Option<String> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let name = text.strip_prefix(CURSOR_PREFIX)?;
    ToolName::parse(name).ok().filter(|n| n.as_str() == name).map(|_| name.to_owned())
}

fn describe(tool: &CatalogTool) -> Value {
    let mut described = json!({
        "name": tool.name,
        "description": tool.description,
        "inputSchema": tool.version.input_schema,
    });
    if let Some((schema, _)) = offered_output(tool) {
        described["outputSchema"] = schema;
    }
    described
}

/// The `outputSchema` a tool is offered with, and whether its results are wrapped. MCP output
/// schemas describe objects: a tool that returns an object is offered with its schema as it is;
/// one that returns another JSON value (a number, a list) with that value under `result`, the way
/// other MCP servers wrap such results. A tool that returns a string answers with text content
/// alone, which needs no schema.
fn offered_output(tool: &CatalogTool) -> Option<(Value, bool)> {
    let schema = catalog::output_schema(&tool.version)?;
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => Some((schema.clone(), false)),
        Some("string") => None,
        _ => Some((json!({"type": "object", "properties": {"result": schema}, "required": ["result"]}), true)),
    }
}

async fn list_tools(cx: &Context<'_>, params: &Map<String, Value>) -> Outcome {
    let after =
        match params.get("cursor") {
            None | Some(Value::Null) => None,
            Some(Value::String(cursor)) => Some(read_cursor(cursor).ok_or_else(|| {
                RpcError::new(INVALID_PARAMS, "Invalid cursor: pass the nextCursor of a previous page.")
            })?),
            Some(_) => return Err(RpcError::new(INVALID_PARAMS, "The cursor must be a string.")),
        };
    let page = catalog::page(cx.state, cx.caller, cx.narrowing, after).await.map_err(service_error)?;
    let tools: Vec<Value> = page.tools.iter().map(describe).collect();
    let mut result = json!({ "tools": tools });
    if let Some(after) = page.next_after {
        result["nextCursor"] = json!(cursor_after(&after));
    }
    if cx.era == Era::Stateless {
        // The list depends on who asks (their organization, the URL's narrowing) and changes
        // whenever a version is published or deprecated.
        result["cacheScope"] = json!("private");
        result["ttlMs"] = json!(0);
    }
    Ok(result)
}

/// Reads the toolsmith keys of a `tools/call`'s `_meta`: the mode and the user variables, checked
/// as the invoke endpoint checks them.
fn call_input(params: &Map<String, Value>, arguments: Map<String, Value>) -> Result<Input, RpcError> {
    let empty = Map::new();
    let request_meta = match params.get("_meta") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(RpcError::new(INVALID_PARAMS, "params._meta must be an object.")),
    };
    let mut problems = Problems::default();
    let fields = Fields::new(request_meta, vec![Loc::from("params"), Loc::from("_meta")]);
    let nonsensitive = user_variables(&fields, meta::NONSENSITIVE_USER_VARIABLES, &mut problems);
    let sensitive = user_variables(&fields, meta::SENSITIVE_USER_VARIABLES, &mut problems);
    let mode = match request_meta.get(meta::INVOCATION_MODE) {
        None | Some(Value::Null) => Mode::Regular,
        Some(Value::String(m)) if Mode::parse(m).is_some() => Mode::parse(m).unwrap_or(Mode::Regular),
        Some(other) => {
            problems.push(
                fields.loc(meta::INVOCATION_MODE),
                "enum",
                "Input should be 'regular' or 'conversation-simulation'",
                Some(other.clone()),
            );
            Mode::Regular
        }
    };
    if !problems.is_empty() {
        let said: Vec<String> = problems
            .into_errors()
            .into_iter()
            .map(|e| {
                let at: Vec<String> = e
                    .loc
                    .iter()
                    .map(|l| match l {
                        Loc::Key(k) => k.clone(),
                        Loc::Index(i) => i.to_string(),
                    })
                    .collect();
                format!("{}: {}", at.join("."), e.msg)
            })
            .collect();
        return Err(RpcError::new(INVALID_PARAMS, format!("Invalid params: {}.", said.join("; "))));
    }
    Ok(Input { parameters: arguments, mode, nonsensitive, sensitive: SensitiveVariables(sensitive), source: None })
}

async fn call_tool(cx: &Context<'_>, params: &Map<String, Value>) -> Outcome {
    let Some(Value::String(name)) = params.get("name") else {
        return Err(RpcError::new(INVALID_PARAMS, "tools/call needs params.name, the tool's name."));
    };
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(arguments)) => arguments.clone(),
        Some(_) => return Err(RpcError::new(INVALID_PARAMS, "params.arguments must be an object.")),
    };
    let input = call_input(params, arguments)?;
    // Refused before the tool is looked up, so that a caller who may not call tools learns
    // nothing from the answer about which ones exist.
    if !cx.caller.can(Permission::InvokeTool) {
        return Err(forbidden());
    }
    let unknown = || RpcError::new(INVALID_PARAMS, format!("Unknown tool: {name}"));
    let tool =
        catalog::find(cx.state, cx.caller, cx.narrowing, name).await.map_err(service_error)?.ok_or_else(unknown)?;
    let request = Invocation {
        tool_id: tool.tool_id.clone(),
        version: VersionSelector::Exact(tool.version.version),
        inputs: vec![input],
        surface: Surface::Mcp,
    };
    let invoked = match service::invoke::invoke(cx.state, cx.caller, request).await {
        Ok(invoked) => invoked,
        // Arguments the schema refuses are the model's to correct: 2025-11-25 and later report
        // them as a tool error, which the model sees, rather than as a protocol error.
        Err(Error::InvalidInput(message)) => {
            // Said in MCP's words: there is one input, and its fields are the call's arguments.
            let message = message.replace("Input 1: ", "").replace("`input_parameters", "`arguments");
            return Ok(json!({"content": [text(message)], "isError": true}));
        }
        // Deprecated between the lookup and the run.
        Err(Error::NotFound) => return Err(unknown()),
        Err(e) => return Err(service_error(e)),
    };
    let (Some(finished), Some(record)) = (invoked.results.first(), invoked.invocation_ids.first()) else {
        return Err(
            RpcError::new(INTERNAL_ERROR, "Internal error.").with_status(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
        );
    };
    let mut result = tool_result(&tool, finished);
    result["_meta"] = json!({ meta::INVOCATION_ID: record, meta::TOOL_VERSION: invoked.version.to_string() });
    Ok(result)
}

fn text(text: impl Into<String>) -> Value {
    json!({"type": "text", "text": text.into()})
}

/// A finished invocation as a `CallToolResult`. The tool's return value arrives as text: a string
/// as it is, anything else as JSON. With an output schema the value is also given as
/// `structuredContent` (wrapped under `result` when the schema is, see [`offered_output`]);
/// without one, text that is a JSON object is.
fn tool_result(tool: &CatalogTool, finished: &Finished) -> Value {
    if !finished.succeeded {
        let kind = finished.exception_type.as_deref().unwrap_or("Error");
        let message = finished.exception_message.as_deref().unwrap_or_default();
        return json!({"content": [text(format!("{kind}: {message}"))], "isError": true});
    }
    let output = finished.output.clone().unwrap_or_default();
    let parsed = || serde_json::from_str::<Value>(&output).ok();
    let structured = match offered_output(tool) {
        Some((_, true)) => parsed().map(|v| json!({ "result": v })),
        Some((_, false)) | None => parsed().filter(Value::is_object),
    };
    let mut result = json!({"content": [text(output)], "isError": false});
    if let Some(structured) = structured {
        result["structuredContent"] = structured;
    }
    result
}

/// The refusal of a caller who lacks a permission: HTTP 403, as the MCP authorization
/// specification answers a token without the scope a request needs.
pub fn forbidden() -> RpcError {
    RpcError::new(FORBIDDEN, "Missing required permissions: calling tools needs Tool:InvokeTool.")
        .with_status(axum::http::StatusCode::FORBIDDEN)
}

/// A use case's error that is not the tool's: the server's state or the caller's rights.
fn service_error(e: Error) -> RpcError {
    use axum::http::StatusCode;
    match e {
        Error::Forbidden => forbidden(),
        Error::Unauthenticated(message) => RpcError::new(INVALID_PARAMS, message).with_status(StatusCode::UNAUTHORIZED),
        Error::NotFound => RpcError::new(INVALID_PARAMS, "Not found."),
        Error::Rejected(message) | Error::InvalidInput(message) | Error::Conflict(message) => {
            RpcError::new(INVALID_PARAMS, message)
        }
        Error::InvalidArgument { name, message } => RpcError::new(INVALID_PARAMS, format!("{name}: {message}")),
        Error::Busy => {
            RpcError::new(SERVER_UNAVAILABLE, "Too many tool invocations are running on this server; retry shortly.")
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
        }
        Error::Unavailable(message) => {
            RpcError::new(SERVER_UNAVAILABLE, message).with_status(StatusCode::SERVICE_UNAVAILABLE)
        }
        Error::Store(store) if store.is_unavailable() => {
            tracing::error!(error = %store, "database unavailable");
            RpcError::new(SERVER_UNAVAILABLE, crate::http::error::UNAVAILABLE)
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
        }
        Error::Store(store) => {
            tracing::error!(error = %store, "store error");
            RpcError::new(INTERNAL_ERROR, "Internal error.").with_status(StatusCode::INTERNAL_SERVER_ERROR)
        }
        Error::Internal(_) => {
            RpcError::new(INTERNAL_ERROR, "Internal error.").with_status(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_what_they_did_not_issue() {
        assert_eq!(read_cursor(&cursor_after("get_weather")).as_deref(), Some("get_weather"));
        for bad in [
            "",
            "!!",
            "YWZ0ZXI6",
            "eA",
            &URL_SAFE_NO_PAD.encode("after:Not A Name"),
            &URL_SAFE_NO_PAD.encode("before:x"),
        ] {
            assert_eq!(read_cursor(bad), None, "{bad}");
        }
    }
}
