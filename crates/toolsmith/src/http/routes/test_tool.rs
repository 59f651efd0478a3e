//! `POST /v1/{org}/tool/test`: builds the tip of a branch and runs inputs on it, without
//! publishing or recording anything but the build.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;
use toolsmith_domain::names::EnvVarName;

use crate::app::AppState;
use crate::http::error::{ApiError, Loc};
use crate::http::extract::JsonBody;
use crate::http::operations::TEST_TOOL;
use crate::http::params::{Fields, Problems};
use crate::http::wire::invoke::{parse_inputs, InvocationResults};
use crate::service::test::{TestEnv, TestRun};
use crate::service::{self, Caller};

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
    let env = TestEnv { plain: envvars, secret: secret_envvars };
    let request = TestRun { branch, project_path, env, inputs };
    let tested = service::test::test(&state, &caller, request)
        .await
        .map_err(super::versions::publish_error(&TEST_TOOL, "The specified tool commit has failed CI checks:"))?;
    let mut response = Json(InvocationResults::new(tested.results)).into_response();
    if let Some(id) = tested.build_id {
        let (name, value) = super::versions::build_header(&id);
        response.headers_mut().insert(name, value);
    }
    Ok(response)
}
