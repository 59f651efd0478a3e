//! The tool repository: real `git` against the running server, and the browsing endpoints.

use std::path::Path;

use reqwest::Method;
use serde_json::json;
use toolsmith_domain::Role;

use crate::both_backends;
use crate::support::{Backend, Options, TestApp, User};

pub(crate) struct Out {
    pub(crate) ok: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

pub(crate) async fn git(dir: &Path, args: &[&str]) -> Out {
    let out = tokio::process::Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .await
        .expect("git runs");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

pub(crate) fn url(app: &TestApp, org: &str, user_org: &str, user: &User) -> String {
    let host = app.base.trim_start_matches("http://");
    format!("http://{user_org}_{}:{}@{host}/v1/{org}/tool/git", user.id, user.token)
}

pub(crate) async fn clone(app: &TestApp, user: &User, into: &Path) -> Out {
    git(into.parent().unwrap(), &["clone", "--quiet", &url(app, "acme", "acme", user), into.to_str().unwrap()]).await
}

pub(crate) async fn commit_file(dir: &Path, name: &str, content: &[u8], message: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    assert!(git(dir, &["add", "--", name]).await.ok);
    let c = git(dir, &["commit", "--quiet", "-m", message]).await;
    assert!(c.ok, "{}", c.stderr);
}

pub(crate) async fn head(dir: &Path) -> String {
    git(dir, &["rev-parse", "HEAD"]).await.stdout.trim().to_owned()
}

both_backends!(clone_push_fetch_and_attribution, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    let r = clone(&app, &app.admin, &a).await;
    assert!(r.ok, "{}", r.stderr);
    assert!(a.join("hello_world/pyproject.toml").exists(), "a fresh repository holds the scaffold");
    let scaffold_commit = head(&a).await;

    commit_file(&a, "tools/new_tool.py", b"def run() -> str:\n    return 'x'\n", "Add a tool").await;
    let pushed = git(&a, &["push", "--quiet", "origin", "main"]).await;
    assert!(pushed.ok, "{}", pushed.stderr);
    let tip = head(&a).await;

    // A second clone, in protocol v0, sees the push; fetch in v2 too.
    let b = work.path().join("b");
    let r = git(
        work.path(),
        &["-c", "protocol.version=0", "clone", "--quiet", &url(&app, "acme", "acme", &app.admin), b.to_str().unwrap()],
    )
    .await;
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(head(&b).await, tip);
    commit_file(&a, "tools/second.py", b"# second\n", "Second").await;
    assert!(git(&a, &["push", "--quiet", "origin", "main"]).await.ok);
    let f = git(&b, &["-c", "protocol.version=2", "pull", "--quiet", "--ff-only"]).await;
    assert!(f.ok, "{}", f.stderr);
    assert_eq!(head(&b).await, head(&a).await);

    let r = app.request(Method::GET, "/v1/acme/tool/repo/branch/main", &app.admin.token).send().await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["latest_commit_sha"], head(&a).await.as_str());
    assert_eq!(r.body["latest_commit_message"], "Second");
    assert_eq!(r.body["latest_commit_committer"], json!({"org_id": "acme", "user_id": app.admin.id}));

    let r = app.request(Method::GET, "/v1/acme/tool/repo/commits?limit=5", &app.admin.token).send().await;
    let commits = r.body["commits"].as_array().unwrap();
    assert_eq!(commits.len(), 3);
    assert_eq!(commits[2]["sha"], scaffold_commit.as_str());
    assert!(commits[2]["committer"].is_null(), "the scaffold commit did not arrive through a push");
    assert_eq!(commits[1]["committer"]["user_id"], app.admin.id.as_str());
});

