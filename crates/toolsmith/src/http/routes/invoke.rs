//! Invoking a published version (`POST /tool/{id}/version/{version}/invoke`), and the pieces the
//! test endpoint shares with it: reading the inputs, checking them against the input schema,
//! running them on a zygote and turning outcomes into the wire's results.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Map, Value};
use toolsmith_domain::invocation_source::DirectSource;
use toolsmith_domain::time::Timestamp;
use toolsmith_domain::{InvocationSource, ObjectId, Permission, SourceType, Specifier, Version};
use toolsmith_runtime::{mask, Purpose, RunOutcome, StartError, VersionRuntime, Zygote};
use toolsmith_store::{NewInvocation, ToolVersion};

use crate::app::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, Loc};
use crate::http::extract::{JsonBody, PathParams};
use crate::http::operations::INVOKE_VERSION;
use crate::http::params::{Fields, Problems};

/// The most inputs one request may carry.
pub const MAX_INPUTS: usize = 10;
const MAX_USER_VARIABLES: usize = 20;

/// One input of an invoke or test request.
#[derive(Debug, Clone)]
pub struct Input {
    /// The tool's arguments.
    pub parameters: Map<String, Value>,
    /// `regular` or `conversation-simulation`.
    pub mode: String,
    /// Passed to the tool and stored.
    pub nonsensitive: Map<String, Value>,
    /// Passed to the tool, masked in its results and never stored.
    pub sensitive: Map<String, Value>,
    /// The conversation or simulation the invocation belongs to, as its caller says (an
    /// extension; attaching one takes `Tool:AttachInvocationSource`).
    pub source: Option<InvocationSource>,
}

impl Input {
    /// What the tool's `context` parameter receives.
    fn context(&self) -> Value {
        json!({
            "invocation_mode": self.mode,
            "nonsensitive_user_variables": self.nonsensitive,
            "sensitive_user_variables": self.sensitive,
        })
    }

    fn sensitive_values(&self) -> impl Iterator<Item = String> + '_ {
        self.sensitive.values().filter_map(Value::as_str).map(str::to_owned)
    }
}

fn user_variables(fields: &Fields<'_>, name: &str, problems: &mut Problems) -> Map<String, Value> {
    // Older clients omit the user variables; they mean none.
    let value = match fields.raw(name) {
        None | Some(Value::Null) => return Map::new(),
        Some(v) => v,
    };
    let Value::Object(map) = value else {
        problems.push(fields.loc(name), "dict_type", "Input should be a valid dictionary", Some(value.clone()));
        return Map::new();
    };
    if map.len() > MAX_USER_VARIABLES {
        problems.push(
            fields.loc(name),
            "too_long",
            format!("Dictionary should have at most {MAX_USER_VARIABLES} items after validation, not {}", map.len()),
            Some(value.clone()),
        );
    }
    for (key, v) in map {
        let mut loc = fields.loc(name);
        loc.push(Loc::from(key.as_str()));
        let key_ok = key.len() >= 2
            && key.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !key_ok {
            problems.push(
                loc.clone(),
                "string_pattern_mismatch",
                "String should match pattern '^[a-z_][a-z0-9_]+$'",
                Some(Value::String(key.clone())),
            );
        }
        if !v.is_string() {
            problems.push(loc, "string_type", "Input should be a valid string", Some(v.clone()));
        }
    }
    map.clone()
}

/// A field that may be absent or `null` (both meaning null), else a string.
fn nullable_string(f: &Fields<'_>, key: &str, problems: &mut Problems) {
    if let Some(v) = f.raw(key).filter(|v| !v.is_null() && !v.is_string()) {
        problems.push(f.loc(key), "string_type", "Input should be a valid string", Some(v.clone()));
    }
}

/// A field that may be absent or `null`, else an integer.
fn nullable_int(f: &Fields<'_>, key: &str, problems: &mut Problems) {
    if let Some(v) = f.raw(key).filter(|v| !v.is_null() && !v.is_i64()) {
        problems.push(f.loc(key), "int_type", "Input should be a valid integer", Some(v.clone()));
    }
}

