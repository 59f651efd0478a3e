//! The test harness: a real server on a loopback port, backed by a fresh SQLite file or a fresh
//! PostgreSQL schema, and a client that checks every response of a compatible endpoint against
//! the official OpenAPI document.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use toolsmith::app::Settings;
use toolsmith::config::{StorageArgs, Switch};
use toolsmith::identity::token::TokenSigner;
use toolsmith::server::{Application, Config};
use toolsmith_domain::{Role, UserId};
use toolsmith_store::secrets::Keyring;
use toolsmith_store::Store;

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one test per backend from an async test body taking a `Backend`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                ($body)($crate::support::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                ($body)($crate::support::Backend::Postgres).await
            }
        }
    };
}

/// The PostgreSQL database tests create their schemas in.
pub fn postgres_url() -> String {
    std::env::var("TOOLSMITH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A user with a token.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub token: String,
}

/// How to start a test server.
#[derive(Clone)]
pub struct Options {
    pub settings: Settings,
    pub rate_limits: Switch,
    pub repo_limits: toolsmith_repo::Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            settings: Settings::default(),
            rate_limits: Switch::Off,
            repo_limits: toolsmith_repo::Limits::default(),
        }
    }
}

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Store,
    pub backend: Backend,
    pub database_url: String,
    pub keyring: Keyring,
    pub token_key: Vec<u8>,
    pub admin: User,
    pub dir: Arc<tempfile::TempDir>,
    server: tokio::task::JoinHandle<()>,
    /// Kept so that the server does not take its closing as a stop request.
    _stop: tokio::sync::watch::Sender<u32>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestApp {
    /// A server with default settings and rate limits off, with organization `acme` and its admin.
    pub async fn spawn(backend: Backend) -> TestApp {
        TestApp::spawn_with(backend, Options::default()).await
    }

    /// A server with the given options.
    pub async fn spawn_with(backend: Backend, options: Options) -> TestApp {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                Some(toolsmith_store::testing::fresh_postgres_schema(&postgres_url()).await.unwrap_or_else(|e| {
                    panic!("PostgreSQL at {} is needed for the postgres tests: {e}", postgres_url())
                }))
            }
        };
        let mut app = TestApp::serve(backend, database_url, dir, options).await;
        let admin_id = toolsmith::bootstrap::create_org_with_admin(&app.store, &app.repos(), &org("acme"), "Acme")
            .await
            .expect("org");
        app.admin = User { id: admin_id.to_string(), token: app.token("acme", admin_id.as_str()) };
        app
    }

    /// A second server process on the same database (as behind a load balancer).
    pub async fn sibling(&self, options: Options) -> TestApp {
        let database_url = (self.backend == Backend::Postgres).then(|| self.database_url.clone());
        let mut app = TestApp::serve(self.backend, database_url, self.dir.clone(), options).await;
        app.admin = self.admin.clone();
        app
    }

    /// Starts a server the way `toolsmith serve` does, through `Application::build`, on a free
    /// port of the loopback interface.
    async fn serve(
        backend: Backend,
        database_url: Option<String>,
        dir: Arc<tempfile::TempDir>,
        options: Options,
    ) -> TestApp {
        let storage = StorageArgs { data_dir: dir.path().to_owned(), database_url };
        let config = Config {
            storage: storage.clone(),
            listen: "127.0.0.1:0".parse().expect("address"),
            metrics_listen: None,
            settings: options.settings,
            rate_limits: options.rate_limits,
            repo_limits: options.repo_limits,
            python: "python3".into(),
            uv: None,
            bootstrap_org: None,
            shutdown_grace: Duration::from_secs(5),
        };
        let application = Application::build(config).await.expect("the server starts");
        let addr = application.address().expect("addr");
        let store = application.state().store().clone();
        let (stop, signals) = tokio::sync::watch::channel(0u32);
        let server = tokio::spawn(async move {
            let _ = application.run(signals).await;
        });
        TestApp {
            base: format!("http://{addr}"),
            client: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client"),
            store,
            backend,
            database_url: storage.url(),
            keyring: toolsmith::keys::load_keyring(dir.path()).expect("keyring"),
            token_key: toolsmith::keys::load_token_key(dir.path()).expect("token key"),
            admin: User { id: String::new(), token: String::new() },
            dir,
            server,
            _stop: stop,
        }
    }

    /// The repositories this server uses.
    pub fn repos(&self) -> toolsmith_repo::RepoStore {
        toolsmith_repo::RepoStore::new(self.dir.path().join("repos"), toolsmith_repo::Limits::default()).expect("repos")
    }

    /// A valid token for a user.
    pub fn token(&self, org: &str, user: &str) -> String {
        TokenSigner::new(self.token_key.clone()).issue(org, user, 3600).0
    }

    /// Creates a user of `org` holding `roles` there.
    pub async fn user(&self, org: &str, roles: &[Role]) -> User {
        let id = UserId::generate();
        self.store.create_user(&self::org(org), &id, "test user").await.expect("user");
        for role in roles {
            self.store.grant_role(&self::org(org), &user_ref(org, id.as_str()), *role).await.expect("grant");
        }
        User { id: id.to_string(), token: self.token(org, id.as_str()) }
    }

    /// Creates another organization and returns its admin.
    pub async fn other_org(&self, org: &str) -> User {
        let id = toolsmith::bootstrap::create_org_with_admin(&self.store, &self.repos(), &self::org(org), org)
            .await
            .expect("org");
        User { id: id.to_string(), token: self.token(org, id.as_str()) }
    }

    /// Starts a request with a bearer token (none when `token` is empty).
    pub fn request(&self, method: Method, path: &str, token: &str) -> Call {
        let mut builder = self.client.request(method, format!("{}{path}", self.base));
        if !token.is_empty() {
            builder = builder.bearer_auth(token);
        }
        Call { builder, operation: None }
    }

    /// Creates a tool as the admin and returns its id.
    pub async fn create_tool(&self, name: &str) -> String {
        let r = self
            .request(Method::POST, "/v1/acme/tool/", &self.admin.token)
            .op("create-tool")
            .json(&serde_json::json!({"name": name, "description": format!("The {name} tool."), "tags": {}}))
            .send()
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["id"].as_str().expect("id").to_owned()
    }

    /// The ToolInstance of a tool, read through the listing.
    pub async fn tool(&self, id: &str) -> Value {
        let r = self
            .request(Method::GET, &format!("/v1/acme/tool/?id={id}"), &self.admin.token)
            .op("get-tools")
            .send()
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["tools"][0].clone()
    }
}

