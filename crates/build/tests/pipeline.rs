//! The build pipeline with real git, uv, pytest and bubblewrap.

use std::path::Path;
use std::process::Command;

use toolsmith_build::{build, BuildInput, EnvStore, FailureKind, Toolchain};
use toolsmith_repo::{Limits as RepoLimits, RepoStore};
use toolsmith_runtime::Limits;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=T", "-c", "user.email=t@example.invalid"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Adds `files` to the repository's main branch and returns the new commit.
fn commit(bare: &Path, files: &[(&str, &str)]) -> String {
    let work = tempfile::tempdir().unwrap();
    git(work.path(), &["clone", "--quiet", bare.to_str().unwrap(), "w"]);
    let w = work.path().join("w");
    for (path, content) in files {
        let p = w.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    git(&w, &["add", "-A"]);
    git(&w, &["commit", "--quiet", "-m", "change"]);
    git(&w, &["push", "--quiet", "origin", "main"]);
    git(&w, &["rev-parse", "HEAD"])
}

const PYPROJECT: &str = "[project]\nname = \"p\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\ndependencies = []\n\
[dependency-groups]\ndev = [\"pytest>=8\"]\n[tool.toolsmith]\nentrypoint = \"p.tool:run\"\n[tool.pytest.ini_options]\npythonpath = [\".\"]\n";

#[tokio::test]
async fn builds_the_scaffold_and_explains_each_kind_of_failure() {
    let data = tempfile::tempdir().unwrap();
    let repos = RepoStore::new(data.path().join("repos"), RepoLimits::default()).unwrap();
    repos.create("acme").await.unwrap();
    let bare = repos.path_of("acme").unwrap();
    let toolchain = Toolchain::discover("python3", None).await.expect("python3 and uv");
    let envs = EnvStore::new(data.path()).unwrap();
    let artifacts = data.path().join("artifacts");
    let limits = Limits { timeout: std::time::Duration::from_secs(120), ..Limits::default() };
    let main = git(&bare, &["rev-parse", "main"]);
    let run = |commit: String, path: &'static str| {
        let (bare, toolchain, envs, artifacts) = (bare.clone(), toolchain.clone(), envs.clone(), artifacts.clone());
        async move {
            build(BuildInput {
                repo: &bare,
                commit: &commit,
                project_path: path,
                toolchain: &toolchain,
                envs: &envs,
                artifacts: &artifacts,
                limits,
            })
            .await
        }
    };

    let built = run(main.clone(), "hello_world").await.unwrap_or_else(|f| panic!("{}\n{}", f.message, f.log));
    assert_eq!(built.spec.entrypoint, "hello_world.tool:run");
    assert_eq!(built.input_schema["required"], serde_json::json!(["name"]));
    assert!(built.log.contains("passed"), "the scaffold's tests ran: {}", built.log);
    assert!(built.artifact_dir.join("uv.lock").exists(), "the resolved lock is kept with the artifact");
    let again = run(main.clone(), "hello_world").await.unwrap();
    assert!(again.env.reused, "the second build shares the environment");
    assert_eq!(again.content_digest, built.content_digest);

    let failure = run(main.clone(), "nowhere").await.unwrap_err();
    assert_eq!(failure.kind, FailureKind::ProjectNotFound);

    let broken = commit(
        &bare,
        &[
            ("failing/pyproject.toml", PYPROJECT),
            ("failing/p/__init__.py", ""),
            ("failing/p/tool.py", "def run(x: int) -> int:\n    return x\n"),
            ("failing/tests/test_p.py", "from p.tool import run\n\ndef test_run():\n    assert run(1) == 2\n"),
            ("importerr/pyproject.toml", PYPROJECT),
            ("importerr/p/__init__.py", ""),
            ("importerr/p/tool.py", "import not_a_real_module_anywhere\n"),
            ("nocontract/pyproject.toml", "[project]\nname = \"n\"\n"),
        ],
    );
    let failure = run(broken.clone(), "failing").await.unwrap_err();
    assert_eq!(failure.kind, FailureKind::TestsFailed, "{}", failure.log);
    assert!(failure.message.contains("assert"), "{}", failure.message);
    let failure = run(broken.clone(), "importerr").await.unwrap_err();
    assert_eq!(failure.kind, FailureKind::Entrypoint, "{}", failure.log);
    assert!(failure.message.contains("not_a_real_module_anywhere"));
    let failure = run(broken, "nocontract").await.unwrap_err();
    assert_eq!(failure.kind, FailureKind::InvalidProject);
    assert!(failure.message.contains("[tool.toolsmith]"));
}
