//! `toolsmith mcp`: an organization's MCP server on standard input and output, for MCP clients
//! that start local servers. Each newline-delimited JSON-RPC message read from stdin is POSTed to
//! the server's MCP endpoint and each answer written to stdout as one line; nothing else is ever
//! written to stdout, and everything the bridge has to say goes to stderr.
//!
//! The HTTP headers a message needs are derived from it, since a stdio client sends none: the
//! protocol version (from a 2026-07-28 request's `_meta`, or the version `initialize` negotiated),
//! `Mcp-Method` and `Mcp-Name`. With an API key the bridge signs in, and signs in again when the
//! server refuses an expired token; a session id the server issues is kept and sent back.

use std::sync::Arc;

use clap::Args;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, Mutex};

use super::{meta, METHOD_HEADER, NAME_HEADER, PROTOCOL_VERSION_HEADER, SESSION_ID_HEADER};

/// Where the MCP server is and what narrows it; credentials come from the environment.
#[derive(Debug, Clone, Args)]
pub struct BridgeArgs {
    /// The toolsmith server's base URL (`https://toolsmith.example.com`).
    #[arg(long, env = "TOOLSMITH_URL")]
    pub url: String,
    /// The organization whose tools to serve.
    #[arg(long, env = "TOOLSMITH_ORG")]
    pub org: String,
    /// Only tools with this tag (`key:value`, `key:*` or `key:`). Repeatable.
    #[arg(long)]
    pub tag: Vec<String>,
    /// Offer a tool at the highest live version matching a specifier (`name:>=1,<2`). Repeatable.
    #[arg(long)]
    pub version: Vec<String>,
}

/// How the bridge proves who it is.
#[derive(Debug, Clone)]
enum Credentials {
    /// An API key, traded for tokens (`TOOLSMITH_API_KEY`, `TOOLSMITH_API_KEY_ID`,
    /// `TOOLSMITH_USER_ID`).
    ApiKey { key: String, key_id: String, user_id: String },
    /// A token given as it is (`TOOLSMITH_TOKEN`); when it expires the bridge cannot renew it.
    Token(String),
}

impl Credentials {
    fn from_env() -> anyhow::Result<Credentials> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (var("TOOLSMITH_API_KEY"), var("TOOLSMITH_API_KEY_ID"), var("TOOLSMITH_USER_ID"), var("TOOLSMITH_TOKEN"))
        {
            (Some(key), Some(key_id), Some(user_id), _) => Ok(Credentials::ApiKey { key, key_id, user_id }),
            (_, _, _, Some(token)) => Ok(Credentials::Token(token)),
            _ => anyhow::bail!(
                "no credentials: set TOOLSMITH_API_KEY, TOOLSMITH_API_KEY_ID and TOOLSMITH_USER_ID (or TOOLSMITH_TOKEN)"
            ),
        }
    }
}

struct Bridge {
    http: reqwest::Client,
    base: String,
    endpoint: String,
    org: String,
    credentials: Credentials,
    token: Mutex<Option<String>>,
    negotiated: Mutex<Option<String>>,
    session: Mutex<Option<String>>,
}

impl Bridge {
    /// A fresh token from the API key.
    async fn sign_in(&self) -> anyhow::Result<String> {
        let Credentials::ApiKey { key, key_id, user_id } = &self.credentials else {
            anyhow::bail!("the token in TOOLSMITH_TOKEN was refused, and there is no API key to sign in with");
        };
        let url = format!("{}/v1/{}/user/signin_with_api_key", self.base, self.org);
        let response = self
            .http
            .post(url)
            .header("x-api-key", key)
            .header("x-api-key-id", key_id)
            .header("x-user-id", user_id)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match body.get("id_token").and_then(Value::as_str) {
            Some(token) if status.is_success() => Ok(token.to_owned()),
            _ => anyhow::bail!(
                "signing in with the API key failed ({status}): {}",
                body["detail"].as_str().unwrap_or("no detail")
            ),
        }
    }

    /// The current token, signing in first when there is none.
    async fn token(&self) -> anyhow::Result<String> {
        let mut token = self.token.lock().await;
        if token.is_none() {
            *token = Some(match &self.credentials {
                Credentials::Token(t) => t.clone(),
                Credentials::ApiKey { .. } => self.sign_in().await?,
            });
        }
        Ok(token.clone().unwrap_or_default())
    }

    /// Replaces a refused token, unless another message already did.
    async fn renew(&self, refused: &str) -> anyhow::Result<()> {
        let mut token = self.token.lock().await;
        if token.as_deref() == Some(refused) {
            *token = Some(self.sign_in().await?);
        }
        Ok(())
    }

    async fn post(&self, message: &Value, token: &str) -> reqwest::Result<reqwest::Response> {
        let mut request = self
            .http
            .post(&self.endpoint)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        let params = &message["params"];
        let version = match params["_meta"][meta::PROTOCOL_VERSION].as_str() {
            Some(v) => Some(v.to_owned()),
            None if message["method"] == "initialize" => None,
            None => self.negotiated.lock().await.clone(),
        };
        if let Some(version) = version {
            request = request.header(PROTOCOL_VERSION_HEADER, version);
        }
        if let Some(method) = message["method"].as_str() {
            request = request.header(METHOD_HEADER, header_value(method));
            if method == "tools/call" {
                if let Some(name) = params["name"].as_str() {
                    request = request.header(NAME_HEADER, header_value(name));
                }
            }
        }
        if let Some(session) = self.session.lock().await.clone() {
            request = request.header(SESSION_ID_HEADER, session);
        }
        request.body(message.to_string()).send().await
    }