/// A required integer field.
fn required_int(f: &Fields<'_>, key: &str, problems: &mut Problems) {
    if let Some(v) = f.required(key, problems).filter(|v| !v.is_i64()) {
        problems.push(f.loc(key), "int_type", "Input should be a valid integer", Some(v.clone()));
    }
}

/// The `type` of a tagged union at `f`, which must be one of `tags`; reported like pydantic's
/// discriminated unions, at the union's own location.
fn union_tag(
    f: &Fields<'_>,
    value: &Value,
    loc: Vec<Loc>,
    tags: &[&'static str],
    problems: &mut Problems,
) -> Option<&'static str> {
    let raw = f.raw("type");
    if let Some(tag) = raw.and_then(Value::as_str).and_then(|s| tags.iter().find(|t| **t == s)) {
        return Some(tag);
    }
    match raw {
        None => problems.push(
            loc,
            "union_tag_not_found",
            "Unable to extract tag using discriminator 'type'",
            Some(value.clone()),
        ),
        Some(tag) => {
            let expected: Vec<String> = tags.iter().map(|t| format!("'{t}'")).collect();
            let shown = tag.as_str().map_or_else(|| tag.to_string(), str::to_owned);
            problems.push(
                loc,
                "union_tag_invalid",
                format!(
                    "Input tag '{shown}' found using 'type' does not match any of the expected tags: {}",
                    expected.join(", ")
                ),
                Some(value.clone()),
            );
        }
    }
    None
}

/// The object at `key` of `f`, recording why when it is missing or not an object.
fn object_field<'a>(f: &Fields<'a>, key: &str, problems: &mut Problems) -> Option<(&'a Value, Fields<'a>)> {
    let value = f.required(key, problems)?;
    let Value::Object(map) = value else {
        problems.push(
            f.loc(key),
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from",
            Some(value.clone()),
        );
        return None;
    };
    Some((value, Fields::new(map, f.loc(key))))
}

/// Checks `invocation_metadata` (the contract's `AgentFrameworkInvocationMetadata`).
fn invocation_metadata(source: &Fields<'_>, problems: &mut Problems) {
    let Some((value, m)) = object_field(source, "invocation_metadata", problems) else { return };
    let tags = ["state-transition", "engage-user", "tool-call-state"];
    let Some(kind) = union_tag(&m, value, source.loc("invocation_metadata"), &tags, problems) else { return };
    // `[state machine id, version]`, a pair.
    let key = "current_state_machine_and_version";
    if let Some(pair) = m.required(key, problems) {
        match pair {
            Value::Array(items) if items.len() > 2 => problems.push(
                m.loc(key),
                "too_long",
                format!("Tuple should have at most 2 items after validation, not {}", items.len()),
                Some(pair.clone()),
            ),
            Value::Array(items) => {
                let at = |i: usize| {
                    let mut loc = m.loc(key);
                    loc.push(Loc::from(i));
                    loc
                };
                match items.first() {
                    None => problems.push(at(0), "missing", "Field required", None),
                    Some(v) if !v.is_string() => {
                        problems.push(at(0), "string_type", "Input should be a valid string", Some(v.clone()))
                    }
                    Some(_) => {}
                }
                match items.get(1) {
                    None => problems.push(at(1), "missing", "Field required", None),
                    Some(v) if !v.is_i64() => {
                        problems.push(at(1), "int_type", "Input should be a valid integer", Some(v.clone()))
                    }
                    Some(_) => {}
                }
            }
            other => problems.push(m.loc(key), "tuple_type", "Input should be a valid tuple", Some(other.clone())),
        }
    }
    match kind {
        "state-transition" => {
            m.raw_string("state_name", problems);
            required_int(&m, "state_transition_index", problems);
            required_int(&m, "tool_call_round_index", problems);
        }
        "engage-user" => required_int(&m, "tool_call_round_index", problems),
        _ => {
            m.raw_string("state_name", problems);
        }
    }
}

