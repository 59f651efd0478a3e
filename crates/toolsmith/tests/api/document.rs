//! Checks responses against toolsmith's own OpenAPI document (`/openapi.json`), which must
//! describe what the server does: every status an operation answers is documented, with the
//! content type it is sent with, and a JSON body validates against the documented schema.

use std::sync::OnceLock;

use serde_json::Value;

use crate::support::Resp;

/// The document the server serves, loaded once.
fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        let text = std::fs::read_to_string(path).expect("read openapi.json");
        serde_json::from_str(&text).expect("parse openapi.json")
    })
}

/// Asserts that `resp`, the answer to `method` on the documented path `template` (such as
/// `/v1/{organization}/tool/repo/file`), is described by the document.
pub fn check(method: &str, template: &str, resp: &Resp) {
    let doc = document();
    let method = method.to_ascii_lowercase();
    let operation = &doc["paths"][template][&method];
    assert!(operation.is_object(), "{method} {template} is not in /openapi.json");
    let status = resp.status.to_string();
    let documented = &operation["responses"][&status];
    assert!(
        !documented.is_null(),
        "{method} {template} answered {status}, which /openapi.json does not document: {}",
        resp.text
    );
    let Some(content) = documented.get("content").and_then(Value::as_object) else {
        assert!(resp.text.is_empty(), "{method} {template} {status} has a body the document does not describe");
        return;
    };
    let sent = resp.header("content-type").unwrap_or_default();
    let essence = sent.split(';').next().unwrap_or_default().trim();
    let (_, media) =
        content.iter().find(|(key, _)| key.as_str() == sent || key.as_str() == essence).unwrap_or_else(|| {
            panic!("{method} {template} {status} is sent as {sent:?}; documented: {:?}", content.keys())
        });
    let schema = &media["schema"];
    if essence != "application/json" || schema.is_null() {
        return;
    }
    let mut root = serde_json::json!({"components": doc["components"].clone()});
    for (k, v) in schema.as_object().expect("schema object") {
        root[k] = v.clone();
    }
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .expect("compile schema");
    let errors: Vec<String> =
        validator.iter_errors(&resp.body).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    assert!(
        errors.is_empty(),
        "{method} {template} {status} does not match /openapi.json: {errors:?}\nbody: {}",
        resp.text
    );
}

/// The documented constraints of a query parameter of an operation.
pub fn query_parameter(method: &str, template: &str, name: &str) -> Value {
    let op = &document()["paths"][template][method.to_ascii_lowercase()];
    op["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name && p["in"] == "query"))
        .map(|p| p["schema"].clone())
        .unwrap_or_else(|| panic!("{method} {template} documents no query parameter {name}"))
}
