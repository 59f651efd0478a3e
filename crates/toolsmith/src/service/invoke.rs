//! Invoking a published version: resolve the version, check the inputs against its schema, run
//! them on the version's zygote, mask what leaves, and record every invocation durably before
//! answering. Also the pieces the test use case shares: checking inputs, running them and
//! turning outcomes into results.

use std::fmt;
use std::sync::Arc;

use serde_json::{json, Map, Value};
use toolsmith_domain::invocation_source::DirectSource;
use toolsmith_domain::time::Timestamp;
use toolsmith_domain::{InvocationId, InvocationSource, Permission, Specifier, ToolId, Version};
use toolsmith_runtime::{mask, Identity, Purpose, RunOutcome, StartError, VersionRuntime, Zygote};
use toolsmith_store::{EnvVarValue, NewInvocation, ToolVersion};

use super::{Caller, Error};
use crate::app::{AppState, Builder};
use crate::metrics::InvocationEnd;

/// The most inputs one request may carry.
pub const MAX_INPUTS: usize = 10;

/// How an invocation is run: for real, or as part of a simulated conversation. The tool sees it
/// in its `context`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `regular`.
    Regular,
    /// `conversation-simulation`.
    ConversationSimulation,
}

impl Mode {
    /// The wire's name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Regular => "regular",
            Mode::ConversationSimulation => "conversation-simulation",
        }
    }

    /// Parses the wire's name.
    pub fn parse(s: &str) -> Option<Mode> {
        [Mode::Regular, Mode::ConversationSimulation].into_iter().find(|m| m.as_str() == s)
    }
}

/// User variables whose values are secret: passed to the tool, masked in everything that
/// leaves, never stored, and never printed by `Debug` (which shows only their names).
#[derive(Clone, Default, PartialEq)]
pub struct SensitiveVariables(pub Map<String, Value>);

impl fmt::Debug for SensitiveVariables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for name in self.0.keys() {
            map.entry(name, &"<redacted>");
        }
        map.finish()
    }
}

/// One input of an invocation.
#[derive(Debug, Clone)]
pub struct Input {
    /// The tool's arguments.
    pub parameters: Map<String, Value>,
    /// How the invocation runs.
    pub mode: Mode,
    /// Passed to the tool and stored.
    pub nonsensitive: Map<String, Value>,
    /// Passed to the tool, masked in its results and never stored.
    pub sensitive: SensitiveVariables,
    /// The conversation or simulation the invocation belongs to, as its caller says; attaching
    /// one takes `Tool:AttachInvocationSource`.
    pub source: Option<InvocationSource>,
}

impl Input {
    /// An input with only arguments: a regular invocation without user variables.
    pub fn with_parameters(parameters: Map<String, Value>) -> Input {
        Input {
            parameters,
            mode: Mode::Regular,
            nonsensitive: Map::new(),
            sensitive: SensitiveVariables::default(),
            source: None,
        }
    }

    /// What the tool's `context` parameter receives.
    fn context(&self) -> Value {
        json!({
            "invocation_mode": self.mode.as_str(),
            "nonsensitive_user_variables": self.nonsensitive,
            "sensitive_user_variables": self.sensitive.0,
        })
    }

    fn sensitive_values(&self) -> impl Iterator<Item = String> + '_ {
        self.sensitive.0.values().filter_map(Value::as_str).map(str::to_owned)
    }
}

/// Which version to run: an exact `X.Y.Z`, or the highest live version matching a PEP 440
/// specifier. Deprecated versions never match.
#[derive(Debug, Clone)]
pub enum VersionSelector {
    /// Exactly this version.
    Exact(Version),
    /// The highest version the specifier matches.
    Matching(Specifier),
}

impl VersionSelector {
    /// Parses an exact version or a specifier; the error says why it is neither.
    pub fn parse(text: &str) -> Result<VersionSelector, String> {
        match Version::parse(text.trim()) {
            Some(exact) => Ok(VersionSelector::Exact(exact)),
            None => Specifier::parse(text).map(VersionSelector::Matching),
        }
    }

    /// The version this selector picks among `versions`.
    pub fn pick<'a>(&self, versions: &'a [ToolVersion]) -> Option<&'a ToolVersion> {
        let mut live = versions.iter().filter(|v| !v.deprecated);
        match self {
            VersionSelector::Exact(exact) => live.find(|v| v.version == *exact),
            VersionSelector::Matching(spec) => live.filter(|v| spec.matches(&v.version)).max_by_key(|v| v.version),
        }
    }
}

