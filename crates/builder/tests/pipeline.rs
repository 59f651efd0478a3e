//! The build pipeline with real git, uv, pytest and bubblewrap.

use std::path::Path;
use std::process::Command;

use std::os::unix::fs::MetadataExt;

use toolsmith_builder::{build, BuildInput, BuildLimits, EnvStore, FailureKind, Identities, Toolchain};
use toolsmith_repo::{Limits as RepoLimits, RepoStore};
use toolsmith_runtime::sandbox::running_as_root;
use toolsmith_runtime::{Identity, Network};

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

/// The identities builds run as here: far from any real user's.
const IDENTITIES: Identities = Identities {
    build: Identity { uid: 1_999_000_001, gid: 1_999_000_001 },
    run: Identity { uid: 1_999_000_000, gid: 1_999_000_000 },
};

/// Makes a commit on main from raw tree entries (`mode`, `name`, content or subtree), with git's
/// plumbing: trees that `git add` would never make.
fn commit_tree(bare: &Path, entries: &[(&str, &str, &str)]) -> String {
    let mut listing = String::new();
    for (mode, name, content) in entries {
        let kind = if *mode == "040000" { "tree" } else { "blob" };
        let id = if kind == "tree" {
            (*content).to_owned()
        } else {
            let mut child = Command::new("git")
                .args(["--git-dir", bare.to_str().unwrap(), "hash-object", "-w", "--stdin"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child.stdin.take().unwrap().write_all(content.as_bytes()).unwrap();
            String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap().trim().to_owned()
        };
        listing.push_str(&format!("{mode} {kind} {id}\t{name}\n"));
    }
    let mut child = Command::new("git")
        .args(["--git-dir", bare.to_str().unwrap(), "mktree"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(listing.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "mktree {listing}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
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
    let limits = BuildLimits { timeout: std::time::Duration::from_secs(120), ..BuildLimits::default() };
    let main = git(&bare, &["rev-parse", "main"]);
    let run = |commit: String, path: &'static str| {
        let (bare, toolchain, envs, artifacts) = (bare.clone(), toolchain.clone(), envs.clone(), artifacts.clone());
        async move {
            build(BuildInput {
                org_id: "acme",
                repo: &bare,
                commit: &commit,
                project_path: path,
                toolchain: &toolchain,
                envs: &envs,
                artifacts: &artifacts,
                identities: IDENTITIES,
                network: Network::Host,
                limits,
            })
            .await
        }
    };

    let built = run(main.clone(), "hello_world").await.unwrap_or_else(|f| panic!("{}\n{}", f.message, f.log));
    assert_eq!(built.spec.entrypoint, "hello_world.tool:run");
    assert_eq!(built.input_schema["required"], serde_json::json!(["name"]));
    assert_eq!(built.output_schema, Some(serde_json::json!({"type": "string"})), "`run` returns a str");
    assert!(built.log.contains("output schema derived from the return annotation"), "{}", built.log);
    assert!(built.log.contains("passed"), "the scaffold's tests ran: {}", built.log);
    assert!(built.artifact_dir.join("uv.lock").exists(), "the resolved lock is kept with the artifact");
    let again = run(main.clone(), "hello_world").await.unwrap();
    assert!(again.env.reused, "the second build shares the environment");
    assert_eq!(again.content_digest, built.content_digest);

    // The environment is the organization's, and sealed: no sandbox identity may change it.
    assert!(built.env.key.starts_with("acme/"), "{}", built.env.key);
    assert_eq!(built.env.dir, data.path().join("envs").join(&built.env.key));
    let env = std::fs::metadata(&built.env.dir).unwrap();
    assert_eq!(env.mode() & 0o777, 0o755);
    let cache = std::fs::metadata(data.path().join("uv-caches/acme")).unwrap();
    assert_eq!(cache.mode() & 0o777, 0o700, "the cache is its organization's alone");
    if running_as_root() {
        assert_eq!((env.uid(), env.gid()), (0, 0));
        assert_eq!(cache.uid(), IDENTITIES.build.uid, "uv works in the cache as the build identity");
        let python = std::fs::symlink_metadata(built.env.dir.join("lib")).unwrap();
        assert_eq!(python.uid(), 0);
    }
    let artifact = std::fs::metadata(built.artifact_dir.join("hello_world/tool.py")).unwrap();
    assert_eq!(artifact.mode() & 0o777, 0o644);
    // Nothing of the builds is left in the scratch space.
    assert_eq!(std::fs::read_dir(envs.scratch()).unwrap().count(), 0);

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
            ("tagger/pyproject.toml", PYPROJECT),
            ("tagger/p/__init__.py", ""),
            ("tagger/p/tool.py", "def run(text: str) -> set[str]:\n    return set(text.split())\n"),
        ],
    );
    let tagger = run(broken.clone(), "tagger").await.unwrap_or_else(|f| panic!("{}\n{}", f.message, f.log));
    assert_eq!(tagger.output_schema, None, "a set has no JSON form");
    assert!(tagger.log.contains("no output schema: the return value: set[str] has no JSON form"), "{}", tagger.log);
    assert_ne!(tagger.content_digest, built.content_digest);
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

#[tokio::test]
async fn hostile_trees_are_refused_before_anything_runs() {
    let data = tempfile::tempdir().unwrap();
    let repos = RepoStore::new(data.path().join("repos"), RepoLimits::default()).unwrap();
    repos.create("acme").await.unwrap();
    let bare = repos.path_of("acme").unwrap();
    let toolchain = Toolchain::discover("python3", None).await.expect("python3 and uv");
    let envs = EnvStore::new(data.path()).unwrap();
    let artifacts = data.path().join("artifacts");
    let secret = data.path().join("secret.key");
    std::fs::write(&secret, "server secret").unwrap();
    let run = |commit: String, path: &'static str| {
        let (bare, toolchain, envs, artifacts) = (bare.clone(), toolchain.clone(), envs.clone(), artifacts.clone());
        async move {
            build(BuildInput {
                org_id: "acme",
                repo: &bare,
                commit: &commit,
                project_path: path,
                toolchain: &toolchain,
                envs: &envs,
                artifacts: &artifacts,
                identities: IDENTITIES,
                network: Network::Off,
                limits: BuildLimits::default(),
            })
            .await
            .expect_err("refused")
        }
    };
    let contract = PYPROJECT;
    let inner = commit_tree(&bare, &[("100644", "x.py", "print('x')\n")]);
    let secret_path = secret.to_str().unwrap().to_owned();
    let absent_path = data.path().join("absent.key").to_str().unwrap().to_owned();
    // (project directory, its tree's entries, what the refusal says)
    type Case<'a> = (&'static str, Vec<(&'static str, &'static str, &'a str)>, &'static str);
    let cases: Vec<Case> = vec![
        ("linked_present", vec![("120000", "pyproject.toml", &secret_path)], "pyproject.toml is a symbolic link"),
        ("linked_absent", vec![("120000", "pyproject.toml", &absent_path)], "pyproject.toml is a symbolic link"),
        ("zero", vec![("120000", "pyproject.toml", "/dev/zero")], "pyproject.toml is a symbolic link"),
        ("pyproject_dir", vec![("040000", "pyproject.toml", &inner)], "pyproject.toml is not a regular file"),
        (
            "lock_link",
            vec![("100644", "pyproject.toml", contract), ("120000", "uv.lock", "/dev/zero")],
            "uv.lock is a symbolic link",
        ),
        ("dotdot", vec![("100644", "pyproject.toml", contract), ("040000", "..", &inner)], "\"..\""),
        ("dotgit", vec![("100644", "pyproject.toml", contract), ("040000", ".git", &inner)], "\".git\""),
        ("dotgit_upper", vec![("100644", "pyproject.toml", contract), ("040000", ".GIT", &inner)], "\".GIT\""),
    ];
    let mut top = Vec::new();
    let trees: Vec<(String, String)> =
        cases.iter().map(|(name, entries, _)| (name.to_string(), commit_tree(&bare, entries))).collect();
    for (name, tree) in &trees {
        top.push(("040000", name.as_str(), tree.as_str()));
    }
    let tree = commit_tree(&bare, &top);
    let commit = git(&bare, &["commit-tree", &tree, "-m", "hostile"]);
    let mut answers = Vec::new();
    for (name, _, expected) in &cases {
        let failure = run(commit.clone(), name).await;
        assert_eq!(failure.kind, FailureKind::InvalidProject, "{name}: {}", failure.log);
        assert!(failure.message.contains(expected), "{name}: {}", failure.message);
        answers.push(failure.message);
    }
    assert_eq!(answers[0], answers[1], "a link's answer does not tell whether its target exists");
    assert_eq!(std::fs::read_dir(envs.scratch()).unwrap().count(), 0, "the work directories are gone");
}

#[tokio::test]
async fn a_build_backend_cannot_reach_the_organizations_cache_or_make_the_server_follow_its_links() {
    let data = tempfile::tempdir().unwrap();
    let repos = RepoStore::new(data.path().join("repos"), RepoLimits::default()).unwrap();
    repos.create("acme").await.unwrap();
    let bare = repos.path_of("acme").unwrap();
    let toolchain = Toolchain::discover("python3", None).await.expect("python3 and uv");
    let envs = EnvStore::new(data.path()).unwrap();
    // A file of the server's that a link in the environment points at.
    let target = data.path().join("server-file");
    std::fs::write(&target, "unchanged").unwrap();
    // A path dependency whose build backend runs while the environment is being installed
    // (`uv sync`): it plants a `.complete` link, a FIFO and a file in every cache it can write.
    let backend = format!(
        r#"
import os, zipfile

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    os.symlink({target:?}, "/env/.complete")
    os.mkfifo("/env/fifo")
    with open(os.path.join(os.environ["UV_CACHE_DIR"], "planted"), "w") as f:
        f.write("x")
    name = "evil-1.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        z.writestr("evil/__init__.py", "")
        z.writestr("evil-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n")
        z.writestr("evil-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("evil-1.0.dist-info/RECORD", "")
    return name
"#,
        target = target.to_str().unwrap()
    );
    let commit = commit(
        &bare,
        &[
            (
                "planted/pyproject.toml",
                "[project]\nname = \"planted\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\n\
                 dependencies = [\"evil\"]\n[tool.uv.sources]\nevil = { path = \"evil\" }\n\
                 [tool.toolsmith]\nentrypoint = \"planted.tool:run\"\n",
            ),
            ("planted/planted/__init__.py", ""),
            ("planted/planted/tool.py", "def run() -> str:\n    return 'ok'\n"),
            (
                "planted/evil/pyproject.toml",
                "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n\
                 [project]\nname = \"evil\"\nversion = \"1.0\"\n",
            ),
            ("planted/evil/backend.py", &backend),
        ],
    );
    // Nothing here needs the package index: the dependency is a directory of the project.
    let built = build(BuildInput {
        org_id: "acme",
        repo: &bare,
        commit: &commit,
        project_path: "planted",
        toolchain: &toolchain,
        envs: &envs,
        artifacts: &data.path().join("artifacts"),
        identities: IDENTITIES,
        network: Network::Off,
        limits: BuildLimits { timeout: std::time::Duration::from_secs(120), ..BuildLimits::default() },
    })
    .await
    .unwrap_or_else(|f| panic!("{}\n{}", f.message, f.log));
    assert!(built.log.contains("again with builds allowed"), "the backend ran in the second pass: {}", built.log);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "unchanged", "the server wrote through a planted link");
    let marker = std::fs::symlink_metadata(built.env.dir.join(".complete")).unwrap();
    assert!(marker.is_file());
    assert!(!built.env.dir.join("fifo").exists(), "special files do not survive sealing");
    assert!(
        !data.path().join("uv-caches/acme/planted").exists(),
        "the backend never had the organization's cache to write to"
    );
    let again = build(BuildInput {
        org_id: "acme",
        repo: &bare,
        commit: &commit,
        project_path: "planted",
        toolchain: &toolchain,
        envs: &envs,
        artifacts: &data.path().join("artifacts"),
        identities: IDENTITIES,
        network: Network::Off,
        limits: BuildLimits::default(),
    })
    .await
    .unwrap_or_else(|f| panic!("{}\n{}", f.message, f.log));
    assert!(again.env.reused);
}
