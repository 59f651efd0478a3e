//! `/v1/{org}/mcp`: the organization's MCP server, spoken over raw HTTP so that every header,
//! status and error code of both protocol revisions is visible; real MCP clients (the Python SDK
//! and fastmcp, over HTTP and through `toolsmith mcp`) drive it in `mcp_clients`.

use reqwest::Method;
use serde_json::{json, Value};
use toolsmith_domain::{Role, ToolName, Version};
use toolsmith_store::{NewTool, NewVersion};

use crate::both_backends;
use crate::examples::push_samples;
use crate::invoke::publish;
use crate::support::{org, user_ref, Backend, Options, Resp, TestApp};

const CURRENT: &str = "2026-07-28";
const PREVIOUS: &str = "2025-11-25";

/// A POST to the MCP endpoint with a bearer token (none when empty) and extra headers.
async fn post(app: &TestApp, path: &str, token: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut call = app
        .request(Method::POST, path, token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (name, value) in headers {
        call = call.header(name, value);
    }
    call.body(body.to_owned()).send().await
}

/// A 2025-11-25 request (after `initialize`): the negotiated version in the header.
async fn legacy(app: &TestApp, token: &str, method: &str, params: Value) -> Resp {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    post(app, "/v1/acme/mcp", token, &[("mcp-protocol-version", PREVIOUS)], &body.to_string()).await
}

/// A 2026-07-28 request: the envelope in `_meta` and the headers that repeat the body.
async fn modern_at(app: &TestApp, path: &str, token: &str, method: &str, mut params: Value) -> Resp {
    let meta = params.as_object_mut().unwrap().entry("_meta").or_insert_with(|| json!({}));
    meta["io.modelcontextprotocol/protocolVersion"] = json!(CURRENT);
    meta["io.modelcontextprotocol/clientCapabilities"] = json!({});
    let name = params["name"].as_str().unwrap_or_default().to_owned();
    let body = json!({"jsonrpc": "2.0", "id": "r-1", "method": method, "params": params});
    let mut headers = vec![("mcp-protocol-version", CURRENT), ("mcp-method", method)];
    if method == "tools/call" {
        headers.push(("mcp-name", name.as_str()));
    }
    post(app, path, token, &headers, &body.to_string()).await
}

async fn modern(app: &TestApp, token: &str, method: &str, params: Value) -> Resp {
    modern_at(app, "/v1/acme/mcp", token, method, params).await
}

fn error_code(r: &Resp) -> i64 {
    r.body["error"]["code"].as_i64().unwrap_or_else(|| panic!("no JSON-RPC error: {} {}", r.status, r.text))
}

fn text_of(r: &Resp) -> &str {
    r.body["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("no text content: {}", r.text))
}

both_backends!(tools_are_listed_and_called_in_both_revisions_and_recorded, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    push_samples(&app).await;
    let echo_text = publish(&app, "no_deps", None).await;
    publish(&app, "raises", None).await;
    publish(&app, "context_echo", None).await;
    let admin = app.admin.token.clone();

    // 2025-11-25: the handshake names the one handshake revision served, and issues no session.
    let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": PREVIOUS, "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}});
    let r = post(&app, "/v1/acme/mcp", &admin, &[], &body.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["result"]["protocolVersion"], PREVIOUS);
    assert_eq!(r.body["result"]["serverInfo"]["name"], "toolsmith");
    assert!(r.body["result"]["capabilities"]["tools"].is_object());
    assert!(r.header("mcp-session-id").is_none(), "stateless: no session");
    let older = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2024-11-05"}});
    let r = post(&app, "/v1/acme/mcp", &admin, &[], &older.to_string()).await;
    assert_eq!(r.body["result"]["protocolVersion"], PREVIOUS, "an older client is offered what the server speaks");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let r = post(&app, "/v1/acme/mcp", &admin, &[("mcp-protocol-version", PREVIOUS)], &initialized.to_string()).await;
    assert_eq!((r.status, r.text.as_str()), (202, ""));
    assert_eq!(legacy(&app, &admin, "ping", json!({})).await.body["result"], json!({}));

    let r = legacy(&app, &admin, "tools/list", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let tools = r.body["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["context_echo", "no_deps", "raises"], "by name");
    assert_eq!(tools[1]["description"], "The no_deps tool.");
    assert_eq!(tools[1]["inputSchema"]["properties"]["text"]["type"], "string");
    // Output schemas come from return annotations: `-> dict` describes an object; `-> str`
    // answers with text alone.
    assert_eq!(tools[0]["outputSchema"]["type"], "object", "{}", r.text);
    assert!(tools[1].get("outputSchema").is_none(), "{}", r.text);
    assert!(r.body["result"].get("nextCursor").is_none());
    assert!(r.body["result"].get("resultType").is_none(), "2025-11-25 results have no resultType");

    // A string result is text; an object is also structured content.
    let r = legacy(&app, &admin, "tools/call", json!({"name": "no_deps", "arguments": {"text": "hello"}})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!((text_of(&r), &r.body["result"]["isError"]), ("hello", &json!(false)));
    assert!(r.body["result"].get("structuredContent").is_none());
    assert_eq!(r.body["result"]["_meta"]["toolsmith/tool_version"], "1.0.0");
    let first_call = r.body["result"]["_meta"]["toolsmith/invocation_id"].as_str().unwrap().to_owned();
    let r = legacy(
        &app,
        &admin,
        "tools/call",
        json!({"name": "context_echo", "arguments": {"note": "n"}, "_meta": {
            "toolsmith/invocation_mode": "conversation-simulation",
            "toolsmith/nonsensitive_user_variables": {"locale": "pt_PT"},
            "toolsmith/sensitive_user_variables": {"member_id": "member-4242"}}}),
    )
    .await;
    let structured = &r.body["result"]["structuredContent"];
    assert_eq!(structured["note"], "n", "{}", r.text);
    assert_eq!(structured["context"]["invocation_mode"], "conversation-simulation");
    assert_eq!(structured["context"]["nonsensitive_user_variables"], json!({"locale": "pt_PT"}));
    assert_eq!(structured["context"]["sensitive_user_variables"], json!({"member_id": "********"}));
    assert!(!r.text.contains("member-4242"), "sensitive values are masked: {}", r.text);
    assert_eq!(serde_json::from_str::<Value>(text_of(&r)).unwrap(), *structured, "the text is the same JSON");

    // The tool's exception, and arguments its schema refuses, are tool errors the model sees.
    let r = legacy(&app, &admin, "tools/call", json!({"name": "raises", "arguments": {"reason": "why"}})).await;
    assert_eq!((r.status, &r.body["result"]["isError"]), (200, &json!(true)), "{}", r.text);
    assert_eq!(text_of(&r), "ValueError: this tool always fails: why");
    let r = legacy(&app, &admin, "tools/call", json!({"name": "no_deps", "arguments": {"text": 5}})).await;
    assert_eq!(r.body["result"]["isError"], true, "{}", r.text);
    assert!(text_of(&r).contains("`arguments.text`") && text_of(&r).contains("string"), "{}", r.text);
    let r = legacy(&app, &admin, "tools/call", json!({"name": "no_deps", "arguments": {}})).await;
    assert!(text_of(&r).contains("\"text\" is a required property"), "{}", r.text);
    // An unknown tool is a protocol error (2025-11-25 answers a method's errors with 200).
    let r = legacy(&app, &admin, "tools/call", json!({"name": "nope", "arguments": {}})).await;
    assert_eq!((r.status, error_code(&r)), (200, -32602));
    assert_eq!(r.body["error"]["message"], "Unknown tool: nope");
    let r = legacy(&app, &admin, "resources/list", json!({})).await;
    assert_eq!((r.status, error_code(&r)), (200, -32601));

    // 2026-07-28: discovery, and every result says it is complete and who answered.
    let r = modern(&app, &admin, "server/discover", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["result"]["supportedVersions"], json!([CURRENT, PREVIOUS]));
    assert_eq!(r.body["result"]["resultType"], "complete");
    assert_eq!(r.body["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "toolsmith");
    let r = modern(&app, &admin, "tools/list", json!({})).await;
    assert_eq!(r.body["result"]["tools"].as_array().unwrap().len(), 3, "{}", r.text);
    assert_eq!((&r.body["result"]["cacheScope"], &r.body["result"]["ttlMs"]), (&json!("private"), &json!(0)));
    assert_eq!(r.body["id"], "r-1");
    let r = modern(&app, &admin, "tools/call", json!({"name": "no_deps", "arguments": {"text": "modern"}})).await;
    assert_eq!((text_of(&r), &r.body["result"]["resultType"]), ("modern", &json!("complete")), "{}", r.text);
    assert!(r.body["result"]["_meta"]["toolsmith/invocation_id"].is_string());
    let r = modern(&app, &admin, "tools/call", json!({"name": "nope"})).await;
    assert_eq!((r.status, error_code(&r)), (400, -32602), "2026-07-28 maps the code to its status");
    for removed in ["initialize", "ping"] {
        let r = modern(&app, &admin, removed, json!({})).await;
        assert_eq!((r.status, error_code(&r)), (404, -32601), "{removed} is gone in 2026-07-28");
    }

    // Every call is recorded as an `mcp` invocation with its caller, found by that type only.
    let path = format!("/v1/acme/tool/invocation?tool_id={echo_text}&invocation_source_type=mcp&limit=50");
    let r = app.request(Method::GET, &path, &admin).send().await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rows = r.body["tool_invocations"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "hello and modern; refused arguments never ran: {}", r.text);
    for row in rows {
        assert_eq!(row["invocation_source"], json!({"type": "mcp", "user_id": app.admin.id, "user_org_id": "acme"}));
        assert_eq!(row["caller"], json!({"org_id": "acme", "user_id": app.admin.id}));
    }
    assert!(rows.iter().any(|row| row["id"] == first_call.as_str()));
    let default =
        app.request(Method::GET, &format!("/v1/acme/tool/invocation?tool_id={echo_text}"), &admin).send().await;
    assert_eq!(default.body["tool_invocations"], json!([]), "toolsmith's own types only when asked for");
    let r = app
        .request(Method::GET, "/v1/acme/tool/invocation/search?query=4242&invocation_source_type=mcp", &admin)
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["tool_invocations"].as_array().unwrap().len(), 0, "sensitive values are never stored");
});

both_backends!(the_transport_refuses_what_either_revision_forbids_without_a_5xx, |backend: Backend| async move {
    let mut options = Options::default();
    options.settings.mcp_allowed_origins = vec!["https://agents.example.com".into()];
    options.settings.max_body_bytes = 64 << 10;
    let app = TestApp::spawn_with(backend, options).await;
    let admin = app.admin.token.clone();
    let ping = json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}).to_string();
    let v = [("mcp-protocol-version", PREVIOUS)];

    // Methods, media types, origins.
    for method in [Method::GET, Method::DELETE] {
        let r = app.request(method.clone(), "/v1/acme/mcp", &admin).send().await;
        assert_eq!((r.status, r.header("allow")), (405, Some("POST")), "{method}");
    }
    let r = app
        .request(Method::POST, "/v1/acme/mcp", &admin)
        .header("content-type", "text/plain")
        .body(ping.clone())
        .send()
        .await;
    assert_eq!(r.status, 415, "{}", r.text);
    let r = app
        .request(Method::POST, "/v1/acme/mcp", &admin)
        .header("content-type", "application/json")
        .header("accept", "text/html")
        .header("mcp-protocol-version", PREVIOUS)
        .body(ping.clone())
        .send()
        .await;
    assert_eq!(r.status, 406, "{}", r.text);
    let r = app
        .request(Method::POST, "/v1/acme/mcp", &admin)
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", PREVIOUS)
        .body(ping.clone())
        .send()
        .await;
    assert_eq!((r.status, r.header("content-type")), (200, Some("text/event-stream")));
    assert_eq!(r.text, "event: message\ndata: {\"id\":9,\"jsonrpc\":\"2.0\",\"result\":{}}\n\n");
    let r = post(&app, "/v1/acme/mcp", &admin, &[v[0], ("origin", "https://evil.example")], &ping).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = post(&app, "/v1/acme/mcp", &admin, &[v[0], ("origin", "https://Agents.example.com/")], &ping).await;
    assert_eq!(r.status, 200, "an allowed origin passes: {}", r.text);
    let r = post(&app, "/v1/acme/mcp", "", &[("origin", "https://evil.example")], &ping).await;
    assert_eq!(r.status, 403, "the origin is checked before anything else");

    // Malformed messages: clear JSON-RPC errors with 400, never 5xx.
    let huge_batch = format!("[{}]", vec![ping.as_str(); 1000].join(","));
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    for (body, code) in [
        ("{", -32700),
        ("", -32700),
        (deep.as_str(), -32700),
        (huge_batch.as_str(), -32600),
        ("[]", -32600),
        ("\"ping\"", -32600),
        (r#"{"jsonrpc":"2.0","id":1}"#, -32600),
        (r#"{"jsonrpc":"2.0","id":1,"result":{}}"#, -32600),
        (r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, -32600),
        (r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#, -32600),
        (r#"{"id":1,"method":"ping"}"#, -32600),
        (r#"{"jsonrpc":"2.0","id":1,"method":{"a":1}}"#, -32600),
        (r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[1,2]}"#, -32602),
        (r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":7}}"#, -32602),
        (r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"bm90LWEtY3Vyc29y"}}"#, -32602),
        (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#, -32602),
        (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":"a"}}"#, -32602),
        (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":[]}}"#, -32602),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"toolsmith/invocation_mode":"loud"}}}"#,
            -32602,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"toolsmith/sensitive_user_variables":{"Bad Key":1}}}}"#,
            -32602,
        ),
        (r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#, -32602),
    ] {
        let r = post(&app, "/v1/acme/mcp", &admin, &v, body).await;
        assert!(r.status == 400 || r.status == 200, "{body:.60}: {} {}", r.status, r.text);
        assert_eq!(error_code(&r), code, "{body:.60}: {}", r.text);
        assert_eq!(r.body["jsonrpc"], "2.0");
    }
    let r = post(&app, "/v1/acme/mcp", &admin, &v, &" ".repeat(70 << 10)).await;
    assert_eq!(r.status, 413, "{}", r.text);

    // The URL's narrowing is checked whatever the message.
    for query in
        ["tag=team", "version=no_deps", "version=no_deps:banana", "tags=a:b", "version=x:1.0.0&version=x:2.0.0"]
    {
        let r = post(&app, &format!("/v1/acme/mcp?{query}"), &admin, &v, &ping).await;
        assert_eq!((r.status, error_code(&r)), (400, -32602), "{query}: {}", r.text);
        assert_eq!(r.body["id"], 9, "the answer names the request");
    }

    // 2025-11-25 needs the negotiated version after initialize; an unknown one is named.
    let r = post(&app, "/v1/acme/mcp", &admin, &[], &ping).await;
    assert_eq!((r.status, error_code(&r)), (400, -32600), "{}", r.text);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("MCP-Protocol-Version"));
    let r = post(&app, "/v1/acme/mcp", &admin, &[("mcp-protocol-version", "2024-11-05")], &ping).await;
    assert_eq!((r.status, error_code(&r)), (400, -32022));
    assert_eq!(r.body["error"]["data"], json!({"supported": [CURRENT, PREVIOUS], "requested": "2024-11-05"}));
    let r = post(&app, "/v1/acme/mcp", &admin, &[v[0], ("mcp-method", "tools/list")], &ping).await;
    assert_eq!((r.status, error_code(&r)), (400, -32020), "a routing header that contradicts the body");

    // 2026-07-28: the envelope, and headers that repeat the body exactly.
    let envelope =
        json!({"io.modelcontextprotocol/protocolVersion": CURRENT, "io.modelcontextprotocol/clientCapabilities": {}});
    let call = |meta: Value| {
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "no_deps", "arguments": {"text": "x"}, "_meta": meta}})
            .to_string()
    };
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"_meta": envelope}}).to_string();
    let headers = |method: &'static str| vec![("mcp-protocol-version", CURRENT), ("mcp-method", method)];
    let cases: Vec<Refusal> = vec![
        (headers("tools/list"), json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}).to_string(), 400, -32602),
        (
            headers("tools/list"),
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": CURRENT}}})
                .to_string(),
            400,
            -32602,
        ),
        (vec![("mcp-method", "tools/list")], list.clone(), 400, -32020),
        (vec![("mcp-protocol-version", CURRENT)], list.clone(), 400, -32020),
        (headers("tools/call"), list.clone(), 400, -32020),
        (vec![("mcp-protocol-version", PREVIOUS), ("mcp-method", "tools/list")], list.clone(), 400, -32020),
        (
            vec![("mcp-protocol-version", CURRENT), ("mcp-protocol-version", CURRENT), ("mcp-method", "tools/list")],
            list.clone(),
            400,
            -32020,
        ),
        (headers("tools/call"), call(envelope.clone()), 400, -32020),
        ([headers("tools/call"), vec![("mcp-name", "raises")]].concat(), call(envelope.clone()), 400, -32020),
        // The base64 form of Mcp-Name carries the name through (no tool exists here: -32602).
        (
            [headers("tools/call"), vec![("mcp-name", "=?base64?bm9fZGVwcw==?=")]].concat(),
            call(envelope.clone()),
            400,
            -32602,
        ),
        (
            vec![("mcp-protocol-version", "2099-01-01"), ("mcp-method", "tools/list")],
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"_meta": {
                "io.modelcontextprotocol/protocolVersion": "2099-01-01", "io.modelcontextprotocol/clientCapabilities": {}}}})
            .to_string(),
            400,
            -32022,
        ),
        (headers("resources/list"), json!({"jsonrpc": "2.0", "id": 3, "method": "resources/list", "params": {"_meta": envelope}}).to_string(), 404, -32601),
    ];
    for (headers, body, status, code) in cases {
        let r = post(&app, "/v1/acme/mcp", &admin, &headers, &body).await;
        assert_eq!((r.status, error_code(&r)), (status, code), "{headers:?} {body}: {}", r.text);
    }
    let notification =
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}).to_string();
    let r = post(&app, "/v1/acme/mcp", &admin, &[("mcp-protocol-version", CURRENT)], &notification).await;
    assert_eq!(r.status, 202, "notifications are acknowledged and dropped");
    let r = post(&app, "/v1/acme/mcp", &admin, &[("mcp-protocol-version", "1999-01-01")], &notification).await;
    assert_eq!((r.status, error_code(&r)), (400, -32022));
});