/// A request being built.
pub struct Call {
    builder: reqwest::RequestBuilder,
    operation: Option<&'static str>,
}

/// A response, with its body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `detail` message of an error.
    pub fn detail(&self) -> &str {
        self.body["detail"].as_str().unwrap_or_default()
    }
}

impl Call {
    /// Names the compatible operation, so the response is checked against the contract.
    pub fn op(mut self, operation: &'static str) -> Self {
        self.operation = Some(operation);
        self
    }

    /// Sets a JSON body.
    pub fn json(mut self, body: &Value) -> Self {
        self.builder = self.builder.json(body);
        self
    }

    /// Sets a raw body.
    pub fn body(mut self, body: impl Into<reqwest::Body>) -> Self {
        self.builder = self.builder.header("content-type", "application/json").body(body);
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.builder = self.builder.header(name, value);
        self
    }

    /// Sends the request, checks the response against the contract, returns it.
    pub async fn send(self) -> Resp {
        let response = self.builder.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        let resp = Resp { status, headers, body, text };
        if let Some(op) = self.operation {
            contract().check(op, &resp);
        }
        // The MCP endpoint answers with JSON-RPC errors instead of the envelope.
        let json_rpc = resp.body.get("jsonrpc").is_some();
        if (status >= 400 && status != 404 || status == 404 && !resp.body.is_null()) && !json_rpc {
            assert!(resp.body.get("detail").is_some(), "error without detail: {status} {}", resp.text);
        }
        resp
    }
}

/// The official OpenAPI document of the compatible API.
pub struct Contract {
    doc: Value,
}

/// The structure of the compatible API's OpenAPI document, vendored into the repository by
/// `dev/vendor-contract` (which records the source and its SHA-256 under `x-vendored-from`).
pub fn spec_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/contract/amigo-tool-openapi.json")
}