/// Reads an input's `invocation_source` (an extension): one of the contract's
/// `InvocationSource` kinds, complete, since listing clients parse it with the contract's models.
/// Nullable fields may be left out (they are stored as `null`); fields the shape does not have
/// are dropped.
fn invocation_source(fields: &Fields<'_>, problems: &mut Problems) -> Option<InvocationSource> {
    let value = match fields.raw("invocation_source") {
        None | Some(Value::Null) => return None,
        Some(v) => v,
    };
    let (_, source) = object_field(fields, "invocation_source", problems)?;
    let before = problems.len();
    let tags = [SourceType::RegularConversation.as_str(), SourceType::SimulationConversation.as_str()];
    let kind = union_tag(&source, value, fields.loc("invocation_source"), &tags, problems)?;
    if kind == SourceType::RegularConversation.as_str() {
        source.raw_string("user_id", problems);
        nullable_string(&source, "conversation_id", problems);
        nullable_string(&source, "interaction_id", problems);
    } else {
        nullable_string(&source, "simulation_unit_test_set_run_id", problems);
        nullable_string(&source, "unit_test_id", problems);
        nullable_int(&source, "run_index", problems);
    }
    invocation_metadata(&source, problems);
    if problems.len() > before {
        return None;
    }
    match serde_json::from_value(value.clone()) {
        Ok(source) => Some(source),
        Err(e) => {
            problems.push(
                fields.loc("invocation_source"),
                "value_error",
                format!("Value error, {e}"),
                Some(value.clone()),
            );
            None
        }
    }
}

/// Whether any input of a request body carries an `invocation_source`, which takes its own
/// permission. Read from the raw body, so that the permission is decided before the body is
/// validated, as everywhere else.
pub fn attaches_source(body: &Map<String, Value>) -> bool {
    let Some(Value::Array(inputs)) = body.get("inputs") else { return false };
    inputs.iter().any(|input| input.get("invocation_source").is_some_and(|s| !s.is_null()))
}

/// Reads the `inputs` list of a request body (1 to 10 inputs), collecting every problem.
pub fn parse_inputs(body: &Map<String, Value>, problems: &mut Problems) -> Vec<Input> {
    let fields = Fields::new(body, vec![Loc::from("body")]);
    let Some(raw) = fields.required("inputs", problems) else { return Vec::new() };
    if let Value::Array(items) = raw {
        if items.is_empty() {
            problems.push(
                fields.loc("inputs"),
                "too_short",
                "List should have at least 1 item after validation, not 0",
                Some(raw.clone()),
            );
        } else if items.len() > MAX_INPUTS {
            problems.push(
                fields.loc("inputs"),
                "too_long",
                format!("List should have at most {MAX_INPUTS} items after validation, not {}", items.len()),
                None,
            );
            return Vec::new();
        }
    }
    fields.object_list("inputs", problems, |input, problems| {
        let parameters = match input.required("input_parameters", problems) {
            Some(Value::Object(m)) => Some(m.clone()),
            Some(other) => {
                problems.push(
                    input.loc("input_parameters"),
                    "dict_type",
                    "Input should be a valid dictionary",
                    Some(other.clone()),
                );
                None
            }
            None => None,
        };
        let mode = match input.required("invocation_mode", problems) {
            Some(Value::String(m)) if m == "regular" || m == "conversation-simulation" => Some(m.clone()),
            Some(other) => {
                problems.push(
                    input.loc("invocation_mode"),
                    "enum",
                    "Input should be 'regular' or 'conversation-simulation'",
                    Some(other.clone()),
                );
                None
            }
            None => None,
        };
        let nonsensitive = user_variables(&input, "nonsensitive_user_variables", problems);
        let sensitive = user_variables(&input, "sensitive_user_variables", problems);
        let source = invocation_source(&input, problems);
        Some(Input { parameters: parameters?, mode: mode?, nonsensitive, sensitive, source })
    })
}