both_backends!(credentials_permissions_and_tenancy_of_git, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    // No credentials: a Basic challenge so that git prompts.
    let r = app.request(Method::GET, "/v1/acme/tool/git/info/refs?service=git-upload-pack", "").send().await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap_or_default().starts_with("Basic"));

    let work = tempfile::tempdir().unwrap();
    let reader = app.user("acme", &[]).await;
    let r = clone(&app, &reader, &work.path().join("denied")).await;
    assert!(!r.ok, "a user without repository access cannot clone");

    // The access grant endpoint gives read access; it does not allow pushing.
    let r = app
        .request(Method::POST, &format!("/v1/acme/user/{}/tool-repo-access", reader.id), &app.admin.token)
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let c = work.path().join("reader");
    let r = clone(&app, &reader, &c).await;
    assert!(r.ok, "{}", r.stderr);
    commit_file(&c, "x.txt", b"x", "Not allowed").await;
    let r = git(&c, &["push", "--quiet", "origin", "main"]).await;
    assert!(!r.ok, "reading is not pushing");
    assert!(r.stderr.contains("403"), "{}", r.stderr);

    let r = app
        .request(Method::DELETE, &format!("/v1/acme/user/{}/tool-repo-access", reader.id), &app.admin.token)
        .send()
        .await;
    assert_eq!(r.status, 200);
    assert!(!git(&c, &["fetch", "--quiet"]).await.ok, "revoked access stops fetches");
    let r = app
        .request(Method::POST, "/v1/acme/user/0123456789abcdef01234567/tool-repo-access", &app.admin.token)
        .send()
        .await;
    assert_eq!((r.status, r.detail()), (404, "The specified organization or user does not exist."));
    let r =
        app.request(Method::POST, &format!("/v1/acme/user/{}/tool-repo-access", reader.id), &reader.token).send().await;
    assert_eq!(r.status, 403, "granting access needs User:UpdateUserInfo");

    // Another organization's user cannot clone acme's repository, nor pretend to be an acme user.
    let outsider = app.other_org("globex").await;
    let r = git(
        work.path(),
        &["clone", "--quiet", &url(&app, "acme", "globex", &outsider), work.path().join("x").to_str().unwrap()],
    )
    .await;
    assert!(!r.ok);
    let r = git(
        work.path(),
        &["clone", "--quiet", &url(&app, "acme", "acme", &outsider), work.path().join("y").to_str().unwrap()],
    )
    .await;
    assert!(!r.ok);
    // An expired token is refused.
    let expired = User {
        id: app.admin.id.clone(),
        token: toolsmith::identity::token::TokenSigner::new(app.token_key.clone()).issue("acme", &app.admin.id, -5).0,
    };
    assert!(!clone(&app, &expired, &work.path().join("z")).await.ok);
});

both_backends!(concurrent_pushes_to_one_branch_behave_like_git, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let work = tempfile::tempdir().unwrap();
    let mut clones = Vec::new();
    for i in 0..4 {
        let dir = work.path().join(format!("c{i}"));
        assert!(clone(&app, &app.admin, &dir).await.ok);
        commit_file(&dir, &format!("file{i}.txt"), format!("{i}").as_bytes(), &format!("Change {i}")).await;
        clones.push(dir);
    }
    let pushes = clones.iter().map(|dir| git(dir, &["push", "origin", "main"]));
    let results = futures_util::future::join_all(pushes).await;
    let won = results.iter().filter(|r| r.ok).count();
    assert_eq!(won, 1, "exactly one push wins: {:?}", results.iter().map(|r| &r.stderr).collect::<Vec<_>>());
    for r in results.iter().filter(|r| !r.ok) {
        assert!(r.stderr.contains("rejected") || r.stderr.contains("failed"), "{}", r.stderr);
    }
    let fsck =
        git(work.path(), &["--git-dir", app.repos().path_of("acme").unwrap().to_str().unwrap(), "fsck", "--strict"])
            .await;
    assert!(fsck.ok, "{}", fsck.stderr);
});

both_backends!(oversized_pushes_are_refused_and_leave_the_repository_intact, |backend: Backend| async move {
    let app = TestApp::spawn_with(
        backend,
        Options {
            repo_limits: toolsmith_repo::Limits { max_push_bytes: 20_000, max_file_bytes: 10 << 20 },
            ..Options::default()
        },
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("big");
    assert!(clone(&app, &app.admin, &dir).await.ok);
    let before = head(&dir).await;
    // Random bytes do not compress, so the pack is as large as the file.
    let noise: Vec<u8> = (0..200_000).map(|_| rand::random::<u8>()).collect();
    commit_file(&dir, "blob.bin", &noise, "Too big").await;
    let r = git(&dir, &["push", "origin", "main"]).await;
    assert!(!r.ok);
    assert!(
        r.stderr.contains("maximum") || r.stderr.contains("too large") || r.stderr.contains("exceeds"),
        "{}",
        r.stderr
    );
    let branch = app.request(Method::GET, "/v1/acme/tool/repo/branch/main", &app.admin.token).send().await;
    assert_eq!(branch.body["latest_commit_sha"], before.as_str(), "main did not move");
    // A small push still works afterwards.
    assert!(git(&dir, &["reset", "--quiet", "--hard", &before]).await.ok);
    commit_file(&dir, "small.txt", b"small", "Small").await;
    let r = git(&dir, &["push", "--quiet", "origin", "main"]).await;
    assert!(r.ok, "{}", r.stderr);
});

async fn seeded(app: &TestApp) -> (tempfile::TempDir, String) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("seed");
    assert!(clone(app, &app.admin, &dir).await.ok);
    commit_file(&dir, "docs/readme.md", "héllo wörld\n".as_bytes(), "Docs").await;
    commit_file(&dir, "bin/data.bin", &[0u8, 159, 146, 150, 255], "Binary").await;
    std::os::unix::fs::symlink("../docs/readme.md", dir.join("bin/link")).unwrap();
    assert!(git(&dir, &["add", "bin/link"]).await.ok);
    assert!(git(&dir, &["commit", "--quiet", "-m", "Link"]).await.ok);
    commit_file(&dir, "docs/readme.md", "héllo wörld\nsecond line\n".as_bytes(), "More docs").await;
    assert!(git(&dir, &["push", "--quiet", "origin", "main"]).await.ok);
    assert!(git(&dir, &["push", "--quiet", "origin", "main:feature/x"]).await.ok);
    let sha = head(&dir).await;
    (work, sha)
}

