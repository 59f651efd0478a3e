//! `POST /v1/{org}/tool/{tool_id}/envvar`: inserts, updates and deletes of a tool's environment
//! variables, applied all together or not at all.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde_json::Value;
use toolsmith_domain::EnvVarName;
use toolsmith_store::{EnvVarChanges, EnvVarInsert};

use toolsmith_domain::ToolId;

use crate::app::AppState;
use crate::http::error::{ApiError, Loc};
use crate::http::extract::{JsonBody, PathParams};
use crate::http::operations::MODIFY_ENVVARS;
use crate::http::params::{Fields, Problems};
use crate::service::envvars::MAX_CHANGES;
use crate::service::{self, Caller};

/// Applies one batch of env var changes.
pub async fn modify(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: PathParams,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    let tool_id = path.id::<ToolId>("tool_id")?;
    let fields = Fields::new(&body, vec![Loc::from("body")]);
    let mut problems = Problems::default();
    let mut seen: HashMap<String, Vec<Loc>> = HashMap::new();
    let mut name_of = |item: &Fields, problems: &mut Problems| -> Option<EnvVarName> {
        let raw = item.stripped_string("name", problems)?;
        match EnvVarName::parse(&raw) {
            Ok(name) => {
                if let Some(first) = seen.insert(name.as_str().to_owned(), item.loc("name")) {
                    problems.push(
                        item.loc("name"),
                        "value_error",
                        format!(
                            "Value error, the environment variable {name} appears more than once in the request (first at {})",
                            render_loc(&first)
                        ),
                        Some(Value::String(raw)),
                    );
                    return None;
                }
                Some(name)
            }
            Err(e) => {
                problems.push(item.loc("name"), "string_pattern_mismatch", e.to_string(), Some(Value::String(raw)));
                None
            }
        }
    };
    let inserts = fields.object_list("inserts", &mut problems, |item, problems| {
        let name = name_of(&item, problems);
        let value = item.raw_string("value", problems);
        let is_secret = item.bool("is_secret", problems);
        Some(EnvVarInsert { name: name?, value: value?, is_secret: is_secret? })
    });
    let updates = fields.object_list("updates", &mut problems, |item, problems| {
        let name = name_of(&item, problems);
        let value = item.raw_string("value", problems);
        Some((name?, value?))
    });
    let deletes = fields.object_list("deletes", &mut problems, |item, problems| name_of(&item, problems));
    let total = inserts.len() + updates.len() + deletes.len();
    if total > MAX_CHANGES {
        problems.push(
            vec![Loc::from("body")],
            "too_long",
            format!("Value error, at most {MAX_CHANGES} changes are accepted in one request, not {total}"),
            None,
        );
    }
    let changes = problems.finish(EnvVarChanges { inserts, updates, deletes })?;

    service::envvars::modify(&state, &caller, &tool_id, &changes)
        .await
        .map_err(ApiError::from_service(&MODIFY_ENVVARS))?;
    Ok(StatusCode::NO_CONTENT)
}

fn render_loc(loc: &[Loc]) -> String {
    loc.iter()
        .map(|l| match l {
            Loc::Key(k) => k.clone(),
            Loc::Index(i) => i.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}
