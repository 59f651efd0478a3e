//! Exporting a project directory for a build, and the ancestry check of publishing, on real git.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use toolsmith_repo::export::{export_tree, ExportError, TreeLimits};
use toolsmith_repo::{scaffold, Limits, RepoError, RepoStore};

fn git(repo: &Path, args: &[&str], input: Option<&str>) -> String {
    let mut child = Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["-c", "user.name=T", "-c", "user.email=t@example.invalid"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.unwrap_or_default().as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn blob(repo: &Path, content: &str) -> String {
    git(repo, &["hash-object", "-w", "--stdin"], Some(content))
}

/// A tree from (mode, name, id) entries, written with `git mktree`: trees `git add` never makes.
fn tree(repo: &Path, entries: &[(&str, &str, &str)]) -> String {
    let listing: String = entries
        .iter()
        .map(|(mode, name, id)| {
            let kind = if *mode == "040000" { "tree" } else { "blob" };
            format!("{mode} {kind} {id}\t{name}\n")
        })
        .collect();
    git(repo, &["mktree"], Some(&listing))
}

fn commit(repo: &Path, tree: &str, parent: Option<&str>) -> String {
    let mut args = vec!["commit-tree", tree, "-m", "c"];
    if let Some(p) = parent {
        args.extend(["-p", p]);
    }
    git(repo, &args, None)
}

async fn store() -> (tempfile::TempDir, RepoStore) {
    let dir = tempfile::tempdir().unwrap();
    let repos = RepoStore::new(dir.path().join("repos"), Limits::default()).unwrap();
    repos.create("acme").await.unwrap();
    (dir, repos)
}

#[tokio::test]
async fn exports_files_links_and_modes_of_one_directory() {
    let (dir, repos) = store().await;
    let repo = repos.path_of("acme").unwrap();
    let main = repos.resolve("acme", "main").await.unwrap();

    let dest = dir.path().join("scaffold");
    std::fs::create_dir(&dest).unwrap();
    repos.export_tree("acme", &main, scaffold::PROJECT_DIR, &dest, TreeLimits::default()).await.unwrap();
    for (path, content) in scaffold::FILES {
        let file = dest.join(path);
        assert_eq!(std::fs::read(&file).unwrap(), *content, "{path}");
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o644);
    }
    assert_eq!(std::fs::metadata(dest.join("hello_world")).unwrap().permissions().mode() & 0o777, 0o755);

    let script = blob(&repo, "#!/bin/sh\n");
    let text = blob(&repo, "text\n");
    let project = tree(
        &repo,
        &[("100755", "run.sh", &script), ("100644", "a.txt", &text), ("120000", "link", &blob(&repo, "/etc/passwd"))],
    );
    let top = commit(&repo, &tree(&repo, &[("040000", "p", &project)]), Some(&main));
    let dest = dir.path().join("p");
    std::fs::create_dir(&dest).unwrap();
    export_tree(&repo, &top, "p", &dest, TreeLimits::default()).await.unwrap();
    assert_eq!(std::fs::metadata(dest.join("run.sh")).unwrap().permissions().mode() & 0o777, 0o755);
    assert_eq!(std::fs::read_to_string(dest.join("a.txt")).unwrap(), "text\n");
    assert_eq!(std::fs::read_link(dest.join("link")).unwrap(), Path::new("/etc/passwd"), "a link stays a link");

    for missing in ["nowhere", "p/a.txt"] {
        let empty = tempfile::tempdir().unwrap();
        let err = export_tree(&repo, &top, missing, empty.path(), TreeLimits::default()).await.unwrap_err();
        assert!(matches!(err, ExportError::NotADirectory(ref p) if p == missing), "{err}");
    }
    let err = repos.export_tree("nobody", &top, "p", &dest, TreeLimits::default()).await.unwrap_err();
    assert!(matches!(err, ExportError::Failed(_)), "{err}");
}

#[tokio::test]
async fn refuses_trees_it_does_not_export_before_writing_anything() {
    let (dir, repos) = store().await;
    let repo = repos.path_of("acme").unwrap();
    let text = blob(&repo, "0123456789\n");
    let inner = tree(&repo, &[("100644", "x", &text)]);
    let long_name = "n".repeat(200);
    // (the project tree's entries, the limits, what the refusal says)
    type Case<'a> = (Vec<(&'a str, &'a str, &'a str)>, TreeLimits, &'a str);
    let cases: Vec<Case> = vec![
        (vec![("100644", "a", &text), ("040000", ".git", &inner)], TreeLimits::default(), "\".git\""),
        (vec![("100644", "a", &text), ("040000", ".GIT", &inner)], TreeLimits::default(), "\".GIT\""),
        (vec![("100644", "a", &text), ("040000", "..", &inner)], TreeLimits::default(), "\"..\""),
        (vec![("100644", "a", &text), ("100644", "a", &text)], TreeLimits::default(), "two entries"),
        (
            vec![("100644", "a", &text), ("100644", "b", &text), ("100644", "c", &text)],
            TreeLimits { max_entries: 2, ..TreeLimits::default() },
            "more than 2 files",
        ),
        (
            vec![("100644", "a", &text), ("100644", "b", &text)],
            TreeLimits { max_bytes: 15, ..TreeLimits::default() },
            "larger than",
        ),
        (
            vec![("100644", &long_name, &text)],
            TreeLimits { max_path_bytes: 100, ..TreeLimits::default() },
            "longer than 100 bytes",
        ),
    ];
    for (entries, limits, expected) in cases {
        let project = tree(&repo, &entries);
        let top = commit(&repo, &tree(&repo, &[("040000", "p", &project)]), None);
        let dest = tempfile::tempdir_in(dir.path()).unwrap();
        let err = export_tree(&repo, &top, "p", dest.path(), limits).await.unwrap_err();
        assert!(matches!(&err, ExportError::Refused(why) if why.contains(expected)), "{expected}: {err}");
        assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0, "{expected}: nothing was written");
    }
}

#[tokio::test]
async fn tells_whether_one_commit_is_an_ancestor_of_another() {
    let (_dir, repos) = store().await;
    let repo = repos.path_of("acme").unwrap();
    let first = repos.resolve("acme", "main").await.unwrap();
    let root_tree = git(&repo, &["rev-parse", "main^{tree}"], None);
    let second = commit(&repo, &root_tree, Some(&first));
    let unrelated = commit(&repo, &root_tree, None);
    assert!(repos.is_ancestor("acme", &first, &second).await.unwrap());
    assert!(repos.is_ancestor("acme", &first, &first).await.unwrap(), "a commit counts as its own ancestor");
    assert!(!repos.is_ancestor("acme", &second, &first).await.unwrap());
    assert!(!repos.is_ancestor("acme", &unrelated, &second).await.unwrap());
    assert!(repos.is_ancestor("acme", "main", &second).await.unwrap(), "branch names work too");
    let absent = "0123456789012345678901234567890123456789";
    assert!(matches!(repos.is_ancestor("acme", absent, &second).await, Err(RepoError::Git(_))));
    assert!(matches!(repos.is_ancestor("acme", "--all", &second).await, Err(RepoError::InvalidRef(_))));
    assert!(matches!(repos.is_ancestor("nobody", &first, &second).await, Err(RepoError::NoRepository)));
}