both_backends!(credentials_organizations_and_permissions_are_the_apis, |backend: Backend| async move {
    let app =
        TestApp::spawn_with(backend, Options { rate_limits: toolsmith::config::Switch::On, ..Options::default() })
            .await;
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string();
    let call =
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "anything", "arguments": {}}})
            .to_string();
    let v = [("mcp-protocol-version", PREVIOUS)];

    // No credentials, or bad ones: 401 with the Bearer challenge MCP clients look for.
    let r = post(&app, "/v1/acme/mcp", "", &v, &list).await;
    assert_eq!((r.status, r.header("www-authenticate")), (401, Some("Bearer realm=\"toolsmith\"")));
    let r = post(&app, "/v1/acme/mcp", "not.a.token", &v, &list).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"toolsmith\", error=\"invalid_token\""));
    let expired =
        toolsmith::identity::token::TokenSigner::new(app.token_key.clone()).issue("acme", &app.admin.id, -5).0;
    assert_eq!(post(&app, "/v1/acme/mcp", &expired, &v, &list).await.status, 401, "an expired token");

    // An API key's headers stand in for a token, on this endpoint only.
    let (key_id, secret) = toolsmith::bootstrap::create_api_key(&app.store, &org("acme"), "mcp", None).await.unwrap();
    let key =
        [("x-api-key", secret.as_str()), ("x-api-key-id", key_id.as_str()), ("x-user-id", app.admin.id.as_str()), v[0]];
    let r = post(&app, "/v1/acme/mcp", "", &key, &list).await;
    assert_eq!((r.status, &r.body["result"]["tools"]), (200, &json!([])), "{}", r.text);
    assert_eq!(r.header("x-ratelimit-limit"), Some("120"), "the endpoint's own limit");
    let wrong = [("x-api-key", "tsk_wrong"), key[1], key[2], v[0]];
    let r = post(&app, "/v1/acme/mcp", "", &wrong, &list).await;
    assert_eq!(
        (r.status, r.header("www-authenticate")),
        (401, Some("Bearer realm=\"toolsmith\", error=\"invalid_token\""))
    );
    let stranger = [key[0], key[1], ("x-user-id", "0123456789abcdef01234567"), v[0]];
    assert_eq!(
        post(&app, "/v1/acme/mcp", "", &stranger, &list).await.status,
        401,
        "the key's organization's users only"
    );
    assert!(app.store.revoke_api_key(&org("acme"), &key_id).await.unwrap());
    assert_eq!(post(&app, "/v1/acme/mcp", "", &key, &list).await.status, 401, "a revoked key");
    let r = app
        .request(Method::GET, "/v1/acme/tool/", "")
        .header("x-api-key", &secret)
        .header("x-api-key-id", key_id.as_str())
        .header("x-user-id", &app.admin.id)
        .send()
        .await;
    assert_eq!(r.status, 401, "the other endpoints still want a token");

    // A foreign organization is not found, exactly as elsewhere; so is one that does not exist.
    let globex = app.other_org("globex").await;
    let r = post(&app, "/v1/acme/mcp", &globex.token, &v, &list).await;
    assert_eq!((r.status, r.detail()), (404, "Specified organization is not found."));
    let r = post(&app, "/v1/nowhere/mcp", &app.admin.token, &v, &list).await;
    assert_eq!(r.status, 404);
    let globex_key = toolsmith::bootstrap::create_api_key(&app.store, &org("globex"), "k", None).await.unwrap();
    let foreign_key = [
        ("x-api-key", globex_key.1.as_str()),
        ("x-api-key-id", globex_key.0.as_str()),
        ("x-user-id", globex.id.as_str()),
        v[0],
    ];
    assert_eq!(
        post(&app, "/v1/acme/mcp", "", &foreign_key, &list).await.status,
        401,
        "a key opens its own organization only"
    );
    assert_eq!(post(&app, "/v1/globex/mcp", "", &foreign_key, &list).await.status, 200);

    // A viewer lists but may not call; someone who may not read tools gets nothing.
    let viewer = app.user("acme", &[Role::Viewer]).await;
    assert_eq!(post(&app, "/v1/acme/mcp", &viewer.token, &v, &list).await.status, 200);
    let r = post(&app, "/v1/acme/mcp", &viewer.token, &v, &call).await;
    assert_eq!((r.status, error_code(&r), &r.body["id"]), (403, -32003, &json!(2)), "{}", r.text);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"toolsmith\", error=\"insufficient_scope\""));
    let reader = app.user("acme", &[Role::RepoReader]).await;
    let r = post(&app, "/v1/acme/mcp", &reader.token, &v, &list).await;
    assert_eq!((r.status, r.detail()), (403, "Missing required permissions."));
    let invoker = app.user("acme", &[Role::Invoker]).await;
    let r = post(&app, "/v1/acme/mcp", &invoker.token, &v, &call).await;
    assert_eq!((r.status, error_code(&r)), (200, -32602), "an invoker may call; the tool does not exist");

    // The limit is per user and counts every message.
    for _ in 0..119 {
        post(&app, "/v1/acme/mcp", &invoker.token, &v, &list).await;
    }
    let r = post(&app, "/v1/acme/mcp", &invoker.token, &v, &list).await;
    assert_eq!((r.status, r.header("x-ratelimit-remaining")), (429, Some("0")), "{}", r.text);
    assert!(r.header("retry-after").is_some());
    assert_eq!(post(&app, "/v1/acme/mcp", &viewer.token, &v, &list).await.status, 200, "another user's budget");
});