/// Checks every input against the input schema before anything runs; the 400 names the first
/// failing input (counting from 1) and field.
pub fn check_inputs(validator: &jsonschema::Validator, inputs: &[Input], message: &str) -> Result<(), ApiError> {
    for (i, input) in inputs.iter().enumerate() {
        let instance = Value::Object(input.parameters.clone());
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .take(3)
            .map(|e| {
                let path = e.instance_path.to_string();
                let field = if path.is_empty() {
                    "input_parameters".to_owned()
                } else {
                    format!("input_parameters{}", path.replace('/', "."))
                };
                format!("`{field}`: {e}")
            })
            .collect();
        if !errors.is_empty() {
            return Err(ApiError::bad_request(format!("{message} Input {}: {}", i + 1, errors.join("; "))));
        }
    }
    Ok(())
}

/// One finished invocation: the wire result and what the record keeps.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The `InvocationResult` of the response.
    pub result: Value,
    /// Whether the tool returned.
    pub succeeded: bool,
    /// The output, masked.
    pub output: Option<String>,
    /// The exception's type.
    pub exception_type: Option<String>,
    /// The exception's message, masked.
    pub exception_message: Option<String>,
    /// The traceback, masked.
    pub trace: Vec<String>,
    /// Milliseconds in the tool call.
    pub duration_ms: i64,
    /// Captured output, masked.
    pub logs: String,
}

fn failure(exception_type: &str, message: String, trace: Vec<String>, duration_ms: f64, logs: String) -> Finished {
    let duration_ms = duration_ms.round() as i64;
    Finished {
        result: json!({
            "succeeded": false,
            "exception_message": message,
            "exception_type": exception_type,
            "exception_stack_trace": trace,
            "duration_ms": duration_ms,
        }),
        succeeded: false,
        output: None,
        exception_type: Some(exception_type.to_owned()),
        exception_message: Some(message),
        trace,
        duration_ms,
        logs,
    }
}

fn crash_message(status: &str) -> String {
    let why = if status.contains("SIGXCPU") {
        "it used up its CPU time limit"
    } else if status.contains("SIGXFSZ") {
        "it wrote a file, or printed, more than the file size limit"
    } else if status.contains("SIGKILL") {
        "it was killed (out of memory, or a limit was reached)"
    } else if status.contains("SIGSEGV") || status.contains("SIGABRT") || status.contains("SIGBUS") {
        "it crashed"
    } else {
        "it exited"
    };
    format!("The tool's process ended without a result ({status}): {why}.")
}

/// Turns an outcome into a result, masking every secret value in everything that leaves.
pub fn finish(outcome: RunOutcome, secrets: &[String]) -> Finished {
    match outcome {
        RunOutcome::Returned { output, duration_ms, logs } => {
            let output = mask(&output, secrets);
            let duration_ms = duration_ms.round() as i64;
            Finished {
                result: json!({"succeeded": true, "output": output, "duration_ms": duration_ms}),
                succeeded: true,
                output: Some(output),
                exception_type: None,
                exception_message: None,
                trace: Vec::new(),
                duration_ms,
                logs: mask(&logs, secrets),
            }
        }
        RunOutcome::Raised { exception_type, message, trace, duration_ms, logs } => failure(
            &mask(&exception_type, secrets),
            mask(&message, secrets),
            trace.iter().map(|l| mask(l, secrets)).collect(),
            duration_ms,
            mask(&logs, secrets),
        ),
        RunOutcome::TimedOut { limit, logs } => failure(
            "TimeoutError",
            format!("The tool did not finish within {} s; its processes were stopped.", limit.as_secs_f64()),
            Vec::new(),
            limit.as_secs_f64() * 1000.0,
            mask(&logs, secrets),
        ),
        RunOutcome::Crashed { status, duration_ms, logs } => {
            failure("ToolCrashed", crash_message(&status), Vec::new(), duration_ms, mask(&logs, secrets))
        }
        RunOutcome::RuntimeLost => failure(
            "ToolRuntimeLost",
            "The tool's runtime stopped while the invocation ran.".to_owned(),
            Vec::new(),
            0.0,
            String::new(),
        ),
    }
}

