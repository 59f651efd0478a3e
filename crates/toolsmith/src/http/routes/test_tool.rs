//! Testing an unpublished tool (`POST /tool/test`): build the tip of a branch through the publish
//! pipeline and run the inputs on it with the env vars the request brings. Nothing is recorded:
//! what runs here is no published version.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};
use toolsmith_build::pipeline::BuildOutput;
use toolsmith_domain::names::EnvVarName;
use toolsmith_runtime::VersionRuntime;
use toolsmith_store::BuildState;

use super::invoke::{check_inputs, import_failures, parse_inputs, run_inputs, runtime_unavailable};
use super::versions::{recorded_build, BuildJob};
use crate::app::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, Loc};
use crate::http::extract::JsonBody;
use crate::http::operations::TEST_TOOL;
use crate::http::params::{Fields, Problems};

/// Builds of tested commits. A commit never changes, so a second test of the same branch tip
/// and directory reuses the build (environment, schema and test run included).
fn build_cache() -> &'static Mutex<HashMap<String, Arc<BuildOutput>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<BuildOutput>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn env_map(fields: &Fields<'_>, name: &str, problems: &mut Problems) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let value = match fields.raw(name) {
        None | Some(Value::Null) => return out,
        Some(v) => v,
    };
    let Value::Object(map) = value else {
        problems.push(fields.loc(name), "dict_type", "Input should be a valid dictionary", Some(value.clone()));
        return out;
    };
    for (key, v) in map {
        let mut loc = fields.loc(name);
        loc.push(Loc::from(key.as_str()));
        if EnvVarName::parse(key).is_err() {
            problems.push(
                loc.clone(),
                "string_pattern_mismatch",
                "String should match pattern '^[A-Z_][A-Z0-9_]*$'",
                Some(Value::String(key.clone())),
            );
        }
        match v {
            Value::String(s) => {
                out.insert(key.clone(), s.clone());
            }
            other => problems.push(loc, "string_type", "Input should be a valid string", Some(other.clone())),
        }
    }
    out
}

/// Builds the tip of `commit_branch` at `project_path` and runs the inputs on it.
pub async fn test(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let mut problems = Problems::default();
    let inputs = parse_inputs(&body, &mut problems);
    let fields = Fields::new(&body, vec![Loc::from("body")]);
    // The contract types the branch as any string: one that names no branch, the empty one
    // included, is an unknown commit (404) rather than a malformed request.
    let branch = fields.raw_string("commit_branch", &mut problems).map(|b| b.trim().to_owned());
    let project_path = super::versions::project_path(&fields, &mut problems);
    let envvars = env_map(&fields, "required_envvars", &mut problems);
    let secret_envvars = env_map(&fields, "required_secret_envvars", &mut problems);
    let (inputs, Some(branch), Some(project_path)) = problems.finish((inputs, branch, project_path))? else {
        return Err(ApiError::internal());
    };
    if let Some(both) = envvars.keys().find(|k| secret_envvars.contains_key(*k)) {
        return Err(ApiError::bad_request(format!(
            "The environment variable {both} is specified as both secret and non-secret."
        )));
    }

    let not_found = || ApiError::not_found(TEST_TOOL.org_not_found);
    let (Ok(builder), Some(pool)) = (state.builder(), state.runtime()) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Tools cannot be built or run on this server: the Python toolchain is missing.",
        ));
    };
    super::repo::ensure_repo(&state, &caller.org_id).await?;
    let commit = state.repos().resolve(&caller.org_id, &branch).await.map_err(|_| not_found())?;
    let cache_key = format!("{}\0{}\0{commit}\0{project_path}", builder.artifacts.display(), caller.org_id);
    let cached = build_cache().lock().unwrap_or_else(|e| e.into_inner()).get(&cache_key).cloned();
    let (output, build_id) = match cached {
        Some(output) => (output, None),
        None => {
            let job = BuildJob {
                tool_id: None,
                kind: "test",
                commit: &commit,
                project_path: &project_path,
                not_found: TEST_TOOL.org_not_found,
                ci_failed: "The specified tool commit has failed CI checks:",
            };
            let (output, build_id) = recorded_build(&state, builder, &caller, job).await?;
            state.store().finish_build(&caller.org_id, &build_id, BuildState::Succeeded, "tested", &output.log).await?;
            let output = Arc::new(output);
            let mut cache = build_cache().lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() > 256 {
                cache.clear();
            }
            cache.insert(cache_key, output.clone());
            (output, Some(build_id))
        }
    };

    let missing: Vec<&str> = output
        .spec
        .envvars
        .iter()
        .filter(|n| !envvars.contains_key(*n))
        .chain(output.spec.secret_envvars.iter().filter(|n| !secret_envvars.contains_key(*n)))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Required environment variables of the tool are not declared in the request: {} (secret ones under required_secret_envvars).",
            missing.join(", ")
        )));
    }
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&output.input_schema)
        .map_err(|e| ApiError::bad_request(format!("Tool build has failed: its input schema does not compile: {e}")))?;
    check_inputs(&validator, &inputs, "The input parameters do not conform to the tool's input schema.")?;

    let _permits = pool.try_permits(inputs.len() as u32).map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many tool invocations are running on this server; retry shortly.",
        )
        .with_header(HeaderName::from_static("retry-after"), HeaderValue::from_static("1"))
    })?;
    let secrets: Vec<String> = secret_envvars.values().cloned().collect();
    let identity = state.sandbox_identity(&caller.org_id, toolsmith_runtime::Purpose::Run).await.map_err(|e| {
        tracing::error!(error = %e, "no sandbox identity");
        ApiError::internal()
    })?;
    let runtime = VersionRuntime {
        identity,
        secrets: secrets.clone(),
        project: output.artifact_dir.clone(),
        venv: output.env.dir.clone(),
        base_prefix: builder.toolchain.base_prefix.clone(),
        entrypoint: output.spec.entrypoint.clone(),
        takes_context: output.takes_context,
        env: envvars.into_iter().chain(secret_envvars).collect(),
    };
    let finished = match pool.start_unpooled(&runtime).await {
        Ok(zygote) => run_inputs(&Arc::new(zygote), &inputs, &secrets).await,
        Err(error) => import_failures(&error, inputs.len(), &secrets).ok_or_else(|| runtime_unavailable(&error))?,
    };
    let results: Vec<Value> = finished.into_iter().map(|f| f.result).collect();
    let mut response = Json(json!({"invocation_results": results})).into_response();
    if let Some(id) = build_id {
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(HeaderName::from_static("x-toolsmith-build-id"), value);
        }
    }
    Ok(response)
}
