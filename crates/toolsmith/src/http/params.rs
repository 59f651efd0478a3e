//! Parsing of query strings and JSON bodies into typed values, collecting every problem as a
//! FastAPI-shaped [`FieldError`] so a client learns about all of them in one 422.

use serde_json::{Map, Value};

use super::error::{ApiError, FieldError, Loc};

/// The decoded pairs of a query string, in order; repeated keys are how lists arrive.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

/// Errors collected while reading one request.
#[derive(Debug, Default)]
pub struct Problems(Vec<FieldError>);

impl Problems {
    /// Records a problem.
    pub fn push(&mut self, loc: Vec<Loc>, kind: &str, msg: impl Into<String>, input: Option<Value>) {
        self.0.push(FieldError::new(loc, kind, msg, input));
    }

    /// How many problems were recorded so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` if nothing was recorded, else the 422 listing everything recorded.
    pub fn finish<T>(self, value: T) -> Result<T, ApiError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ApiError::validation(self.0))
        }
    }
}

fn qloc(name: &str) -> Vec<Loc> {
    vec![Loc::from("query"), Loc::from(name)]
}

impl Query {
    /// Decodes a raw query string (`None` when the URL has none).
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
        Query { pairs }
    }

    /// Every value given for `name`, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }

    /// The last value given for `name`, as FastAPI reads scalar parameters.
    pub fn last(&self, name: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// An optional boolean, accepting the spellings FastAPI accepts.
    pub fn opt_bool(&self, name: &str, problems: &mut Problems) -> Option<bool> {
        let raw = self.last(name)?;
        match parse_bool(raw) {
            Some(b) => Some(b),
            None => {
                problems.push(
                    qloc(name),
                    "bool_parsing",
                    "Input should be a valid boolean, unable to interpret input",
                    Some(Value::String(raw.to_owned())),
                );
                None
            }
        }
    }

    /// An integer with a default and inclusive bounds.
    pub fn int(&self, name: &str, default: i64, min: i64, max: Option<i64>, problems: &mut Problems) -> i64 {
        let Some(raw) = self.last(name) else { return default };
        let input = Some(Value::String(raw.to_owned()));
        let Ok(value) = raw.trim().parse::<i64>() else {
            problems.push(
                qloc(name),
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer",
                input,
            );
            return default;
        };
        if value < min {
            problems.push(
                qloc(name),
                "greater_than_equal",
                format!("Input should be greater than or equal to {min}"),
                input,
            );
            return default;
        }
        if let Some(max) = max {
            if value > max {
                problems.push(
                    qloc(name),
                    "less_than_equal",
                    format!("Input should be less than or equal to {max}"),
                    input,
                );
                return default;
            }
        }
        value
    }

    /// A list of 24-hex ids given as repeated `name` keys; duplicates are rejected as the
    /// contract's `uniqueItems` asks.
    pub fn id_list(&self, name: &str, problems: &mut Problems) -> Vec<String> {
        let values = self.all(name);
        for (i, v) in values.iter().enumerate() {
            if toolsmith_domain::ObjectId::parse(v).is_err() {
                problems.push(
                    vec![Loc::from("query"), Loc::from(name), Loc::from(i)],
                    "string_pattern_mismatch",
                    "String should match pattern '^[a-f0-9]{24}$'",
                    Some(Value::String(v.clone())),
                );
            }
        }
        unique(name, &values, problems);
        values
    }

    /// `sort_by` items: `+field` or `-field` (a leading space counts as `+`, because an
    /// unencoded `+` arrives as a space); returns `(field, descending)`.
    pub fn sort_by<F: Copy>(&self, allowed: &[(&str, F)], problems: &mut Problems) -> Vec<(F, bool)> {
        let mut keys = Vec::new();
        for (i, raw) in self.all("sort_by").iter().enumerate() {
            let (desc, field) = match raw.chars().next() {
                Some('+') | Some(' ') => (false, &raw[1..]),
                Some('-') => (true, &raw[1..]),
                _ => (false, ""),
            };
            match allowed.iter().find(|(name, _)| *name == field) {
                Some((_, f)) => keys.push((*f, desc)),
                None => {
                    let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
                    problems.push(
                        vec![Loc::from("query"), Loc::from("sort_by"), Loc::from(i)],
                        "value_error",
                        format!("Value error, each item must be '+' or '-' followed by one of: {}", names.join(", ")),
                        Some(Value::String(raw.clone())),
                    );
                }
            }
        }
        keys
    }
}

fn unique(name: &str, values: &[String], problems: &mut Problems) {
    let mut seen = std::collections::HashSet::new();
    if values.iter().any(|v| !seen.insert(v)) {
        problems.push(qloc(name), "set_item_not_hashable", "List items should be unique", None);
    }
}

fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "t" | "y" => Some(true),
        "false" | "0" | "no" | "off" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// Parses a request body as a JSON object; a body that is not JSON, or not an object, is a 422.
pub fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(
            vec![Loc::from("body"), Loc::from(e.column())],
            "json_invalid",
            "JSON decode error",
            Some(Value::Object(Map::from_iter([("error".to_owned(), Value::String(e.to_string()))]))),
        )
    })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(ApiError::invalid(
            vec![Loc::from("body")],
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from",
            Some(other),
        )),
    }
}

