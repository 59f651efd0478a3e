//! Every type that can hold a secret value formats without it: a stray `{:?}` in a log line or a
//! panic message must not leak a tool's secret, a user's sensitive variable or a key.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use toolsmith::service::invoke::{Input, SensitiveVariables};
use toolsmith::service::test::TestEnv;
use toolsmith_domain::EnvVarName;
use toolsmith_runtime::{Identity, VersionRuntime};
use toolsmith_store::secrets::{Keyring, SecretKey};
use toolsmith_store::{EnvVarChanges, EnvVarInsert, EnvVarValue};

const SECRET: &str = "s3cr3t-d0-not-print";

fn assert_redacted(what: &str, value: &impl std::fmt::Debug) {
    for shown in [format!("{value:?}"), format!("{value:#?}")] {
        assert!(!shown.contains(SECRET), "{what} shows its secret: {shown}");
    }
}

#[test]
fn secret_holding_types_never_show_their_secrets() {
    let name = || EnvVarName::parse("API_TOKEN").unwrap();
    let insert = EnvVarInsert { name: name(), value: SECRET.into(), is_secret: true };
    assert_redacted("EnvVarInsert", &insert);
    // An update does not say whether its variable is secret, so no update value is shown.
    let changes = EnvVarChanges { inserts: vec![insert], updates: vec![(name(), SECRET.into())], deletes: vec![] };
    assert_redacted("EnvVarChanges", &changes);
    assert_redacted("EnvVarValue", &EnvVarValue { name: "API_TOKEN".into(), value: SECRET.into(), is_secret: true });

    let mut sensitive = Map::new();
    sensitive.insert("token".into(), Value::String(SECRET.into()));
    let input = Input { sensitive: SensitiveVariables(sensitive), ..Input::with_parameters(Map::new()) };
    assert_redacted("invoke Input", &input);

    let env = TestEnv {
        plain: BTreeMap::from([("PLAIN".to_owned(), SECRET.to_owned())]),
        secret: BTreeMap::from([("API_TOKEN".to_owned(), SECRET.to_owned())]),
    };
    assert_redacted("TestEnv", &env);

    let runtime = VersionRuntime {
        project: "/p".into(),
        venv: "/v".into(),
        base_prefix: "/usr".into(),
        entrypoint: "tool.tool:run".into(),
        takes_context: false,
        env: vec![("API_TOKEN".to_owned(), SECRET.to_owned())].into(),
        identity: Identity::NOBODY,
        secrets: vec![SECRET.to_owned()].into(),
    };
    assert_redacted("VersionRuntime", &runtime);

    let key = SecretKey::generate();
    let hex = key.to_hex();
    let keyring = Keyring::new(vec![key]).unwrap();
    for shown in [format!("{keyring:?}"), format!("{keyring:#?}")] {
        assert!(!shown.contains(&hex), "the keyring shows its key: {shown}");
    }
}