    /// Relays one message; the answers to write, if any.
    async fn relay(&self, message: Value) -> Vec<Value> {
        let id = message.get("id").cloned();
        match self.exchange(&message).await {
            Ok(answers) => {
                for answer in &answers {
                    if message["method"] == "initialize" {
                        if let Some(version) = answer["result"]["protocolVersion"].as_str() {
                            *self.negotiated.lock().await = Some(version.to_owned());
                        }
                    }
                }
                answers
            }
            Err(e) => {
                eprintln!("toolsmith mcp: {e:#}");
                match id {
                    Some(id) => vec![
                        json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": format!("{e:#}")}}),
                    ],
                    None => Vec::new(),
                }
            }
        }
    }

    async fn exchange(&self, message: &Value) -> anyhow::Result<Vec<Value>> {
        let mut token = self.token().await?;
        let mut response = self.post(message, &token).await?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            self.renew(&token).await?;
            token = self.token().await?;
            response = self.post(message, &token).await?;
        }
        if let Some(session) = response.headers().get(SESSION_ID_HEADER).and_then(|v| v.to_str().ok()) {
            *self.session.lock().await = Some(session.to_owned());
        }
        let status = response.status();
        let event_stream = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let body = response.text().await?;
        if status == reqwest::StatusCode::ACCEPTED || body.trim().is_empty() && status.is_success() {
            return Ok(Vec::new());
        }
        let answers: Vec<Value> =
            if event_stream { events(&body) } else { serde_json::from_str::<Value>(&body).ok().into_iter().collect() };
        let answers: Vec<Value> = answers.into_iter().filter(|a| a.get("jsonrpc").is_some()).collect();
        if !answers.is_empty() {
            return Ok(answers);
        }
        // Not a JSON-RPC answer (a refusal of the request guard: 403, 404, 429): the client is owed
        // an error for its request all the same.
        let detail = serde_json::from_str::<Value>(&body).ok().and_then(|b| b["detail"].as_str().map(str::to_owned));
        anyhow::bail!("the server answered {status}: {}", detail.unwrap_or(body))
    }
}

/// A header value as the transport sends it: verbatim when it is plain visible ASCII, else base64
/// in `=?base64?…?=`.
fn header_value(value: &str) -> String {
    use base64::Engine;
    let plain =
        value.bytes().all(|b| (0x20..0x7f).contains(&b)) && value.trim() == value && !value.starts_with("=?base64?");
    if plain {
        value.to_owned()
    } else {
        format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(value))
    }
}

/// The JSON messages of an event stream's `data` fields.
fn events(body: &str) -> Vec<Value> {
    let mut messages = Vec::new();
    let mut data = String::new();
    for line in body.lines().chain(std::iter::once("")) {
        if let Some(rest) = line.strip_prefix("data:") {
            data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
        } else if line.is_empty() && !data.is_empty() {
            if let Ok(message) = serde_json::from_str(&data) {
                messages.push(message);
            }
            data.clear();
        }
    }
    messages
}

/// Runs the bridge until standard input ends and every message read has been answered.
pub async fn run(args: BridgeArgs) -> anyhow::Result<()> {
    let credentials = Credentials::from_env()?;
    let base = args.url.trim_end_matches('/').to_owned();
    let mut query = form_urlencoded::Serializer::new(String::new());
    for tag in &args.tag {
        query.append_pair("tag", tag);
    }
    for pin in &args.version {
        query.append_pair("version", pin);
    }
    let query = query.finish();
    let mut endpoint = format!("{base}/v1/{}/mcp", args.org);
    if !query.is_empty() {
        endpoint = format!("{endpoint}?{query}");
    }
    let bridge = Arc::new(Bridge {
        http: reqwest::Client::builder().build()?,
        base,
        endpoint,
        org: args.org,
        credentials,
        token: Mutex::new(None),
        negotiated: Mutex::new(None),
        session: Mutex::new(None),
    });
    // One writer, so that concurrent answers never interleave within a line.
    let (out, mut answers) = mpsc::unbounded_channel::<Value>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(answer) = answers.recv().await {
            let mut line = answer.to_string();
            line.push('\n');
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut running = tokio::task::JoinSet::new();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let message: Value = match serde_json::from_str(&line) {
            Ok(message) => message,
            Err(e) => {
                let _ = out.send(json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": format!("Parse error: {e}")}}));
                continue;
            }
        };
        let (bridge, out) = (bridge.clone(), out.clone());
        // Requests run concurrently (a long tool call must not hold up a ping); `initialize`
        // runs alone, since what follows it depends on the version it negotiates.
        let alone = message["method"] == "initialize";
        running.spawn(async move {
            for answer in bridge.relay(message).await {
                let _ = out.send(answer);
            }
        });
        if alone {
            while running.join_next().await.is_some() {}
        }
    }
    while running.join_next().await.is_some() {}
    drop(out);
    let _ = writer.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_streams_yield_their_messages() {
        let body = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n: ping\n\ndata: {\"jsonrpc\":\"2.0\",\n";
        assert_eq!(events(body), vec![json!({"jsonrpc": "2.0", "id": 1, "result": {}})]);
    }

    #[test]
    fn header_values_outside_ascii_are_wrapped() {
        assert_eq!(header_value("get_weather"), "get_weather");
        assert_eq!(header_value("caf\u{e9}"), "=?base64?Y2Fmw6k=?=");
        assert_eq!(header_value(" x"), "=?base64?IHg=?=");
    }
}