/// Headers, a body, and the status and JSON-RPC code they must get.
type Refusal = (Vec<(&'static str, &'static str)>, String, u16, i64);

/// Creates a live tool with versions recorded directly (listing reads only what the store holds;
/// nothing here is called), each version's schema naming its number.
async fn catalog_tool(app: &TestApp, name: &str, tags: &[(&str, &str)], versions: &[&str]) -> String {
    let admin = user_ref("acme", &app.admin.id);
    let tool = app
        .store
        .create_tool(NewTool {
            org_id: org("acme"),
            name: ToolName::parse(name).unwrap(),
            description: format!("{name} does things."),
            tags: tags
                .iter()
                .map(|(k, v)| toolsmith_domain::Tag { key: (*k).into(), value: Some((*v).into()) })
                .collect(),
            creator: admin.clone(),
        })
        .await
        .unwrap();
    for version in versions {
        app.store
            .insert_version(NewVersion {
                org_id: org("acme"),
                tool_id: tool.id.clone(),
                version: Version::parse(version).unwrap(),
                required_envvars: vec![],
                required_secret_envvars: vec![],
                input_schema: json!({"type": "object", "description": format!("version {version}"), "properties": {}}),
                takes_context: false,
                entrypoint: "t:run".into(),
                tool_commit_hash: "0".repeat(40),
                scaffold_hash: "0".into(),
                project_directory: name.into(),
                content_digest: "0".into(),
                environment_key: "0".into(),
                build_id: toolsmith_domain::BuildId::generate(),
                output_schema: None,
                creator: admin.clone(),
            })
            .await
            .unwrap();
    }
    tool.id.to_string()
}

