//! Schema extraction in the sandbox, with a real virtualenv.

use std::path::PathBuf;
use std::process::Command;

use toolsmith_runtime::introspect::{introspect, Introspection, PythonEnv};
use toolsmith_runtime::{Limits, Sandbox};

fn base_prefix() -> PathBuf {
    let out = Command::new("python3").args(["-c", "import sys; print(sys.base_prefix)"]).output().unwrap();
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

#[tokio::test]
async fn the_scaffold_entrypoint_yields_its_schema_and_a_broken_one_its_error() {
    let venv = tempfile::tempdir().unwrap();
    let made = Command::new("python3").args(["-m", "venv", "--without-pip"]).arg(venv.path()).status().unwrap();
    assert!(made.success());
    let prefix = base_prefix();
    let env = PythonEnv { venv: venv.path(), base_prefix: &prefix };
    let scaffold = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../templates/scaffold");

    let found =
        introspect(&env, &scaffold, "hello_world.tool:run", Sandbox::new().limits(Limits::default())).await.unwrap();
    let Introspection::Schema { input_schema, takes_context } = found else { panic!("{found:?}") };
    assert!(!takes_context);
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