/// Through which surface an invocation was asked for; it decides the source recorded when the
/// input names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// The HTTP API's invoke endpoint.
    Api,
    /// The organization's MCP server (`tools/call`).
    Mcp,
}

/// A request to invoke a published version.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The tool.
    pub tool_id: ToolId,
    /// Which of its versions.
    pub version: VersionSelector,
    /// 1 to [`MAX_INPUTS`] inputs, run at once.
    pub inputs: Vec<Input>,
    /// Who asked, for the record's default source.
    pub surface: Surface,
}

/// How one input ended: what the caller is answered and what the record keeps. Every text in it
/// is already masked.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// Whether the tool returned.
    pub succeeded: bool,
    /// What the tool returned, as JSON text.
    pub output: Option<String>,
    /// The exception's type.
    pub exception_type: Option<String>,
    /// The exception's message.
    pub exception_message: Option<String>,
    /// The traceback.
    pub trace: Vec<String>,
    /// Milliseconds in the tool call.
    pub duration_ms: i64,
    /// Captured output.
    pub logs: String,
}

/// What an invocation answered.
#[derive(Debug, Clone)]
pub struct Invoked {
    /// The version that ran (the request may have named a specifier).
    pub version: Version,
    /// The result of each input, in input order.
    pub results: Vec<Finished>,
    /// The record of each input, in input order.
    pub invocation_ids: Vec<InvocationId>,
}

/// Invokes a published version with its inputs and records every invocation.
pub async fn invoke(state: &AppState, caller: &Caller, request: Invocation) -> Result<Invoked, Error> {
    caller.require(Permission::InvokeTool)?;
    // A source decides who may read the record (whoever may read that conversation or
    // simulation), so only callers trusted to say which one they serve may attach it.
    if request.inputs.iter().any(|i| i.source.is_some()) {
        caller.require(Permission::AttachInvocationSource)?;
    }
    let store = state.store();
    // Independent reads, run at once: they are most of the server's own time in an invoke.
    let (tool, versions, env) = tokio::join!(
        store.get_tool(&caller.org, &request.tool_id),
        store.versions_of(&caller.org, &request.tool_id),
        store.envvar_values(&caller.org, &request.tool_id),
    );
    let tool = tool?.filter(|t| !t.deprecated).ok_or(Error::NotFound)?;
    let versions = versions?;
    let version = request.version.pick(&versions).ok_or(Error::NotFound)?;
    let validator = state
        .validator(version.id.as_str(), &version.input_schema)
        .map_err(|e| Error::internal("a stored input schema does not compile", e))?;
    check_inputs(&validator, &request.inputs)?;

    let (Ok(builder), Some(pool)) = (state.builder(), state.runtime()) else {
        return Err(Error::Unavailable("Tools cannot run on this server: the Python toolchain is missing.".into()));
    };
    let _permits = pool.try_permits(request.inputs.len() as u32).map_err(|_| Error::Busy)?;
    let env = env?;
    let identity = state
        .sandbox_identity(&caller.org, Purpose::Run)
        .await
        .map_err(|e| Error::internal("no sandbox identity", e))?;
    let (runtime, secrets) = version_runtime(builder, identity, version, env);
    let version_label = version.version.to_string();
    let metrics = state.metrics();
    let (started, init) = pool.zygote_traced(version.id.as_str(), &runtime).await;
    if let Some(init) = init {
        metrics.cold_start(caller.org.as_str(), tool.id.as_str(), &version_label, init);
    }
    let results = match started {
        Ok(zygote) => run_inputs(&zygote, &request.inputs, &secrets).await,
        Err(error) => import_failures(&error, request.inputs.len(), &secrets)?,
    };
    for f in &results {
        let end = match (f.succeeded, f.exception_type.as_deref()) {
            (true, _) => InvocationEnd::Succeeded,
            (false, Some("TimeoutError")) => InvocationEnd::TimedOut,
            (false, _) => InvocationEnd::Failed,
        };
        let took = std::time::Duration::from_millis(f.duration_ms.max(0) as u64);
        metrics.invocation(caller.org.as_str(), tool.id.as_str(), &version_label, end, took);
    }

    let now = Timestamp::now();
    let records: Vec<NewInvocation> = request
        .inputs
        .iter()
        .zip(&results)
        .map(|(input, f)| NewInvocation {
            id: InvocationId::generate(),
            org_id: caller.org.clone(),
            tool_id: tool.id.clone(),
            version: version.version,
            succeeded: f.succeeded,
            output: f.output.clone(),
            exception_type: f.exception_type.clone(),
            exception_message: f.exception_message.clone(),
            exception_stack_trace: f.trace.clone(),
            duration_ms: f.duration_ms,
            inputs: Value::Object(input.parameters.clone()),
            source: input.source.clone().unwrap_or_else(|| default_source(caller, request.surface)),
            caller: caller.user.clone(),
            logs: f.logs.clone(),
            created_at: now,
        })
        .collect();
    let invocation_ids = records.iter().map(|r| r.id.clone()).collect();
    store.record_invocations(records).await?;
    Ok(Invoked { version: version.version, results, invocation_ids })
}

