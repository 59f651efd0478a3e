//! Publishing a version: under the tool's operation lock, build the tip of the release branch
//! through the recorded build pipeline, check that the tool declares what the version needs, and
//! insert the version. A failed publish leaves no version; its build record says why.

use std::future::Future;

use toolsmith_builder::pipeline::{build, BuildInput, BuildOutput, FailureKind};
use toolsmith_builder::{BuildLimits, Identities};
use toolsmith_domain::{BuildId, BumpType, OrgId, Permission, ToolId, Version};
use toolsmith_repo::scaffold;
use toolsmith_runtime::Purpose;
use toolsmith_store::{BuildState, NewVersion, StoreError, ToolVersion};

use super::{Caller, Error};
use crate::app::{AppState, Builder};

/// The branch versions are published from.
pub const RELEASE_BRANCH: &str = "main";

/// The text of a conflict with another operation on the same tool.
pub const IN_PROGRESS: &str = "A related operation is in progress.";

/// A request to publish a new version of a tool.
#[derive(Debug, Clone)]
pub struct Publish {
    /// The tool.
    pub tool_id: ToolId,
    /// The project directory in the repository.
    pub project_path: String,
    /// Which part of the highest version to increase.
    pub bump: BumpType,
}

/// What a successful publish made.
#[derive(Debug, Clone)]
pub struct Published {
    /// The new version.
    pub version: ToolVersion,
    /// Its build record.
    pub build_id: BuildId,
}

/// Why a recorded build failed; the build record keeps the whole log.
#[derive(Debug, Clone)]
pub struct BuildFailed {
    /// The organization whose build it was.
    pub org_id: OrgId,
    /// The build record.
    pub build_id: BuildId,
    /// Which step failed.
    pub kind: FailureKind,
    /// What went wrong, in a sentence.
    pub message: String,
}

/// The outcome of a publish: a failed build is an answer of its own, since it carries the id of
/// the build record that tells why.
pub type PublishResult = Result<Published, PublishError>;

/// Why a publish did not make a version.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The build failed; its record has the log.
    #[error("the build failed: {}", .0.message)]
    Build(BuildFailed),
    /// Any other reason.
    #[error(transparent)]
    Other(#[from] Error),
}

impl From<StoreError> for PublishError {
    fn from(e: StoreError) -> Self {
        PublishError::Other(e.into())
    }
}

/// Runs `body` while holding the operation lock of a tool, and releases the lock when `body` is
/// done, whatever it answered. A crash leaves no stuck lock either: the lease runs out.
pub async fn with_tool_lock<T, E: From<Error> + From<StoreError>>(
    state: &AppState,
    caller: &Caller,
    tool_id: &ToolId,
    operation: &str,
    body: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let lock = state
        .store()
        .lock_tool(&caller.org, tool_id, operation, state.settings().lock_lease)
        .await?
        .ok_or_else(|| Error::Conflict(IN_PROGRESS.into()))?;
    let result = body.await;
    lock.release().await?;
    result
}

/// Publishes a new version of a tool from the tip of the release branch.
pub async fn publish(state: &AppState, caller: &Caller, request: Publish) -> PublishResult {
    caller.require(Permission::ModifyTool)?;
    let started = std::time::Instant::now();
    let answer = publish_locked(state, caller, request).await;
    state.metrics().publish(answer.is_ok(), started.elapsed());
    answer
}

async fn publish_locked(state: &AppState, caller: &Caller, request: Publish) -> PublishResult {
    let store = state.store();
    let tool = store.get_tool(&caller.org, &request.tool_id).await?.filter(|t| !t.deprecated).ok_or(Error::NotFound)?;
    let builder = state.builder().map_err(|why| {
        tracing::error!(reason = why, "publish refused: no build toolchain");
        Error::Unavailable(format!("Publishing is not available on this server: {why}"))
    })?;
    with_tool_lock(state, caller, &request.tool_id, "publish", async {
        super::repo::ensure_repo(state, &caller.org).await?;
        let commit = state.repos().resolve(caller.org.as_str(), RELEASE_BRANCH).await.map_err(|_| Error::NotFound)?;
        let versions = store.versions_of(&caller.org, &request.tool_id).await?;
        let cap = state.settings().max_active_versions;
        if versions.iter().filter(|v| !v.deprecated).count() >= cap {
            return Err(Error::Rejected(format!(
                "More than {cap} active versions of the tool would exist: deprecate one before publishing another."
            ))
            .into());
        }
        if let Some(newest) = versions.iter().max_by_key(|v| (v.created_at, v.lambda_version)) {
            if newest.tool_commit_hash != commit {
                let older =
                    super::repo::is_ancestor(state, &caller.org, &commit, &newest.tool_commit_hash).await?;
                if older {
                    return Err(Error::Rejected(format!(
                        "Specified commit is older than the last valid commit: {RELEASE_BRANCH} is at {commit}, an ancestor of {} that version {} was published from.",
                        newest.tool_commit_hash, newest.version
                    ))
                    .into());
                }
            }
        }

        let job = BuildJob {
            tool_id: Some(&request.tool_id),
            kind: "publish",
            commit: &commit,
            project_path: &request.project_path,
        };
        let (output, build_id) = recorded_build(state, builder, caller, job).await?;
        let missing: Vec<&str> = output
            .spec
            .envvars
            .iter()
            .filter(|n| !tool.envvars.contains(n))
            .chain(output.spec.secret_envvars.iter().filter(|n| !tool.secret_envvars.contains(n)))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            let message = format!(
                "The environment variables required by the tool version do not exist on the tool: {} (secret ones must be secret on the tool).",
                missing.join(", ")
            );
            store.finish_build(&caller.org, &build_id, BuildState::Failed, &message, &output.log).await?;
            return Err(Error::Rejected(message).into());
        }

        let highest = versions.iter().map(|v| v.version).max();
        let version = Version::next(highest, request.bump);
        let inserted = store
            .insert_version(NewVersion {
                org_id: caller.org.clone(),
                tool_id: request.tool_id.clone(),
                version,
                required_envvars: output.spec.envvars.clone(),
                required_secret_envvars: output.spec.secret_envvars.clone(),
                input_schema: output.input_schema.clone(),
                takes_context: output.takes_context,
                entrypoint: output.spec.entrypoint.clone(),
                tool_commit_hash: commit.clone(),
                scaffold_hash: scaffold::hash().to_owned(),
                project_directory: request.project_path.clone(),
                content_digest: output.content_digest.clone(),
                environment_key: output.env.key.clone(),
                build_id: build_id.clone(),
                output_schema: output.output_schema.clone(),
                creator: caller.user.clone(),
            })
            .await;
        let version = match inserted {
            Ok(v) => v,
            Err(StoreError::AlreadyExists) => return Err(Error::Conflict(IN_PROGRESS.into()).into()),
            Err(e) => return Err(e.into()),
        };
        let summary = format!("published {}", version.version);
        store.finish_build(&caller.org, &build_id, BuildState::Succeeded, &summary, &output.log).await?;
        warm_up(state, &version);
        Ok(Published { version, build_id })
    })
    .await
}