both_backends!(listings_page_by_cursor_and_narrow_by_tag_and_pin, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let admin = app.admin.token.clone();
    for i in 0..205 {
        catalog_tool(&app, &format!("tool_{i:03}"), &[("team", if i % 2 == 0 { "even" } else { "odd" })], &["1.0.0"])
            .await;
    }
    let pinned = catalog_tool(&app, "weather", &[("team", "core")], &["1.0.0", "1.2.0", "2.0.0"]).await;
    catalog_tool(&app, "a_tool_without_versions", &[], &[]).await;
    let gone = catalog_tool(&app, "deprecated_tool", &[], &["1.0.0"]).await;
    let user = user_ref("acme", &app.admin.id);
    app.store.deprecate_tool(&org("acme"), &gone.parse().unwrap(), &user).await.unwrap();

    // Pages of 100 by name, with opaque cursors, until none is given.
    let mut names = Vec::new();
    let mut cursor = Value::Null;
    let mut pages = 0;
    loop {
        let r = legacy(&app, &admin, "tools/list", json!({"cursor": cursor})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let tools = r.body["result"]["tools"].as_array().unwrap();
        names.extend(tools.iter().map(|t| t["name"].as_str().unwrap().to_owned()));
        pages += 1;
        match r.body["result"].get("nextCursor") {
            Some(next) => {
                assert_eq!(tools.len(), 100);
                assert!(!next.as_str().unwrap().contains("tool_"), "opaque: {next}");
                cursor = next.clone();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut expected: Vec<String> = (0..205).map(|i| format!("tool_{i:03}")).collect();
    expected.push("weather".into());
    assert_eq!(names, expected, "every live tool with a live version, once, by name");

    // The newest live version is offered; a pin offers the highest live one it matches.
    let schema_of = |r: &Resp, name: &str| {
        let tools = r.body["result"]["tools"].as_array().unwrap().clone();
        tools.into_iter().find(|t| t["name"] == name).map(|t| t["inputSchema"]["description"].clone())
    };
    let r = modern_at(&app, "/v1/acme/mcp?tag=team:core", &admin, "tools/list", json!({})).await;
    assert_eq!(r.body["result"]["tools"].as_array().unwrap().len(), 1, "{}", r.text);
    assert_eq!(schema_of(&r, "weather"), Some(json!("version 2.0.0")));
    let r = modern_at(&app, "/v1/acme/mcp?tag=team:core&version=weather:%3C2", &admin, "tools/list", json!({})).await;
    assert_eq!(schema_of(&r, "weather"), Some(json!("version 1.2.0")), "{}", r.text);
    let r = modern_at(&app, "/v1/acme/mcp?tag=team:core&version=weather:1.0.0", &admin, "tools/list", json!({})).await;
    assert_eq!(schema_of(&r, "weather"), Some(json!("version 1.0.0")));
    let r = modern_at(&app, "/v1/acme/mcp?version=weather:%3E%3D3", &admin, "tools/list", json!({})).await;
    assert_eq!(schema_of(&r, "weather"), None, "a pin that matches nothing hides the tool");
    let pinned_id = pinned.parse().unwrap();
    let versions = app.store.versions_of(&org("acme"), &pinned_id).await.unwrap();
    let v2: Vec<_> = versions.iter().filter(|v| v.version.major == 2).map(|v| v.id.clone()).collect();
    app.store.deprecate_versions(&org("acme"), &pinned_id, &v2, &user).await.unwrap();
    let r = modern_at(&app, "/v1/acme/mcp?tag=team:core", &admin, "tools/list", json!({})).await;
    assert_eq!(schema_of(&r, "weather"), Some(json!("version 1.2.0")), "deprecated versions are never offered");

    // Tags narrow the pages too, and a call outside the narrowing is an unknown tool.
    let r = legacy(&app, &admin, "tools/list", json!({})).await;
    assert_eq!(r.body["result"]["tools"].as_array().unwrap().len(), 100);
    let path = "/v1/acme/mcp?tag=team:odd";
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string();
    let r = post(&app, path, &admin, &[("mcp-protocol-version", PREVIOUS)], &body).await;
    let tools = r.body["result"]["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 100);
    assert!(tools.iter().all(|t| t["name"].as_str().unwrap() < "tool_200" && t["name"] != "tool_000"));
    let body =
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "weather", "arguments": {}}})
            .to_string();
    let r = post(&app, path, &admin, &[("mcp-protocol-version", PREVIOUS)], &body).await;
    assert_eq!(r.body["error"]["message"], "Unknown tool: weather", "{}", r.text);
    let r = legacy(&app, &admin, "tools/call", json!({"name": "deprecated_tool"})).await;
    assert_eq!(r.body["error"]["message"], "Unknown tool: deprecated_tool");
});

/// The interpreter of the virtual environment `dev/test` makes under `target/`, which holds the
/// MCP clients at the versions `tests/mcp/requirements.txt` pins.
fn clients_python() -> std::path::PathBuf {
    let python = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/mcp-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing; dev/test creates it, or: python3 -m venv target/mcp-venv && \
         target/mcp-venv/bin/pip install -r crates/toolsmith/tests/mcp/requirements.txt",
        python.display()
    );
    python
}