/// What a published version runs with: its built tree and environment, and its tool's env vars,
/// the secret ones also returned for masking.
pub(crate) fn version_runtime(
    builder: &Builder,
    identity: Identity,
    version: &ToolVersion,
    env: Vec<EnvVarValue>,
) -> (VersionRuntime, Vec<String>) {
    let secrets: Vec<String> = env.iter().filter(|e| e.is_secret).map(|e| e.value.clone()).collect();
    let runtime = VersionRuntime {
        identity,
        secrets: secrets.clone().into(),
        project: builder.artifacts.join(&version.content_digest),
        venv: builder.envs.path_of(&version.environment_key),
        base_prefix: builder.toolchain.base_prefix.clone(),
        entrypoint: version.entrypoint.clone(),
        takes_context: version.takes_context,
        env: env.into_iter().map(|e| (e.name, e.value)).collect(),
    };
    (runtime, secrets)
}

/// The source recorded for an input that names none: who called, through which surface.
fn default_source(caller: &Caller, surface: Surface) -> InvocationSource {
    let who = DirectSource { user_id: caller.user.user_id.to_string(), user_org_id: caller.user.org_id.to_string() };
    match surface {
        Surface::Api => InvocationSource::Direct(who),
        Surface::Mcp => InvocationSource::Mcp(who),
    }
}

/// Checks every input against the input schema before anything runs; the error names the first
/// failing input (counting from 1) and up to three of its problems, each with the field's path.
pub fn check_inputs(validator: &jsonschema::Validator, inputs: &[Input]) -> Result<(), Error> {
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
            return Err(Error::InvalidInput(format!(
                "The input parameters do not conform to the tool's input schema. Input {}: {}",
                i + 1,
                errors.join("; ")
            )));
        }
    }
    Ok(())
}

fn failure(exception_type: &str, message: String, trace: Vec<String>, duration_ms: f64, logs: String) -> Finished {
    Finished {
        succeeded: false,
        output: None,
        exception_type: Some(exception_type.to_owned()),
        exception_message: Some(message),
        trace,
        duration_ms: duration_ms.round() as i64,
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
        RunOutcome::Returned { output, duration_ms, logs } => Finished {
            succeeded: true,
            output: Some(mask(&output, secrets)),
            exception_type: None,
            exception_message: None,
            trace: Vec::new(),
            duration_ms: duration_ms.round() as i64,
            logs: mask(&logs, secrets),
        },
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

/// The result of every input when the runtime did not start: when the tool could not be
/// imported, each input fails the way the import did; any other reason is not the tool's, and
/// the server is unavailable for it.
pub fn import_failures(error: &StartError, count: usize, secrets: &[String]) -> Result<Vec<Finished>, Error> {
    let StartError::Import { exception_type, message, traceback } = error else {
        tracing::error!(error = %error, "a tool runtime did not start");
        return Err(Error::Unavailable(format!("The tool's runtime could not be started: {error}")));
    };
    let trace: Vec<String> = traceback.lines().map(|l| mask(l, secrets)).collect();
    let one = failure(
        &mask(exception_type, secrets),
        format!("The tool could not be imported: {}", mask(message, secrets)),
        trace,
        0.0,
        String::new(),
    );
    Ok(vec![one; count])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_variables_never_show_their_values() {
        let mut vars = Map::new();
        vars.insert("api_token".into(), Value::String("s3cr3t-value".into()));
        let input = Input { sensitive: SensitiveVariables(vars), ..Input::with_parameters(Map::new()) };
        for shown in [format!("{input:?}"), format!("{input:#?}")] {
            assert!(!shown.contains("s3cr3t-value"), "{shown}");
            assert!(shown.contains("api_token"), "the name is shown: {shown}");
        }
    }
}