both_backends!(browsing_files_directories_commits_and_branches, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let (_work, tip) = seeded(&app).await;
    let get = |path: String| {
        let app = &app;
        async move { app.request(Method::GET, &path, &app.admin.token).send().await }
    };

    let r = get("/v1/acme/tool/repo/file?path=docs/readme.md".into()).await;
    assert_eq!((r.status, r.text.as_str()), (200, "héllo wörld\nsecond line\n"));
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let r = get(format!("/v1/acme/tool/repo/file?path=docs/readme.md&ref={}", &tip[..8])).await;
    assert_eq!(r.status, 200, "an abbreviated sha is a ref");
    let r = app
        .client
        .get(format!("{}/v1/acme/tool/repo/file?path=bin/data.bin", app.base))
        .bearer_auth(&app.admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &[0u8, 159, 146, 150, 255], "binary-safe");

    let r = get("/v1/acme/tool/repo/directory?path=&include_last_commit=true".into()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let names: Vec<&str> = r.body["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["bin", "docs", "hello_world"], "directories first, then by name");
    let docs = &r.body["entries"][1];
    assert_eq!(docs["type"], "directory");
    assert_eq!(docs["last_commit"]["message"], "More docs");
    assert_eq!(docs["last_commit"]["committer"]["user_id"], app.admin.id.as_str());
    assert_eq!(r.body["entries"][2]["last_commit"]["message"], "Start from the tool scaffold");
    let r = get("/v1/acme/tool/repo/directory?path=bin".into()).await;
    let kinds: Vec<(&str, &str)> = r.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["type"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("data.bin", "file"), ("link", "symlink")]);
    assert_eq!(r.body["entries"][0]["size"], 5);
    assert!(r.body["entries"][0]["last_commit"].is_null());
    let r = get("/v1/acme/tool/repo/file?path=bin/link".into()).await;
    assert_eq!(r.text, "../docs/readme.md", "a symlink is returned as its target, never followed");

    let r = app
        .request(Method::POST, "/v1/acme/tool/repo/files", &app.admin.token)
        .json(&json!({"ref": "feature/x", "paths": ["docs/readme.md", "bin/data.bin"]}))
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["files"][0]["encoding"], "utf-8");
    assert_eq!(r.body["files"][1]["encoding"], "base64");
    assert_eq!(r.body["files"][1]["content"], "AJ+Slv8=");
    let r = app
        .request(Method::POST, "/v1/acme/tool/repo/files", &app.admin.token)
        .json(&json!({"paths": ["docs", "bin/data.bin"]}))
        .send()
        .await;
    assert_eq!((r.status, r.detail()), (400, "One or more specified paths are not files."));

    let r = get("/v1/acme/tool/repo/commits?path=docs&include_changed_files=true&include_stats=true".into()).await;
    let commits = r.body["commits"].as_array().unwrap();
    assert_eq!(commits.len(), 2, "only commits touching docs/");
    assert_eq!(
        commits[0]["changed_files"],
        json!([{"path": "docs/readme.md", "change_type": "modified", "additions": 1, "deletions": 0}])
    );
    assert_eq!(commits[0]["stats"], json!({"additions": 1, "deletions": 0}));
    assert_eq!(commits[1]["changed_files"][0]["change_type"], "added");
    let mut seen = Vec::new();
    let mut token = 1;
    loop {
        let r = get(format!("/v1/acme/tool/repo/commits?limit=2&continuation_token={token}")).await;
        seen.extend(r.body["commits"].as_array().unwrap().iter().map(|c| c["sha"].as_str().unwrap().to_owned()));
        if !r.body["has_more"].as_bool().unwrap() {
            assert!(r.body["continuation_token"].is_null());
            break;
        }
        token = r.body["continuation_token"].as_i64().unwrap();
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0], tip);
    let r = get("/v1/acme/tool/repo/commits?until=2026-01-02T00:00:00Z".into()).await;
    assert_eq!(r.body["commits"].as_array().unwrap().len(), 1, "only the scaffold commit is that old");

    let r = get("/v1/acme/tool/repo/branches?limit=1".into()).await;
    assert_eq!(r.body["branches"][0]["name"], "feature/x");
    assert_eq!((r.body["has_more"].clone(), r.body["continuation_token"].clone()), (json!(true), json!(2)));
    let r = get("/v1/acme/tool/repo/branches?limit=1&continuation_token=2".into()).await;
    assert_eq!(r.body["branches"][0]["name"], "main");
    assert!(r.body["continuation_token"].is_null());
    let r = get("/v1/acme/tool/repo/branch/feature%2Fx".into()).await;
    assert_eq!(r.body["latest_commit_sha"], tip.as_str());
});