/// The contract, loaded once.
pub fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| {
        let text = std::fs::read_to_string(spec_path()).expect("read the OpenAPI document");
        Contract { doc: serde_json::from_str(&text).expect("parse the OpenAPI document") }
    })
}

impl Contract {
    /// The operation object with this operationId.
    pub fn operation(&self, id: &str) -> &Value {
        for methods in self.doc["paths"].as_object().expect("paths").values() {
            for op in methods.as_object().expect("methods").values() {
                if op["operationId"] == id {
                    return op;
                }
            }
        }
        panic!("no operation {id} in the contract")
    }

    /// Asserts that `resp` is a documented status of `op` and, where the contract gives a JSON
    /// schema for that status, that the body validates against it.
    pub fn check(&self, op: &str, resp: &Resp) {
        let operation = self.operation(op);
        let status = resp.status.to_string();
        let documented = &operation["responses"][&status];
        // 413 is the one status toolsmith adds (bodies over the size limit); the contract's
        // FastAPI server has no such limit documented.
        if resp.status == 413 {
            return;
        }
        assert!(!documented.is_null(), "{op} answered {status}, which the contract does not document: {}", resp.text);
        // The contract's response descriptions are the messages clients see; toolsmith answers with
        // them verbatim, except for 400s whose contract text lists several reasons at once and
        // where toolsmith says which one happened.
        let lists_reasons = matches!(op, "publish-tool-version" | "test-tool" | "invoke-tool-version");
        // A 503 says which capacity or capability is missing rather than the contract's generic
        // "temporary maintenance".
        let says_why = resp.status == 503 && lists_reasons;
        if resp.status >= 400 && resp.status != 422 && !(resp.status == 400 && lists_reasons) && !says_why {
            let text = documented["description"].as_str().unwrap_or_default();
            assert_eq!(resp.detail(), text, "{op} {status} message differs from the contract");
        }
        let schema = &documented["content"]["application/json"]["schema"];
        if schema.is_null() || schema.as_object().is_some_and(|o| o.is_empty()) {
            return;
        }
        let mut root = serde_json::json!({"components": self.doc["components"].clone()});
        for (k, v) in schema.as_object().expect("schema object") {
            root[k] = v.clone();
        }
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .expect("compile schema");
        let body = without_direct_sources(&resp.body);
        let errors: Vec<String> =
            validator.iter_errors(&body).map(|e| format!("{} at {}", e, e.instance_path)).collect();
        assert!(errors.is_empty(), "{op} {status} does not match the contract: {errors:?}\nbody: {}", resp.text);
    }
}

/// The one documented extension inside a compatible shape: an invocation called through the API
/// (no conversation, no simulation) has the source `{"type": "direct", "user_id", "user_org_id"}`,
/// which the contract's `InvocationSource` cannot express. Such a source is checked for exactly
/// that shape here and replaced by a conforming one, so that the rest of the record is still
/// checked against the contract.
fn without_direct_sources(body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(rows) = body.get_mut("tool_invocations").and_then(Value::as_array_mut) {
        for row in rows {
            let source = &mut row["invocation_source"];
            if source["type"] == "direct" {
                let keys: Vec<&String> = source.as_object().expect("source object").keys().collect();
                assert_eq!(keys, ["type", "user_id", "user_org_id"], "direct source: {source}");
                assert!(source["user_id"].is_string() && source["user_org_id"].is_string(), "direct source: {source}");
                *source = serde_json::json!({
                    "type": "regular-conversation",
                    "user_id": source["user_id"].clone(),
                    "conversation_id": null,
                    "interaction_id": null,
                    "invocation_metadata": {"type": "engage-user", "current_state_machine_and_version": ["direct", 0], "tool_call_round_index": 0}
                });
            }
        }
    }
    body
}

/// An organization id of the tests.
pub fn org(slug: &str) -> toolsmith_domain::OrgId {
    toolsmith_domain::OrgId::parse(slug).expect("organization slug")
}

/// A user of an organization, as the store names one.
pub fn user_ref(org: &str, user_id: &str) -> toolsmith_store::UserRef {
    toolsmith_store::UserRef { org_id: self::org(org), user_id: user_id.parse().expect("user id") }
}
