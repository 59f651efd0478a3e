//! Testing an unpublished tool: build the tip of a branch through the publish pipeline and run
//! inputs on it with the env vars the request brings. Nothing is recorded but the build: what
//! runs here is no published version.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use toolsmith_domain::Permission;
use toolsmith_runtime::{Purpose, VersionRuntime};
use toolsmith_store::BuildState;

use super::invoke::{check_inputs, import_failures, run_inputs, Finished, Input};
use super::publish::{recorded_build, BuildJob, PublishError};
use super::{Caller, Error};
use crate::app::AppState;

/// Env var values a test brings; the secret ones never reach a `Debug` line.
#[derive(Clone, Default)]
pub struct TestEnv {
    /// Non-secret variables.
    pub plain: BTreeMap<String, String>,
    /// Secret variables: passed to the tool, masked in its results.
    pub secret: BTreeMap<String, String>,
}

impl fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestEnv")
            .field("plain", &self.plain.keys().collect::<Vec<_>>())
            .field("secret", &self.secret.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A request to test the tip of a branch.
#[derive(Debug, Clone)]
pub struct TestRun {
    /// The branch whose tip is built.
    pub branch: String,
    /// The project directory in it.
    pub project_path: String,
    /// The env vars the tool gets.
    pub env: TestEnv,
    /// 1 to 10 inputs.
    pub inputs: Vec<Input>,
}

/// What a test answered.
#[derive(Debug, Clone)]
pub struct Tested {
    /// The result of each input, in input order.
    pub results: Vec<Finished>,
    /// The build record, when this test built (a commit built before reuses that build).
    pub build_id: Option<toolsmith_domain::BuildId>,
}

/// Builds the tip of the branch and runs the inputs on it.
pub async fn test(state: &AppState, caller: &Caller, request: TestRun) -> Result<Tested, PublishError> {
    caller.require(Permission::TestTool)?;
    if let Some(both) = request.env.plain.keys().find(|k| request.env.secret.contains_key(*k)) {
        return Err(Error::Rejected(format!(
            "The environment variable {both} is specified as both secret and non-secret."
        ))
        .into());
    }
    let (Ok(builder), Some(pool)) = (state.builder(), state.runtime()) else {
        return Err(Error::Unavailable(
            "Tools cannot be built or run on this server: the Python toolchain is missing.".into(),
        )
        .into());
    };
    super::repo::ensure_repo(state, &caller.org).await?;
    let commit = state.repos().resolve(caller.org.as_str(), &request.branch).await.map_err(|_| Error::NotFound)?;
    let cache_key = format!("{}\0{commit}\0{}", caller.org, request.project_path);
    let (output, build_id) = match state.tested_builds().get(&cache_key) {
        Some(output) => (output, None),
        None => {
            let job = BuildJob { tool_id: None, kind: "test", commit: &commit, project_path: &request.project_path };
            let (output, build_id) = recorded_build(state, builder, caller, job).await?;
            state.store().finish_build(&caller.org, &build_id, BuildState::Succeeded, "tested", &output.log).await?;
            let output = Arc::new(output);
            state.tested_builds().insert(cache_key, output.clone());
            (output, Some(build_id))
        }
    };

    let env = request.env;
    let missing: Vec<&str> = output
        .spec
        .envvars
        .iter()
        .filter(|n| !env.plain.contains_key(*n))
        .chain(output.spec.secret_envvars.iter().filter(|n| !env.secret.contains_key(*n)))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(Error::Rejected(format!(
            "Required environment variables of the tool are not declared in the request: {} (secret ones under required_secret_envvars).",
            missing.join(", ")
        ))
        .into());
    }
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&output.input_schema)
        .map_err(|e| Error::Rejected(format!("Tool build has failed: its input schema does not compile: {e}")))?;
    check_inputs(&validator, &request.inputs)?;

    let _permits = pool.try_permits(request.inputs.len() as u32).map_err(|_| Error::Busy)?;
    let secrets: Vec<String> = env.secret.values().cloned().collect();
    let identity = state
        .sandbox_identity(&caller.org, Purpose::Run)
        .await
        .map_err(|e| Error::internal("no sandbox identity", e))?;
    let runtime = VersionRuntime {
        identity,
        secrets: secrets.clone().into(),
        project: output.artifact_dir.clone(),
        venv: output.env.dir.clone(),
        base_prefix: builder.toolchain.base_prefix.clone(),
        entrypoint: output.spec.entrypoint.clone(),
        takes_context: output.takes_context,
        env: env.plain.into_iter().chain(env.secret).collect(),
    };
    let results = match pool.start_unpooled(&runtime).await {
        Ok(zygote) => run_inputs(&Arc::new(zygote), &request.inputs, &secrets).await,
        Err(error) => import_failures(&error, request.inputs.len(), &secrets)?,
    };
    Ok(Tested { results, build_id })
}
