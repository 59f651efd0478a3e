//! Tool versions: publish (`POST /tool/{id}/version`), list (`GET /tool/{id}/version`),
//! deprecate (`DELETE /tool/{id}/version/{versions}`), and the build log extension.

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};
use toolsmith_build::export::is_ancestor;
use toolsmith_build::pipeline::{build, BuildInput, BuildOutput, FailureKind};
use toolsmith_build::{BuildLimits, Identities};
use toolsmith_domain::{BumpType, Specifier, Version};
use toolsmith_repo::scaffold;
use toolsmith_runtime::Purpose;
use toolsmith_store::{BuildState, NewVersion, StoreError, ToolVersion, UserRef};

use super::repo::ensure_repo;
use crate::app::{AppState, Builder};
use crate::http::auth::Caller;
use crate::http::error::{ApiError, Loc};
use crate::http::extract::{JsonBody, PathParams};
use crate::http::operations::{DEPRECATE_VERSIONS, GET_BUILD, GET_VERSIONS, PUBLISH_VERSION};
use crate::http::params::{Fields, Problems, Query};
use crate::http::wire::{ToolVersionInstance, VersionUserInfo};

/// The branch versions are published from.
const RELEASE_BRANCH: &str = "main";

fn build_header(id: &str) -> (HeaderName, HeaderValue) {
    (HeaderName::from_static("x-toolsmith-build-id"), HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("")))
}

/// Reads `project_path`: relative, matching the contract's `^[-\w\d_/]+$`, without empty parts.
pub(crate) fn project_path(fields: &Fields<'_>, problems: &mut Problems) -> Option<String> {
    let path = fields.stripped_string("project_path", problems)?;
    let valid = path.chars().all(|c| c.is_alphanumeric() || "-_/".contains(c))
        && !path.starts_with('/')
        && !path.split('/').any(str::is_empty);
    if !valid {
        problems.push(
            fields.loc("project_path"),
            "string_pattern_mismatch",
            "String should match pattern '^[-\\w\\d_/]+$' (relative, without empty parts)",
            fields.raw("project_path").cloned(),
        );
        return None;
    }
    Some(path)
}

/// What one recorded build is for: publishing a version or testing a commit.
pub(crate) struct BuildJob<'a> {
    /// The tool being published; none for a test.
    pub tool_id: Option<&'a str>,
    /// `publish` or `test`, as the build record says.
    pub kind: &'static str,
    /// The commit to build.
    pub commit: &'a str,
    /// The project directory in it.
    pub project_path: &'a str,
    /// The 404 text for a missing project directory.
    pub not_found: &'static str,
    /// The start of the 400 text for failing tests.
    pub ci_failed: &'static str,
}

