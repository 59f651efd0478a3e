//! What the tests that run `toolsmith` as separate OS processes share: starting and stopping
//! servers, a fresh PostgreSQL database per test, and the API through curl and git, as an
//! operator and a client would use them.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_toolsmith");

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs a shell script and returns its stdout; fails the test when it fails.
pub fn sh(script: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// One `toolsmith serve` process. Its stdout is collected by a thread (so that a server that
/// prints nothing never blocks a reader); its log goes to a file the test can show on failure.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub stdout: Arc<Mutex<String>>,
    pub log: PathBuf,
    _logs: Arc<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `toolsmith serve` on a fresh port with `--data-dir data` and `args`.
    pub fn start(data: &Path, args: &[&str]) -> Server {
        Server::start_on(data, free_port(), args)
    }

    /// Starts `toolsmith serve` on `port`.
    pub fn start_on(data: &Path, port: u16, args: &[&str]) -> Server {
        let logs = Arc::new(tempfile::tempdir().unwrap());
        let log = logs.path().join("server.log");
        let mut child = Command::new(BIN)
            .args(["serve", "--data-dir"])
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .env("RUST_LOG", "info,sqlx=warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(String::new()));
        let reader = BufReader::new(child.stdout.take().unwrap());
        let sink = stdout.clone();
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                let mut out = sink.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        });
        Server { child, port, stdout, log, _logs: logs }
    }

    /// The base URL.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The API base of organization `default`.
    pub fn api(&self) -> String {
        format!("{}/v1/default", self.base())
    }

    /// What the server logged lately (for failure messages).
    pub fn logged(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut start = text.len().saturating_sub(4000);
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        text[start..].to_owned()
    }

    /// Waits until `GET /healthz` answers 200.
    pub fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if status_of(&format!("curl -s -o /dev/null -w '%{{http_code}}' {}/healthz", self.base())) == 200 {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited with {status} before it was healthy:\n{}", self.logged());
            }
            assert!(Instant::now() < deadline, "the server did not become healthy:\n{}", self.logged());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `limit` for the process to exit and returns its status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends `signal` (`TERM`, `INT`, `KILL`) to the process alone.
    pub fn signal(&self, signal: &str) {
        sh(&format!("kill -{signal} {}", self.child.id()));
    }
}

