//! The request and response bodies of invoking (`InvokeToolVersionRequest`,
//! `InvokeToolVersionResponse`) and testing: reading the `inputs` list the way the compatible API's
//! pydantic models do, so that every problem is reported at once with pydantic's locations,
//! kinds and messages.

use serde::Serialize;
use serde_json::{Map, Value};
use toolsmith_domain::{InvocationSource, SourceType};

use crate::http::error::Loc;
use crate::http::params::{Fields, Problems};
use crate::service::invoke::{Finished, Input, Mode, SensitiveVariables, MAX_INPUTS};

const MAX_USER_VARIABLES: usize = 20;

/// Reads one of an input's user variable maps (at most 20 entries, `snake_case` names, string
/// values), recording every problem; absent or `null` means none.
pub(crate) fn user_variables(fields: &Fields<'_>, name: &str, problems: &mut Problems) -> Map<String, Value> {
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
            Some(Value::String(m)) if Mode::parse(m).is_some() => Mode::parse(m),
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
        Some(Input {
            parameters: parameters?,
            mode: mode?,
            nonsensitive,
            sensitive: SensitiveVariables(sensitive),
            source,
        })
    })
}

/// `InvocationResult`: the outcome of one input, as the contract's union of a success and a
/// failure.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum InvocationResult {
    /// The tool returned.
    Succeeded {
        /// Always `true`.
        succeeded: bool,
        /// What the tool returned, as JSON text.
        output: String,
        /// Milliseconds in the tool call.
        duration_ms: i64,
    },
    /// The tool raised, timed out, crashed or could not be imported.
    Failed {
        /// Always `false`.
        succeeded: bool,
        /// The exception's message, masked.
        exception_message: String,
        /// The exception's type.
        exception_type: String,
        /// The traceback, masked.
        exception_stack_trace: Vec<String>,
        /// Milliseconds until the failure.
        duration_ms: i64,
    },
}

impl From<Finished> for InvocationResult {
    fn from(f: Finished) -> Self {
        if f.succeeded {
            InvocationResult::Succeeded {
                succeeded: true,
                output: f.output.unwrap_or_default(),
                duration_ms: f.duration_ms,
            }
        } else {
            InvocationResult::Failed {
                succeeded: false,
                exception_message: f.exception_message.unwrap_or_default(),
                exception_type: f.exception_type.unwrap_or_default(),
                exception_stack_trace: f.trace,
                duration_ms: f.duration_ms,
            }
        }
    }
}

/// `InvokeToolVersionResponse`, also the test endpoint's answer.
#[derive(Debug, Serialize)]
pub struct InvocationResults {
    /// One result per input, in input order.
    pub invocation_results: Vec<InvocationResult>,
}

impl InvocationResults {
    /// The answer for results in input order.
    pub fn new(results: Vec<Finished>) -> Self {
        InvocationResults { invocation_results: results.into_iter().map(InvocationResult::from).collect() }
    }
}
