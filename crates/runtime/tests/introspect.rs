//! Schema extraction in the sandbox, with a real virtualenv.

use std::path::PathBuf;
use std::process::Command;

use toolsmith_runtime::introspect::{introspect, Introspection, PythonEnv};
use toolsmith_runtime::{Limits, Sandbox};

fn base_prefix() -> PathBuf {
    let out = Command::new("python3").args(["-c", "import sys; print(sys.base_prefix)"]).output().unwrap();
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A virtualenv without packages (the projects here need none) and the base interpreter's prefix.
fn bare_env() -> (tempfile::TempDir, PathBuf) {
    let venv = tempfile::tempdir().unwrap();
    let made = Command::new("python3").args(["-m", "venv", "--without-pip"]).arg(venv.path()).status().unwrap();
    assert!(made.success());
    (venv, base_prefix())
}

#[tokio::test]
async fn the_scaffold_entrypoint_yields_its_schema_and_a_broken_one_its_error() {
    let (venv, prefix) = bare_env();
    let env = PythonEnv { venv: venv.path(), base_prefix: &prefix };
    let scaffold = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../templates/scaffold");

    let found =
        introspect(&env, &scaffold, "hello_world.tool:run", Sandbox::new().limits(Limits::default())).await.unwrap();
    let Introspection::Schema { input_schema, takes_context, output_schema, output_schema_problem } = found else {
        panic!("{found:?}")
    };
    assert!(!takes_context);
    assert_eq!(output_schema, Some(serde_json::json!({"type": "string"})), "`-> str`");
    assert_eq!(output_schema_problem, None);
    assert_eq!(input_schema["required"], serde_json::json!(["name"]));
    assert_eq!(input_schema["properties"]["name"]["type"], "string");
    assert_eq!(input_schema["properties"]["name"]["description"], "Who to greet.");
    assert_eq!(input_schema["properties"]["excited"]["default"], false);

    let broken = tempfile::tempdir().unwrap();
    std::fs::create_dir(broken.path().join("pkg")).unwrap();
    std::fs::write(broken.path().join("pkg/__init__.py"), "").unwrap();
    std::fs::write(broken.path().join("pkg/tool.py"), "import not_installed_anywhere\n").unwrap();
    let found =
        introspect(&env, broken.path(), "pkg.tool:run", Sandbox::new().limits(Limits::default())).await.unwrap();
    let Introspection::Unusable { kind, message, .. } = found else { panic!("{found:?}") };
    assert_eq!(kind, "import_error");
    assert!(message.contains("not_installed_anywhere"), "{message}");
}

#[tokio::test]
async fn the_output_schema_comes_from_the_return_annotation_when_it_has_a_json_form() {
    let (venv, prefix) = bare_env();
    let env = PythonEnv { venv: venv.path(), base_prefix: &prefix };
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("tools.py"),
        "from typing import TypedDict\n\
         class Reading(TypedDict):\n    celsius: float\n\
         def readings(city: str) -> list[Reading]:\n    return []\n\
         def tags(text: str) -> set[str]:\n    return set()\n\
         def anything(text: str):\n    return text\n",
    )
    .unwrap();
    let schemas = |entrypoint: &'static str| {
        let (env, project) = (&env, project.path());
        async move {
            match introspect(env, project, entrypoint, Sandbox::new().limits(Limits::default())).await.unwrap() {
                Introspection::Schema { output_schema, output_schema_problem, .. } => {
                    (output_schema, output_schema_problem)
                }
                other => panic!("{entrypoint}: {other:?}"),
            }
        }
    };

    let (schema, problem) = schemas("tools:readings").await;
    let schema = schema.expect("list[Reading] has a JSON form");
    assert_eq!(problem, None);
    assert_eq!(schema["type"], "array");
    assert_eq!(schema["items"]["$ref"], "#/$defs/Reading");
    assert_eq!(schema["$defs"]["Reading"]["properties"]["celsius"]["type"], "number");

    let (schema, problem) = schemas("tools:tags").await;
    assert_eq!(schema, None);
    let problem = problem.expect("the reason a set has no output schema");
    assert!(problem.contains("set[str] has no JSON form"), "{problem}");

    assert_eq!(schemas("tools:anything").await, (None, None), "no annotation, nothing to describe or report");
}