/// Runs the build pipeline for `job` with a build record around it. A failed build becomes the
/// answer to give, carrying `X-Toolsmith-Build-Id`; a built one comes with its build id.
pub(crate) async fn recorded_build(
    state: &AppState,
    builder: &Builder,
    caller: &Caller,
    job: BuildJob<'_>,
) -> Result<(BuildOutput, String), ApiError> {
    let store = state.store();
    let repo_dir = state.repos().path_of(&caller.org_id).map_err(|_| ApiError::internal())?;
    let identity = |purpose| async move {
        state.sandbox_identity(&caller.org_id, purpose).await.map_err(|e| {
            tracing::error!(error = %e, "no sandbox identity for a build");
            ApiError::internal()
        })
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
    let build_id = store.start_build(&caller.org_id, job.tool_id, job.kind, &caller.user).await?;
    let built = build(BuildInput {
        org_id: &caller.org_id,
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
    let failure = match built {
        Ok(output) => return Ok((output, build_id)),
        Err(failure) => failure,
    };
    store.finish_build(&caller.org_id, &build_id, BuildState::Failed, &failure.message, &failure.log).await?;
    let see = format!("(build log: GET /v1/{}/tool/build/{build_id})", caller.org_id);
    let err = match failure.kind {
        FailureKind::ProjectNotFound => ApiError::not_found(job.not_found),
        FailureKind::TestsFailed => ApiError::bad_request(format!("{} {} {see}", job.ci_failed, failure.message)),
        FailureKind::Internal => {
            tracing::error!(build = %build_id, message = %failure.message, "build failed on the server's side");
            ApiError::internal()
        }
        _ => ApiError::bad_request(format!("Tool build has failed: {} {see}", failure.message)),
    };
    let (name, value) = build_header(&build_id);
    Err(err.with_header(name, value))
}

/// Publishes a new version of a tool from the tip of `main`.
pub async fn publish(
    State(state): State<AppState>,
    caller: Extension<Caller>,
    path: PathParams,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let answer = publish_version(State(state.clone()), caller, path, body).await;
    let succeeded = matches!(&answer, Ok(response) if response.status() == axum::http::StatusCode::CREATED);
    state.metrics().publish(succeeded, started.elapsed());
    answer
}

async fn publish_version(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let tool_id = path.object_id("tool_id")?;
    let fields = Fields::new(&body, vec![Loc::from("body")]);
    let mut problems = Problems::default();
    let project_path = project_path(&fields, &mut problems);
    let bump = match fields.required("bump_type", &mut problems) {
        Some(Value::String(s)) => match BumpType::parse(s) {
            Some(b) => Some(b),
            None => {
                problems.push(
                    fields.loc("bump_type"),
                    "enum",
                    "Input should be 'major', 'minor' or 'patch'",
                    Some(Value::String(s.clone())),
                );
                None
            }
        },
        Some(other) => {
            problems.push(
                fields.loc("bump_type"),
                "enum",
                "Input should be 'major', 'minor' or 'patch'",
                Some(other.clone()),
            );
            None
        }
        None => None,
    };
    // Older clients name the branch (`main` or `team`); there is one release branch, so both
    // mean it.
    if let Some(branch) = fields.raw("branch").filter(|b| !b.is_null()) {
        if !matches!(branch.as_str(), Some("main" | "team")) {
            problems.push(fields.loc("branch"), "enum", "Input should be 'main' or 'team'", Some(branch.clone()));
        }
    }
    let (Some(project_path), Some(bump)) = problems.finish((project_path, bump))? else {
        return Err(ApiError::internal());
    };

    let store = state.store();
    let not_found = || ApiError::not_found(PUBLISH_VERSION.org_not_found);
    let tool = store.get_tool(&caller.org_id, &tool_id).await?.filter(|t| !t.deprecated).ok_or_else(not_found)?;
    let builder = state.builder().map_err(|why| {
        tracing::error!(reason = why, "publish refused: no build toolchain");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("Publishing is not available on this server: {why}"))
    })?;
    let lock = store
        .lock_tool(&caller.org_id, &tool_id, "publish", state.settings().lock_lease)
        .await?
        .ok_or_else(|| ApiError::conflict("A related operation is in progress."))?;

    ensure_repo(&state, &caller.org_id).await?;
    let commit = state.repos().resolve(&caller.org_id, RELEASE_BRANCH).await.map_err(|_| not_found())?;
    let versions = store.versions_of(&caller.org_id, &tool_id).await?;
    let cap = state.settings().max_active_versions;
    if versions.iter().filter(|v| !v.deprecated).count() >= cap {
        return Err(ApiError::bad_request(format!(
            "More than {cap} active versions of the tool would exist: deprecate one before publishing another."
        )));
    }
    let repo_dir = state.repos().path_of(&caller.org_id).map_err(|_| ApiError::internal())?;
    if let Some(newest) = versions.iter().max_by_key(|v| (v.created_at, v.lambda_version)) {
        if newest.tool_commit_hash != commit {
            let older = is_ancestor(&repo_dir, &commit, &newest.tool_commit_hash).await.map_err(|e| {
                tracing::error!(error = %e, "ancestry check failed");
                ApiError::internal()
            })?;
            if older {
                return Err(ApiError::bad_request(format!(
                    "Specified commit is older than the last valid commit: {RELEASE_BRANCH} is at {commit}, an ancestor of {} that version {} was published from.",
                    newest.tool_commit_hash, newest.version
                )));
            }
        }
    }

    let job = BuildJob {
        tool_id: Some(&tool_id),
        kind: "publish",
        commit: &commit,
        project_path: &project_path,
        not_found: PUBLISH_VERSION.org_not_found,
        ci_failed: "The tool build has failed CI checks:",
    };
    let (output, build_id) = match recorded_build(&state, builder, &caller, job).await {
        Ok(built) => built,
        Err(err) => {
            lock.release().await?;
            return Err(err);
        }
    };

    let missing: Vec<&String> = output
        .spec
        .envvars
        .iter()
        .filter(|n| !tool.envvars.contains(n))
        .chain(output.spec.secret_envvars.iter().filter(|n| !tool.secret_envvars.contains(n)))
        .collect();
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        let message = format!(
            "The environment variables required by the tool version do not exist on the tool: {} (secret ones must be secret on the tool).",
            names.join(", ")
        );
        store.finish_build(&caller.org_id, &build_id, BuildState::Failed, &message, &output.log).await?;
        lock.release().await?;
        return Err(ApiError::bad_request(message));
    }

    let highest = versions.iter().map(|v| v.version).max();
    let version = Version::next(highest, bump);
    let inserted = store
        .insert_version(NewVersion {
            org_id: caller.org_id.clone(),
            tool_id: tool_id.clone(),
            version,
            required_envvars: output.spec.envvars.clone(),
            required_secret_envvars: output.spec.secret_envvars.clone(),
            input_schema: output.input_schema.clone(),
            takes_context: output.takes_context,
            entrypoint: output.spec.entrypoint.clone(),
            tool_commit_hash: commit,
            scaffold_hash: scaffold::hash().to_owned(),
            project_directory: project_path,
            content_digest: output.content_digest.clone(),
            environment_key: output.env.key.clone(),
            build_id: build_id.clone(),
            creator: caller.user.clone(),
        })
        .await;
    let result = match inserted {
        Ok(v) => {
            store
                .finish_build(
                    &caller.org_id,
                    &build_id,
                    BuildState::Succeeded,
                    &format!("published {}", v.version),
                    &output.log,
                )
                .await?;
            warm_up(&state, &v, &output);
            let (name, value) = build_header(&build_id);
            Ok((StatusCode::CREATED, [(name, value)], Json(json!({"new_version": v.version.to_string()})))
                .into_response())
        }
        Err(StoreError::AlreadyExists) => Err(ApiError::conflict("A related operation is in progress.")),
        Err(e) => Err(e.into()),
    };
    lock.release().await?;
    result
}

/// Starts the new version's zygote in the background, so that its first invocation does not
/// wait for the tool's imports.
fn warm_up(state: &AppState, version: &ToolVersion, output: &toolsmith_build::pipeline::BuildOutput) {
    let (Ok(builder), Some(pool)) = (state.builder(), state.runtime()) else { return };
    let pool = pool.clone();
    let store = state.store().clone();
    let version = version.clone();
    let project = output.artifact_dir.clone();
    let venv = output.env.dir.clone();
    let base_prefix = builder.toolchain.base_prefix.clone();
    let state = state.clone();
    tokio::spawn(async move {
        let Ok(env) = store.envvar_values(&version.org_id, &version.tool_id).await else { return };
        let Ok(identity) = state.sandbox_identity(&version.org_id, toolsmith_runtime::Purpose::Run).await else {
            return;
        };
        let secrets = env.iter().filter(|e| e.is_secret).map(|e| e.value.clone()).collect();
        let runtime = toolsmith_runtime::VersionRuntime {
            identity,
            secrets,
            project,
            venv,
            base_prefix,
            entrypoint: version.entrypoint.clone(),
            takes_context: version.takes_context,
            env: env.into_iter().map(|e| (e.name, e.value)).collect(),
        };
        let (started, init) = pool.zygote_traced(&version.id, &runtime).await;
        if let Err(e) = started {
            tracing::warn!(version = %version.id, error = %e, "the new version's runtime did not start");
        }
        if let Some(init) = init {
            state.metrics().runtime_started(&version.org_id, &version.tool_id, &version.version.to_string(), init);
        }
    });
}

/// Lists a tool's versions.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathParams,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let tool_id = path.object_id("tool_id")?;
    let q = Query::parse(raw.as_deref());
    let mut problems = Problems::default();
    let deprecated = q.opt_bool("deprecated", &mut problems);
    let specifier = match q.last("versions").filter(|s| !s.trim().is_empty()) {
        None => None,
        Some(raw) => match Specifier::parse(raw) {
            Ok(s) => Some(s),
            Err(why) => {
                problems.push(
                    vec![Loc::from("query"), Loc::from("versions")],
                    "value_error",
                    format!("Value error, invalid version specifier: {why}"),
                    Some(Value::String(raw.to_owned())),
                );
                None
            }
        },
    };
    let mut creators = Vec::new();
    for (i, raw) in q.all("creator").iter().enumerate() {
        match raw.split_once(',') {
            Some((org, user)) if !org.is_empty() && !user.is_empty() => {
                creators.push(UserRef { org_id: org.to_owned(), user_id: user.to_owned() })
            }
            _ => problems.push(
                vec![Loc::from("query"), Loc::from("creator"), Loc::from(i)],
                "value_error",
                "Value error, a creator must have the form org_id,user_id",
                Some(Value::String(raw.clone())),
            ),
        }
    }
    #[derive(Clone, Copy)]
    enum Key {
        Created,
        Major,
        Minor,
        Patch,
        Deprecated,
    }
    let sort = q.sort_by(
        &[
            ("created_at", Key::Created),
            ("version.major", Key::Major),
            ("version.minor", Key::Minor),
            ("version.patch", Key::Patch),
            ("deprecated", Key::Deprecated),
        ],
        &mut problems,
    );
    let limit = q.int("limit", 50, 0, Some(50), &mut problems);
    let offset = q.int("continuation_token", 0, 0, None, &mut problems);
    problems.finish(())?;

    let store = state.store();
    if store.get_tool(&caller.org_id, &tool_id).await?.is_none() {
        return Err(ApiError::not_found(GET_VERSIONS.org_not_found));
    }
    let all = store.versions_of(&caller.org_id, &tool_id).await?;
    let filter_values = (offset == 0).then(|| {
        let mut seen: BTreeMap<(String, String), ()> = BTreeMap::new();
        for v in &all {
            seen.insert((v.creator.org_id.clone(), v.creator.user_id.clone()), ());
        }
        let creators: Vec<VersionUserInfo> =
            seen.into_keys().map(|(org_id, user_id)| VersionUserInfo { user_id, user_org_id: org_id }).collect();
        json!({ "creators": creators })
    });
    let mut selected: Vec<ToolVersion> = all
        .into_iter()
        .filter(|v| deprecated.is_none_or(|d| v.deprecated == d))
        .filter(|v| specifier.as_ref().is_none_or(|s| s.matches(&v.version)))
        .filter(|v| creators.is_empty() || creators.contains(&v.creator))
        .collect();
    selected.sort_by(|a, b| {
        for (key, desc) in &sort {
            let ord = match key {
                Key::Created => a.created_at.cmp(&b.created_at),
                Key::Major => a.version.major.cmp(&b.version.major),
                Key::Minor => a.version.minor.cmp(&b.version.minor),
                Key::Patch => a.version.patch.cmp(&b.version.patch),
                Key::Deprecated => a.deprecated.cmp(&b.deprecated),
            };
            let ord = if *desc { ord.reverse() } else { ord };
            if ord.is_ne() {
                return ord;
            }
        }
        (a.created_at, &a.id).cmp(&(b.created_at, &b.id))
    });
    let total = selected.len() as i64;
    let page: Vec<ToolVersionInstance> =
        selected.into_iter().skip(offset as usize).take(limit as usize).map(Into::into).collect();
    let next = offset + page.len() as i64;
    let has_more = next < total && limit > 0;
    Ok(Json(json!({
        "tool_versions": page,
        "has_more": has_more,
        "continuation_token": has_more.then_some(next),
        "filter_values": filter_values,
    })))
}