/// A view of one JSON object of a request body, with its location for error messages.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    loc: Vec<Loc>,
}

impl<'a> Fields<'a> {
    /// The object at `loc`.
    pub fn new(map: &'a Map<String, Value>, loc: Vec<Loc>) -> Self {
        Fields { map, loc }
    }

    /// The location of a field of this object.
    pub fn loc(&self, field: &str) -> Vec<Loc> {
        let mut loc = self.loc.clone();
        loc.push(Loc::from(field));
        loc
    }

    /// The raw value of a field; `null` counts as present.
    pub fn raw(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field)
    }

    /// A required field, recording `missing` when absent.
    pub fn required(&self, field: &str, problems: &mut Problems) -> Option<&'a Value> {
        let value = self.map.get(field);
        if value.is_none() {
            problems.push(self.loc(field), "missing", "Field required", None);
        }
        value
    }

    /// A required string field, stripped of surrounding white space and non-empty.
    pub fn stripped_string(&self, field: &str, problems: &mut Problems) -> Option<String> {
        let value = self.required(field, problems)?;
        string_value(value, self.loc(field), true, problems)
    }

    /// An optional string field (`null` and absent are both `None`), stripped and non-empty.
    pub fn opt_stripped_string(&self, field: &str, problems: &mut Problems) -> Option<String> {
        match self.map.get(field) {
            None | Some(Value::Null) => None,
            Some(v) => string_value(v, self.loc(field), true, problems),
        }
    }

    /// A required string field taken exactly as sent.
    pub fn raw_string(&self, field: &str, problems: &mut Problems) -> Option<String> {
        let value = self.required(field, problems)?;
        string_value(value, self.loc(field), false, problems)
    }

    /// A required boolean field (JSON `true`/`false` only).
    pub fn bool(&self, field: &str, problems: &mut Problems) -> Option<bool> {
        match self.required(field, problems)? {
            Value::Bool(b) => Some(*b),
            other => {
                problems.push(self.loc(field), "bool_type", "Input should be a valid boolean", Some(other.clone()));
                None
            }
        }
    }

    /// An optional list of objects (absent means empty), each handed to `item` with its location.
    pub fn object_list<T>(
        &self,
        field: &str,
        problems: &mut Problems,
        mut item: impl FnMut(Fields<'a>, &mut Problems) -> Option<T>,
    ) -> Vec<T> {
        let Some(value) = self.map.get(field) else { return Vec::new() };
        let Value::Array(items) = value else {
            problems.push(self.loc(field), "list_type", "Input should be a valid list", Some(value.clone()));
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, v) in items.iter().enumerate() {
            let mut loc = self.loc(field);
            loc.push(Loc::from(i));
            match v {
                Value::Object(map) => {
                    if let Some(t) = item(Fields::new(map, loc), problems) {
                        out.push(t);
                    }
                }
                other => problems.push(
                    loc,
                    "model_attributes_type",
                    "Input should be a valid dictionary or object to extract fields from",
                    Some(other.clone()),
                ),
            }
        }
        out
    }
}

/// Reads a JSON string; with `strip`, surrounding white space is removed and an empty result is
/// rejected, as the contract's "stripped non-empty string" types require.
pub fn string_value(value: &Value, loc: Vec<Loc>, strip: bool, problems: &mut Problems) -> Option<String> {
    let Value::String(s) = value else {
        problems.push(loc, "string_type", "Input should be a valid string", Some(value.clone()));
        return None;
    };
    if !strip {
        return Some(s.clone());
    }
    let trimmed = s.trim();
    if trimmed.is_empty() {
        problems.push(loc, "string_too_short", "String should have at least 1 character", Some(value.clone()));
        return None;
    }
    Some(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_lists_bools_ints_and_sort_keys() {
        let q =
            Query::parse(Some("id=a&id=b&deprecated=yes&limit=5&sort_by=%2Bname&sort_by=-deprecated&sort_by=+name"));
        assert_eq!(q.all("id"), vec!["a", "b"]);
        let mut p = Problems::default();
        assert_eq!(q.opt_bool("deprecated", &mut p), Some(true));
        assert_eq!(q.int("limit", 10, 1, Some(20), &mut p), 5);
        let keys = q.sort_by(&[("name", 1), ("deprecated", 2)], &mut p);
        assert_eq!(keys, vec![(1, false), (2, true), (1, false)]);
        assert!(p.0.is_empty());
    }

    #[test]
    fn bad_query_values_are_all_reported() {
        let q =
            Query::parse(Some("deprecated=maybe&limit=50&sort_by=name&sort_by=%2Bcolor&id=xyz&continuation_token=x"));
        let mut p = Problems::default();
        q.opt_bool("deprecated", &mut p);
        q.int("limit", 10, 1, Some(20), &mut p);
        q.int("continuation_token", 0, 0, None, &mut p);
        q.sort_by(&[("name", ())], &mut p);
        q.id_list("id", &mut p);
        let kinds: Vec<&str> = p.0.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["bool_parsing", "less_than_equal", "int_parsing", "value_error", "value_error", "string_pattern_mismatch"]
        );
    }

    #[test]
    fn json_bodies() {
        assert!(json_object(b"{\"a\":1}").is_ok());
        assert_eq!(json_object(b"nope").unwrap_err().status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(json_object(b"[1]").unwrap_err().status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
    }
}