/// Waits until one of `servers` has printed the first-start message and returns it.
pub fn welcome(servers: &[&Server]) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for server in servers {
            let out = server.stdout.lock().unwrap().clone();
            if out.contains("x-user-id") {
                return out;
            }
        }
        assert!(Instant::now() < deadline, "no server printed the first-start message");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Signs in with the command the first start printed, against the server at `port` (any node
/// of the installation); returns the authorization header.
pub fn sign_in(printed: &str, port: u16) -> String {
    let start = printed.find("curl -s").expect("a sign-in command is printed");
    let command: String = printed[start..].lines().take(2).collect::<Vec<_>>().join("\n");
    let command = command.replace(&printed_port(printed), &port.to_string());
    let signed: Value = serde_json::from_str(&sh(&command)).unwrap();
    format!("Authorization: Bearer {}", signed["id_token"].as_str().expect("a token"))
}

fn printed_port(printed: &str) -> String {
    let at = printed.find("http://127.0.0.1:").unwrap() + "http://127.0.0.1:".len();
    printed[at..].chars().take_while(char::is_ascii_digit).collect()
}

/// The HTTP status a curl command printed with `-w '%{http_code}'` (0 when it could not
/// connect).
pub fn status_of(script: &str) -> u16 {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

/// Sends a request; returns the status and the body parsed as JSON (`Null` when it is not).
pub fn request(method: &str, url: &str, auth: &str, body: Option<&Value>) -> (u16, Value) {
    let (status, text) = request_text(method, url, auth, body);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Sends a request; returns the status and the body as text.
pub fn request_text(method: &str, url: &str, auth: &str, body: Option<&Value>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-m", "300", "-w", "\n%{http_code}", "-X", method, url]);
    if !auth.is_empty() {
        cmd.args(["-H", auth]);
    }
    if let Some(body) = body {
        cmd.args(["-H", "content-type: application/json", "--data-binary", &body.to_string()]);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// Creates a tool and returns its id.
pub fn create_tool(api: &str, auth: &str, name: &str) -> String {
    let (status, body) = request(
        "POST",
        &format!("{api}/tool/"),
        auth,
        Some(&serde_json::json!({"name": name, "description": "d", "tags": {}})),
    );
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// Sets env vars of a tool: `(name, value, secret)`.
pub fn set_envvars(api: &str, auth: &str, tool: &str, vars: &[(&str, &str, bool)]) {
    let inserts: Vec<Value> = vars
        .iter()
        .map(|(name, value, secret)| serde_json::json!({"name": name, "value": value, "is_secret": secret}))
        .collect();
    let (status, body) =
        request("POST", &format!("{api}/tool/{tool}/envvar"), auth, Some(&serde_json::json!({"inserts": inserts})));
    assert_eq!(status, 204, "{body}");
}

/// Changes the values of existing env vars of a tool: `(name, value)`.
pub fn update_envvars(api: &str, auth: &str, tool: &str, vars: &[(&str, &str)]) {
    let updates: Vec<Value> =
        vars.iter().map(|(name, value)| serde_json::json!({"name": name, "value": value})).collect();
    let (status, body) =
        request("POST", &format!("{api}/tool/{tool}/envvar"), auth, Some(&serde_json::json!({"updates": updates})));
    assert_eq!(status, 204, "{body}");
}

/// Publishes the project at `path` as a new major version; returns the status and the body.
pub fn publish(api: &str, auth: &str, tool: &str, path: &str) -> (u16, Value) {
    request(
        "POST",
        &format!("{api}/tool/{tool}/version"),
        auth,
        Some(&serde_json::json!({"project_path": path, "bump_type": "major"})),
    )
}

/// Invokes `version` of a tool with one input; returns the status and the body.
pub fn invoke(api: &str, auth: &str, tool: &str, version: &str, parameters: Value) -> (u16, Value) {
    request(
        "POST",
        &format!("{api}/tool/{tool}/version/{version}/invoke"),
        auth,
        Some(&serde_json::json!({"inputs": [{"input_parameters": parameters, "invocation_mode": "regular"}]})),
    )
}

/// The output of the first result of an invoke answer.
pub fn output(answer: &Value) -> String {
    answer["invocation_results"][0]["output"].as_str().unwrap_or_default().to_owned()
}

/// Every invocation of a tool made directly through the API (the listing shows the contract's
/// conversation kinds unless asked for `direct` ones), page by page.
pub fn all_invocations(api: &str, auth: &str, tool: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut token = String::new();
    loop {
        let (status, page) = request(
            "GET",
            &format!("{api}/tool/invocation?tool_id={tool}&invocation_source_type=direct&limit=100{token}"),
            auth,
            None,
        );
        assert_eq!(status, 200, "{page}");
        rows.extend(page["tool_invocations"].as_array().unwrap().iter().cloned());
        match page["continuation_token"].as_i64() {
            Some(next) => token = format!("&continuation_token={next}"),
            None => return rows,
        }
    }
}

/// The `name` input of every listed invocation.
pub fn invoked_names(rows: &[Value]) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for row in rows {
        let inputs = &row["inputs"];
        let name = inputs["name"].as_str().or_else(|| inputs["input_parameters"]["name"].as_str());
        if let Some(name) = name {
            names.insert(name.to_owned());
        }
    }
    names
}

/// A tool project that needs nothing from a package index: it greets with `GREETING`, shows the
/// secret `API_TOKEN` (which the server masks) with its length, and first sleeps `seconds`.
pub const PROBE: &[(&str, &str)] = &[
    (
        "pyproject.toml",
        "[project]\nname = \"probe\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\ndependencies = []\n\n\
         [tool.toolsmith]\nentrypoint = \"probe.tool:run\"\nenvvars = [\"GREETING\"]\nsecret_envvars = [\"API_TOKEN\"]\n",
    ),
    ("probe/__init__.py", ""),
    (
        "probe/tool.py",
        "import os\nimport time\n\n\ndef run(name: str, seconds: float = 0.0) -> str:\n    \
         \"\"\"Greets after waiting.\n\n    Args:\n        name: Who to greet.\n        seconds: How long to wait first.\n    \"\"\"\n    \
         time.sleep(seconds)\n    token = os.environ.get(\"API_TOKEN\", \"\")\n    \
         return f\"{os.environ.get('GREETING', '-')} {name}; token {token} ({len(token)})\"\n",
    ),
];

/// A project whose build never finishes: importing its entrypoint (to derive the input schema)
/// sleeps for ten minutes.
pub const STUCK: &[(&str, &str)] = &[
    (
        "pyproject.toml",
        "[project]\nname = \"stuck\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\ndependencies = []\n\n\
         [tool.toolsmith]\nentrypoint = \"stuck.tool:run\"\n",
    ),
    ("stuck/__init__.py", ""),
    ("stuck/tool.py", "import time\n\ntime.sleep(600)\n\n\ndef run() -> str:\n    return 'never'\n"),
];

/// A project whose build takes a few seconds: importing its entrypoint (to derive the input
/// schema) sleeps for three.
pub const SLOW_BUILD: &[(&str, &str)] = &[
    (
        "pyproject.toml",
        "[project]\nname = \"slow\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\ndependencies = []\n\n\
         [tool.toolsmith]\nentrypoint = \"slow.tool:run\"\n",
    ),
    ("slow/__init__.py", ""),
    ("slow/tool.py", "import time\n\ntime.sleep(3)\n\n\ndef run() -> str:\n    return 'built slowly'\n"),
];

/// A working copy of the organization's repository, cloned through one server.
pub struct Checkout {
    pub dir: tempfile::TempDir,
    auth: String,
}

impl Checkout {
    /// Clones the repository through `api`.
    pub fn clone(api: &str, auth: &str) -> Checkout {
        let dir = tempfile::tempdir().unwrap();
        let checkout = Checkout { dir, auth: auth.to_owned() };
        checkout.git(&format!("clone --quiet {api}/tool/git repo"));
        checkout
    }

    /// Runs git in the working copy's parent directory with the credentials.
    pub fn git(&self, args: &str) -> String {
        sh(&format!(
            "cd {} && git -c user.name=T -c user.email=t@example.invalid -c 'http.extraHeader={}' {args}",
            self.dir.path().display(),
            self.auth
        ))
    }

    /// Writes `files` under `project` and commits them with `message`.
    pub fn commit(&self, project: &str, files: &[(&str, &str)], message: &str) {
        let root = self.dir.path().join("repo").join(project);
        for (path, content) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        self.git(&format!("-C repo add -A && git -C repo -c user.name=T -c user.email=t@example.invalid commit --quiet -m '{message}'"));
    }

    /// Pushes `main` to `api` (any node).
    pub fn push_to(&self, api: &str) {
        self.git(&format!("-C repo push --quiet {api}/tool/git main"));
    }
}

/// A PostgreSQL database of one test's own, dropped at the end. The server it is made in comes
/// from `TOOLSMITH_TEST_POSTGRES_URL` (as for the other PostgreSQL tests).
pub struct Database {
    admin_url: String,
    name: String,
    /// The URL of the new database.
    pub url: String,
}

impl Database {
    /// Creates an empty database.
    pub fn fresh() -> Database {
        let base = std::env::var("TOOLSMITH_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/toolsmith_test".into());
        let (without_query, query) = match base.split_once('?') {
            Some((url, query)) => (url.to_owned(), format!("?{query}")),
            None => (base.clone(), String::new()),
        };
        let (server, _) = without_query.rsplit_once('/').expect("a database URL");
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("toolsmith_mn_{}_{nanos:09}", std::process::id());
        let admin_url = format!("{server}/postgres{query}");
        let out =
            Command::new("psql").arg(&admin_url).args(["-qAt", "-c", &format!("CREATE DATABASE {name}")]).output();
        match out {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!("PostgreSQL at {server} is needed: {}", String::from_utf8_lossy(&out.stderr)),
            Err(err) => panic!("psql is needed to make a database for the test: {err}"),
        }
        Database { admin_url, url: format!("{server}/{name}{query}"), name }
    }

    /// Runs one query and returns its rows, one per line, columns separated by `|`.
    pub fn query(&self, sql: &str) -> String {
        let out = Command::new("psql").arg(&self.url).args(["-qAt", "-c", sql]).output().unwrap();
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Drops the database now, disconnecting every server using it.
    pub fn drop_now(&self) {
        let _ = Command::new("psql")
            .arg(&self.admin_url)
            .args(["-qAt", "-c", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)])
            .output();
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        self.drop_now();
    }
}

/// Runs `toolsmith admin` against a data directory (and database, when given).
pub fn admin(data: &Path, database: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("admin").arg("--data-dir").arg(data);
    if let Some(url) = database {
        cmd.args(["--database-url", url]);
    }
    cmd.args(args).output().unwrap()
}