/// What one recorded build is for: publishing a version or testing a commit.
pub(crate) struct BuildJob<'a> {
    /// The tool being published; none for a test.
    pub tool_id: Option<&'a ToolId>,
    /// `publish` or `test`, as the build record says.
    pub kind: &'static str,
    /// The commit to build.
    pub commit: &'a str,
    /// The project directory in it.
    pub project_path: &'a str,
}

/// Runs the build pipeline for `job` with a build record around it; a failed build is finished
/// in its record before it is answered.
pub(crate) async fn recorded_build(
    state: &AppState,
    builder: &Builder,
    caller: &Caller,
    job: BuildJob<'_>,
) -> Result<(BuildOutput, BuildId), PublishError> {
    let store = state.store();
    let identity = |purpose| async move {
        state.sandbox_identity(&caller.org, purpose).await.map_err(|e| Error::internal("no sandbox identity", e))
    };
    // uv works as the organization's build identity; its tests run as its tools do.
    let identities = Identities { build: identity(Purpose::Build).await?, run: identity(Purpose::Run).await? };
    let settings = state.settings();
    let timeout = settings.build_step_timeout;
    let limits = BuildLimits {
        timeout,
        cpu_secs: timeout.as_secs(),
        memory_bytes: settings.build_memory_bytes,
        processes: settings.build_max_processes,
        tmp_bytes: settings.build_tmp_bytes,
        ..BuildLimits::default()
    };
    let repo_dir = state.repos().path_of(caller.org.as_str()).map_err(|e| Error::internal("no repository path", e))?;
    let build_id = store.start_build(&caller.org, job.tool_id, job.kind, &caller.user).await?;
    let built = build(BuildInput {
        org_id: caller.org.as_str(),
        repo: &repo_dir,
        commit: job.commit,
        project_path: job.project_path,
        toolchain: &builder.toolchain,
        envs: &builder.envs,
        artifacts: &builder.artifacts,
        identities,
        network: settings.build_network.clone(),
        limits,
    })
    .await;
    match built {
        Ok(output) => Ok((output, build_id)),
        Err(failure) => {
            store.finish_build(&caller.org, &build_id, BuildState::Failed, &failure.message, &failure.log).await?;
            if matches!(failure.kind, FailureKind::Internal) {
                tracing::error!(build = %build_id, message = %failure.message, "build failed on the server's side");
            }
            Err(PublishError::Build(BuildFailed {
                org_id: caller.org.clone(),
                build_id,
                kind: failure.kind,
                message: failure.message,
            }))
        }
    }
}

/// Starts the new version's zygote in the background, so that its first invocation does not
/// wait for the tool's imports.
fn warm_up(state: &AppState, version: &ToolVersion) {
    let (Ok(builder), Some(pool)) = (state.builder(), state.runtime()) else { return };
    let (pool, builder, version, state) = (pool.clone(), builder.clone(), version.clone(), state.clone());
    tokio::spawn(async move {
        let Ok(env) = state.store().envvar_values(&version.org_id, &version.tool_id).await else { return };
        let Ok(identity) = state.sandbox_identity(&version.org_id, Purpose::Run).await else {
            return;
        };
        let (runtime, _) = super::invoke::version_runtime(&builder, identity, &version, env);
        let (started, init) = pool.zygote_traced(version.id.as_str(), &runtime).await;
        if let Err(e) = started {
            tracing::warn!(version = %version.id, error = %e, "the new version's runtime did not start");
        }
        if let Some(init) = init {
            let label = version.version.to_string();
            state.metrics().runtime_started(version.org_id.as_str(), version.tool_id.as_str(), &label, init);
        }
    });
}
