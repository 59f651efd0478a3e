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

    /// Everything recorded, for a surface that reports problems in its own shape.
    pub fn into_errors(self) -> Vec<FieldError> {
        self.0
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

    /// An integer with a default and inclusive bounds. Values are `i64`, so without a `max` the
    /// bound is `i64::MAX`; a run of digits beyond `i64` is out of range (reported against the
    /// bound it passes, as for any other value out of range), not unparseable.
    pub fn int(&self, name: &str, default: i64, min: i64, max: Option<i64>, problems: &mut Problems) -> i64 {
        let Some(raw) = self.last(name) else { return default };
        let input = Some(Value::String(raw.to_owned()));
        let text = raw.trim();
        let max = max.unwrap_or(i64::MAX);
        let value = match text.parse::<i64>() {
            Ok(value) => Some(value),
            Err(_) if !is_integer(text) => {
                problems.push(
                    qloc(name),
                    "int_parsing",
                    "Input should be a valid integer, unable to parse string as an integer",
                    input,
                );
                return default;
            }
            // Too long for i64: below `min` or above `max`, whichever way it points.
            Err(_) => None,
        };
        if value.map_or(text.starts_with('-'), |v| v < min) {
            problems.push(
                qloc(name),
                "greater_than_equal",
                format!("Input should be greater than or equal to {min}"),
                input,
            );
            return default;
        }
        match value {
            Some(value) if value <= max => value,
            _ => {
                problems.push(
                    qloc(name),
                    "less_than_equal",
                    format!("Input should be less than or equal to {max}"),
                    input,
                );
                default
            }
        }
    }

    /// A non-negative integer (a size, a page, an offset) with a default and inclusive bounds,
    /// as [`Query::int`] reads it, in the type used to count things.
    pub fn count(&self, name: &str, default: usize, min: usize, max: Option<usize>, problems: &mut Problems) -> usize {
        let wide = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let value = self.int(name, wide(default), wide(min), max.map(wide), problems);
        usize::try_from(value).unwrap_or(default)
    }

    /// A list of 24-hex ids given as repeated `name` keys; duplicates are rejected as the
    /// contract's `uniqueItems` asks.
    pub fn id_list<T: std::str::FromStr>(&self, name: &str, problems: &mut Problems) -> Vec<T> {
        let values = self.all(name);
        let mut ids = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            match v.parse::<T>() {
                Ok(id) => ids.push(id),
                Err(_) => problems.push(
                    vec![Loc::from("query"), Loc::from(name), Loc::from(i)],
                    "string_pattern_mismatch",
                    "String should match pattern '^[a-f0-9]{24}$'",
                    Some(Value::String(v.clone())),
                ),
            }
        }
        unique(name, &values, problems);
        ids
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

/// Whether `text` is an optionally signed run of ASCII digits (an integer of any size).
fn is_integer(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
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
        q.id_list::<toolsmith_domain::ToolId>("id", &mut p);
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

/// Properties of query and body parsing over arbitrary input: nothing panics, what is accepted is
/// within its documented bounds, and what a client encodes is what the server reads.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn encode(pairs: &[(String, String)]) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            s.append_pair(k, v);
        }
        s.finish()
    }

    /// Integers as a query string carries them: in range, at the edges of `i64`, beyond it, signed,
    /// padded, or not numbers at all.
    fn int_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            (-5i64..130).prop_map(|n| n.to_string()),
            "[+-]?[0-9]{15,30}",
            "[ ]?[+-]?[0-9]{1,4}[ ]?",
            any::<String>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn what_a_client_encodes_is_what_is_read(pairs in proptest::collection::vec((any::<String>(), any::<String>()), 0..6)) {
            let q = Query::parse(Some(&encode(&pairs)));
            for (k, _) in &pairs {
                let expected: Vec<String> = pairs.iter().filter(|(k2, _)| k2 == k).map(|(_, v)| v.clone()).collect();
                prop_assert_eq!(q.last(k), expected.last().map(String::as_str));
                prop_assert_eq!(q.all(k), expected);
            }
        }

        #[test]
        fn raw_query_strings_never_panic(raw in any::<String>(), min in -3i64..3, max in proptest::option::of(0i64..200)) {
            let q = Query::parse(Some(&raw));
            let mut p = Problems::default();
            for name in ["limit", "continuation_token", "sort_by", "id", "deprecated", ""] {
                let _ = q.int(name, 0, min, max, &mut p);
                let _ = q.count(name, 0, 0, max.map(|m| m as usize), &mut p);
                let _ = q.opt_bool(name, &mut p);
                let _ = q.id_list::<toolsmith_domain::ToolId>(name, &mut p);
            }
            let _ = q.sort_by(&[("name", 0), ("deprecated", 1)], &mut p);
        }

        #[test]
        fn accepted_integers_are_within_bounds(text in int_text(), min in prop_oneof![Just(0i64), Just(1), any::<i64>()], max in proptest::option::of(any::<i64>())) {
            let q = Query::parse(Some(&encode(&[("n".into(), text.clone())])));
            let mut p = Problems::default();
            let value = q.int("n", 7, min, max, &mut p);
            let exact = text.trim().parse::<i64>().ok();
            if p.is_empty() {
                prop_assert_eq!(Some(value), exact);
                prop_assert!(value >= min && max.is_none_or(|m| value <= m));
            } else {
                prop_assert_eq!(value, 7, "a refused value gives the default");
                prop_assert_eq!(p.len(), 1);
                let kind = p.0[0].kind.as_str();
                let in_range = exact.is_some_and(|v| v >= min && max.is_none_or(|m| v <= m));
                prop_assert!(!in_range, "{text:?} refused as {kind}");
                // A number of any size is out of range, never "not an integer".
                prop_assert_eq!(kind == "int_parsing", !is_integer(text.trim()), "{:?} refused as {}", text, kind);
            }
        }

        #[test]
        fn counts_are_within_bounds(text in int_text(), min in 0usize..3, max in proptest::option::of(0usize..200)) {
            let q = Query::parse(Some(&encode(&[("n".into(), text)])));
            let mut p = Problems::default();
            let value = q.count("n", min, min, max, &mut p);
            prop_assert!(value >= min && max.is_none_or(|m| value <= m || value == min));
        }

        #[test]
        fn accepted_ids_are_24_hex(ids in proptest::collection::vec(prop_oneof!["[0-9a-f]{24}", "[0-9a-fA-Z]{22,26}", any::<String>()], 0..4)) {
            let pairs: Vec<(String, String)> = ids.iter().map(|i| ("id".to_owned(), i.clone())).collect();
            let q = Query::parse(Some(&encode(&pairs)));
            let mut p = Problems::default();
            let got: Vec<String> =
                q.id_list::<toolsmith_domain::ToolId>("id", &mut p).iter().map(ToString::to_string).collect();
            let valid = |i: &String| i.len() == 24 && i.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            let expected: Vec<String> = ids.iter().filter(|i| valid(i)).cloned().collect();
            prop_assert_eq!(&got, &expected);
            let all_valid = ids.iter().all(valid);
            let unique = ids.iter().collect::<std::collections::HashSet<_>>().len() == ids.len();
            prop_assert_eq!(p.is_empty(), all_valid && unique);
        }

        #[test]
        fn sort_keys_need_a_direction_and_a_known_field(items in proptest::collection::vec(prop_oneof!["[-+ ]?(name|deprecated|color)", any::<String>()], 0..4)) {
            let pairs: Vec<(String, String)> = items.iter().map(|i| ("sort_by".to_owned(), i.clone())).collect();
            let q = Query::parse(Some(&encode(&pairs)));
            let mut p = Problems::default();
            let keys = q.sort_by(&[("name", 0), ("deprecated", 1)], &mut p);
            prop_assert_eq!(keys.len() + p.len(), items.len());
            for raw in &items {
                let ok = matches!(raw.chars().next(), Some('+' | '-' | ' ')) && matches!(&raw[1..], "name" | "deprecated");
                prop_assert_eq!(p.0.iter().any(|e| e.input == Some(Value::String(raw.clone()))), !ok, "{:?}", raw);
            }
        }

        #[test]
        fn bodies_parse_exactly_when_they_are_json_objects(bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            "[{}\\[\\]\":,0-9a-z ]{0,24}".prop_map(String::into_bytes),
        ]) {
            let expected = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| v.as_object().cloned());
            match json_object(&bytes) {
                Ok(map) => prop_assert_eq!(Some(map), expected),
                Err(e) => {
                    prop_assert!(expected.is_none());
                    prop_assert_eq!(e.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
                }
            }
        }

        #[test]
        fn stripped_strings_are_non_empty_and_trimmed(value in prop_oneof![any::<String>().prop_map(Value::String), any::<i64>().prop_map(Value::from), Just(Value::Null)]) {
            let mut p = Problems::default();
            match string_value(&value, vec![Loc::from("body"), Loc::from("f")], true, &mut p) {
                Some(s) => {
                    prop_assert!(!s.is_empty());
                    prop_assert_eq!(Some(s.as_str()), value.as_str().map(str::trim));
                }
                None => {
                    prop_assert_eq!(p.len(), 1);
                    prop_assert_eq!(p.0[0].input.as_ref(), Some(&value), "the refused value is reported");
                }
            }
        }
    }
}