both_backends!(real_mcp_clients_list_and_call_over_http_and_stdio, |backend: Backend| async move {
    let python = clients_python();
    let mut options = Options::default();
    options.settings.runtime.network = toolsmith_runtime::Network::Off;
    options.settings.runtime.limits.timeout = std::time::Duration::from_secs(2);
    let app = TestApp::spawn_with(backend, options).await;
    push_samples(&app).await;
    let no_deps = publish(&app, "no_deps", None).await;
    let again = app
        .request(Method::POST, &format!("/v1/acme/tool/{no_deps}/version"), &app.admin.token)
        .json(&json!({"project_path": "examples/tools/no_deps", "bump_type": "major"}))
        .send()
        .await;
    assert_eq!(again.status, 201, "{}", again.text);
    let tagged = app
        .request(Method::POST, &format!("/v1/acme/tool/{no_deps}"), &app.admin.token)
        .json(&json!({"tags": {"team": "core"}}))
        .send()
        .await;
    assert_eq!(tagged.status, 204, "{}", tagged.text);
    publish(&app, "context_echo", None).await;
    publish(&app, "raises", None).await;
    publish(
        &app,
        "hostile",
        Some(json!({"inserts": [{"name": "API_TOKEN", "value": "tok-0042-secret", "is_secret": true}]})),
    )
    .await;
    let viewer = app.user("acme", &[Role::Viewer]).await;
    let globex = app.other_org("globex").await;
    let key_user = app.user("acme", &[Role::Invoker]).await;
    let (key_id, secret) =
        toolsmith::bootstrap::create_api_key(&app.store, &org("acme"), "bridge", None).await.unwrap();

    let out = tokio::process::Command::new(&python)
        .args(["-m", "unittest", "-v", "test_mcp_clients"])
        .current_dir(std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mcp"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("TOOLSMITH_URL", &app.base)
        .env("TOOLSMITH_ORG", "acme")
        .env("TOOLSMITH_ADMIN_TOKEN", &app.admin.token)
        .env("TOOLSMITH_ADMIN_ID", &app.admin.id)
        .env("TOOLSMITH_VIEWER_TOKEN", &viewer.token)
        .env("TOOLSMITH_FOREIGN_TOKEN", &globex.token)
        .env("TOOLSMITH_BIN", env!("CARGO_BIN_EXE_toolsmith"))
        .env("TOOLSMITH_API_KEY", &secret)
        .env("TOOLSMITH_API_KEY_ID", key_id.as_str())
        .env("TOOLSMITH_USER_ID", &key_user.id)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run the MCP clients");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the MCP clients failed:\n{report}");
    assert!(report.contains("Ran 6 tests") && report.contains("\nOK"), "every client test ran:\n{report}");

    // Every call the clients made is an `mcp` invocation with its caller: the token's user over
    // HTTP, the API key's user through the bridge; the viewer's refused call left none.
    let r = app
        .request(Method::GET, "/v1/acme/tool/invocation?invocation_source_type=mcp&limit=100", &app.admin.token)
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rows = r.body["tool_invocations"].as_array().unwrap();
    let outputs_of = |user: &str| -> Vec<String> {
        rows.iter()
            .filter(|row| row["caller"]["user_id"] == user && row["invocation_source"]["user_id"] == user)
            .filter_map(|row| row["invocation_status"]["output"].as_str().map(str::to_owned))
            .collect()
    };
    let admin = outputs_of(&app.admin.id);
    for output in ["hello 2026-07-28", "hello 2025-11-25", "pinned", "fast"] {
        assert!(admin.iter().any(|o| o == output), "{output} in {admin:?}");
    }
    let bridged = outputs_of(&key_user.id);
    for output in ["stdio 2026-07-28", "stdio 2025-11-25"] {
        assert!(bridged.iter().any(|o| o == output), "{output} in {bridged:?}");
    }
    assert!(outputs_of(&viewer.id).is_empty());
    assert!(rows.iter().all(|row| row["invocation_source"]["type"] == "mcp"));
    assert!(!r.text.contains("member-4242"), "sensitive values are never stored");
    assert!(
        rows.iter().any(|row| row["invocation_status"]["exception_type"] == "TimeoutError"),
        "the timed-out call is recorded as one"
    );
});