/// Runs every input on the zygote, all at once, and returns the results in input order.
pub async fn run_inputs(zygote: &Arc<Zygote>, inputs: &[Input], secrets: &[String]) -> Vec<Finished> {
    let runs = inputs.iter().map(|input| {
        let zygote = zygote.clone();
        let parameters = Value::Object(input.parameters.clone());
        let context = input.context();
        let mut secrets = secrets.to_vec();
        secrets.extend(input.sensitive_values());
        async move { finish(zygote.invoke(&parameters, &context).await, &secrets) }
    });
    futures_util::future::join_all(runs).await
}

/// The result of every input when the tool cannot even be imported: each input fails the way
/// the import did.
pub fn import_failures(error: &StartError, count: usize, secrets: &[String]) -> Option<Vec<Finished>> {
    let StartError::Import { exception_type, message, traceback } = error else { return None };
    let trace: Vec<String> = traceback.lines().map(|l| mask(l, secrets)).collect();
    let one = failure(
        &mask(exception_type, secrets),
        format!("The tool could not be imported: {}", mask(message, secrets)),
        trace,
        0.0,
        String::new(),
    );
    Some(vec![one; count])
}

/// Resolves the `version` path parameter: an exact `X.Y.Z`, or a PEP 440 specifier meaning the
/// highest matching version. Deprecated versions never match.
pub fn resolve_version<'a>(versions: &'a [ToolVersion], wanted: &str) -> Result<Option<&'a ToolVersion>, String> {
    let live = versions.iter().filter(|v| !v.deprecated);
    if let Some(exact) = Version::parse(wanted.trim()) {
        return Ok(live.into_iter().find(|v| v.version == exact));
    }
    let specifier = Specifier::parse(wanted)?;
    Ok(live.filter(|v| specifier.matches(&v.version)).max_by_key(|v| v.version))
}

/// The header naming the version that ran, since the path may hold a specifier.
pub const VERSION_HEADER: &str = "x-toolsmith-tool-version";

fn busy() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "Too many tool invocations are running on this server; retry shortly.",
    )
    .with_header(HeaderName::from_static("retry-after"), HeaderValue::from_static("1"))
}

/// Answers 503 when the tool's runtime fails to start for a reason that is not the tool's.
pub fn runtime_unavailable(error: &StartError) -> ApiError {
    tracing::error!(error = %error, "a tool runtime did not start");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("The tool's runtime could not be started: {error}"))
}