both_backends!(hostile_and_wrong_browsing_requests, |backend: Backend| async move {
    let app = TestApp::spawn_with(
        backend,
        Options {
            repo_limits: toolsmith_repo::Limits { max_push_bytes: 256 << 20, max_file_bytes: 1000 },
            ..Options::default()
        },
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("w");
    assert!(clone(&app, &app.admin, &dir).await.ok);
    commit_file(&dir, "large.txt", &vec![b'a'; 5000], "Large").await;
    assert!(git(&dir, &["push", "--quiet", "origin", "main"]).await.ok);
    let get = |path: &'static str| {
        let app = &app;
        async move { app.request(Method::GET, path, &app.admin.token).send().await }
    };
    for path in [
        "/v1/acme/tool/repo/file?path=../../etc/passwd",
        "/v1/acme/tool/repo/file?path=/etc/passwd",
        "/v1/acme/tool/repo/file?path=.git/config",
        "/v1/acme/tool/repo/file?path=hello_world/pyproject.toml&ref=-x",
        "/v1/acme/tool/repo/file?path=hello_world/pyproject.toml&ref=--upload-pack=touch%20/tmp/pwned",
        "/v1/acme/tool/repo/directory?path=..&ref=main",
        "/v1/acme/tool/repo/commits?ref=--all",
        "/v1/acme/tool/repo/file",
    ] {
        let r = get(path).await;
        assert_eq!(r.status, 422, "{path}: {}", r.text);
    }
    assert!(!Path::new("/tmp/pwned").exists());
    let r = get("/v1/acme/tool/repo/file?path=nope.txt").await;
    assert_eq!((r.status, r.detail()), (404, "Specified organization, file, or ref is not found."));
    let r = get("/v1/acme/tool/repo/file?path=hello_world/pyproject.toml&ref=no-such-branch").await;
    assert_eq!(r.status, 404);
    let r = get("/v1/acme/tool/repo/file?path=hello_world").await;
    assert_eq!(r.status, 404, "a directory is not a file");
    let r = get("/v1/acme/tool/repo/directory?path=hello_world/pyproject.toml").await;
    assert_eq!((r.status, r.detail()), (400, "The specified path is a file, not a directory."));
    let r = get("/v1/acme/tool/repo/directory?path=missing").await;
    assert_eq!((r.status, r.detail()), (404, "The specified organization, directory, or ref does not exist."));
    let r = get("/v1/acme/tool/repo/file?path=large.txt").await;
    assert_eq!(r.status, 400);
    assert!(r.detail().contains("1000 bytes"), "{}", r.text);
    let r = get("/v1/acme/tool/repo/branch/nope").await;
    assert_eq!((r.status, r.detail()), (404, "The specified organization or branch does not exist."));
    let r = get("/v1/acme/tool/git/objects/info/packs").await;
    assert_eq!(r.status, 404);
    // Browsing needs repository access.
    let nobody = app.user("acme", &[Role::Invoker]).await;
    let r = app.request(Method::GET, "/v1/acme/tool/repo/branches", &nobody.token).send().await;
    assert_eq!(r.status, 403);
});

both_backends!(scaffold_archive_is_the_template, |backend: Backend| async move {
    let app = TestApp::spawn(backend).await;
    let r = app
        .client
        .get(format!("{}/v1/acme/tool/amigo_tool_scaffold.tar.gz", app.base))
        .bearer_auth(&app.admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/gzip");
    let bytes = r.bytes().await.unwrap();
    assert_eq!(bytes.as_ref(), toolsmith_repo::scaffold::tar_gz());
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("s.tar.gz"), &bytes).unwrap();
    let out = std::process::Command::new("tar").args(["-xzf", "s.tar.gz"]).current_dir(work.path()).output().unwrap();
    assert!(out.status.success());
    let pyproject = std::fs::read_to_string(work.path().join("hello_world/pyproject.toml")).unwrap();
    assert!(pyproject.contains("[tool.toolsmith]") && pyproject.contains("entrypoint = \"hello_world.tool:run\""));
    let r = app
        .request(Method::GET, "/v1/nowhere/tool/amigo_tool_scaffold.tar.gz", &app.admin.token)
        .op("get-tool-scaffold-release")
        .send()
        .await;
    assert_eq!(r.status, 404);
});