/// Deprecates every live version matching a PEP 440 specifier (percent-encoded in the path).
pub async fn deprecate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathParams,
) -> Result<StatusCode, ApiError> {
    let tool_id = path.object_id("tool_id")?;
    let raw = path.0.get("versions").cloned().unwrap_or_default();
    let specifier = Specifier::parse(&raw).map_err(|why| {
        ApiError::invalid(
            vec![Loc::from("path"), Loc::from("versions")],
            "value_error",
            format!("Value error, invalid version specifier: {why}"),
            Some(Value::String(raw.clone())),
        )
    })?;
    let store = state.store();
    if store.get_tool(&caller.org_id, &tool_id).await?.is_none() {
        return Err(ApiError::not_found(DEPRECATE_VERSIONS.org_not_found));
    }
    let ids: Vec<String> = store
        .versions_of(&caller.org_id, &tool_id)
        .await?
        .into_iter()
        .filter(|v| !v.deprecated && specifier.matches(&v.version))
        .map(|v| v.id)
        .collect();
    store.deprecate_versions(&caller.org_id, &tool_id, &ids, &caller.user).await?;
    // Deprecated versions no longer run here; other servers notice on their next invoke.
    if let Some(pool) = state.runtime() {
        pool.evict(&ids);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/{org}/tool/build/{build_id}`: a build's state, summary and full log.
pub async fn build_log(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathParams,
) -> Result<Json<Value>, ApiError> {
    let id = path.object_id("build_id")?;
    let build = state
        .store()
        .get_build(&caller.org_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(GET_BUILD.org_not_found))?;
    Ok(Json(json!({
        "id": build.id,
        "tool_id": build.tool_id,
        "kind": build.kind,
        "state": build.state.as_str(),
        "message": build.message,
        "log": build.log,
        "created_at": build.created_at.to_rfc3339(),
        "finished_at": build.finished_at.map(|t| t.to_rfc3339()),
    })))
}