/// Invokes a published version with 1 to 10 inputs.
pub async fn invoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    // A source decides who may read the record (whoever may read that conversation or
    // simulation), so only callers trusted to say which one they serve may attach it.
    if attaches_source(&body) {
        caller.require(Permission::AttachInvocationSource)?;
    }
    let tool_id = path.object_id("tool_id")?;
    let wanted = path.0.get("version").cloned().unwrap_or_default();
    let mut problems = Problems::default();
    let inputs = parse_inputs(&body, &mut problems);
    let inputs = problems.finish(inputs)?;

    let not_found = || ApiError::not_found(INVOKE_VERSION.org_not_found);
    let store = state.store();
    // Independent reads, run at once: they are most of the server's own time in an invoke.
    let (tool, versions, env) = tokio::join!(
        store.get_tool(&caller.org_id, &tool_id),
        store.versions_of(&caller.org_id, &tool_id),
        store.envvar_values(&caller.org_id, &tool_id),
    );
    let tool = tool?.filter(|t| !t.deprecated).ok_or_else(not_found)?;
    let versions = versions?;
    let version = match resolve_version(&versions, &wanted) {
        Ok(Some(v)) => v,
        Ok(None) => return Err(not_found()),
        Err(why) => {
            return Err(ApiError::invalid(
                vec![Loc::from("path"), Loc::from("version")],
                "value_error",
                format!("Value error, not a version or a version specifier: {why}"),
                Some(Value::String(wanted)),
            ))
        }
    };
    let validator = state.validator(&version.id, &version.input_schema).map_err(|e| {
        tracing::error!(version = %version.id, error = %e, "stored input schema does not compile");
        ApiError::internal()
    })?;
    check_inputs(&validator, &inputs, "The input parameters do not conform to the tool's input schema.")?;

    let (Ok(builder), Some(pool)) = (state.builder(), state.runtime()) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Tools cannot run on this server: the Python toolchain is missing.",
        ));
    };
    let _permits = pool.try_permits(inputs.len() as u32).map_err(|_| busy())?;
    let env = env?;
    let identity = state.sandbox_identity(&caller.org_id, Purpose::Run).await.map_err(|e| {
        tracing::error!(error = %e, "no sandbox identity");
        ApiError::internal()
    })?;
    let secrets: Vec<String> = env.iter().filter(|e| e.is_secret).map(|e| e.value.clone()).collect();
    let runtime = VersionRuntime {
        identity,
        secrets: secrets.clone(),
        project: builder.artifacts.join(&version.content_digest),
        venv: builder.envs.path_of(&version.environment_key),
        base_prefix: builder.toolchain.base_prefix.clone(),
        entrypoint: version.entrypoint.clone(),
        takes_context: version.takes_context,
        env: env.into_iter().map(|e| (e.name, e.value)).collect(),
    };
    let version_label = version.version.to_string();
    let metrics = state.metrics();
    let (started, init) = pool.zygote_traced(&version.id, &runtime).await;
    if let Some(init) = init {
        metrics.cold_start(&caller.org_id, &tool.id, &version_label, init);
    }
    let finished = match started {
        Ok(zygote) => run_inputs(&zygote, &inputs, &secrets).await,
        Err(error) => import_failures(&error, inputs.len(), &secrets).ok_or_else(|| runtime_unavailable(&error))?,
    };
    for f in &finished {
        let end = match (f.succeeded, f.exception_type.as_deref()) {
            (true, _) => crate::metrics::InvocationEnd::Succeeded,
            (false, Some("TimeoutError")) => crate::metrics::InvocationEnd::TimedOut,
            (false, _) => crate::metrics::InvocationEnd::Failed,
        };
        let took = std::time::Duration::from_millis(f.duration_ms.max(0) as u64);
        metrics.invocation(&caller.org_id, &tool.id, &version_label, end, took);
    }

    let now = Timestamp::now();
    let records: Vec<NewInvocation> = inputs
        .iter()
        .zip(&finished)
        .map(|(input, f)| NewInvocation {
            id: ObjectId::generate().to_string(),
            org_id: caller.org_id.clone(),
            tool_id: tool.id.clone(),
            version: version.version,
            succeeded: f.succeeded,
            output: f.output.clone(),
            exception_type: f.exception_type.clone(),
            exception_message: f.exception_message.clone(),
            exception_stack_trace: f.trace.clone(),
            duration_ms: f.duration_ms,
            inputs: Value::Object(input.parameters.clone()),
            source: input.source.clone().unwrap_or_else(|| {
                InvocationSource::Direct(DirectSource {
                    user_id: caller.user.user_id.clone(),
                    user_org_id: caller.user.org_id.clone(),
                })
            }),
            caller: caller.user.clone(),
            logs: f.logs.clone(),
            created_at: now,
        })
        .collect();
    store.record_invocations(records).await?;

    let results: Vec<Value> = finished.into_iter().map(|f| f.result).collect();
    let header = HeaderValue::from_str(&version.version.to_string()).unwrap_or(HeaderValue::from_static(""));
    Ok((
        StatusCode::OK,
        [(HeaderName::from_static(VERSION_HEADER), header)],
        Json(json!({"invocation_results": results})),
    )
        .into_response())
}
