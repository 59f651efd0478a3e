//! What the browsing reads return is what git itself prints for the same repository: file
//! contents, directory listings, the last commit of every entry, commit pages (with a path, a
//! time window, changed files and line counts) and branches, on a history with merges (one
//! where both sides change the same directory, one that resolves a conflict with new content),
//! renames, deletions, a file changed back to an earlier content, a mode change, a symbolic
//! link, equal and out-of-order commit dates, and hundreds of commits.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use toolsmith_repo::browse::{CommitInfo, CommitQuery, EntryKind};
use toolsmith_repo::{Limits, RepoError, RepoStore};

fn git_cmd(repo: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("--git-dir")
        .arg(repo)
        .args(["-c", "core.quotePath=false", "-c", "user.name=T", "-c", "user.email=t@example.invalid"])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("LC_ALL", "C");
    cmd
}

fn git(repo: &Path, args: &[&str]) -> Vec<u8> {
    let out = git_cmd(repo).args(args).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn git_text(repo: &Path, args: &[&str]) -> String {
    String::from_utf8(git(repo, args)).unwrap()
}

/// Builds history with `git fast-import`, one commit at a time.
struct Import {
    stream: String,
    marks: usize,
}

enum Op<'a> {
    Put(&'a str, &'a str),
    Exec(&'a str, &'a str),
    Link(&'a str, &'a str),
    Del(&'a str),
    Rename(&'a str, &'a str),
}

impl Import {
    fn new() -> Import {
        Import { stream: String::new(), marks: 0 }
    }

    /// A commit on `branch` with parent `from` (and `merges`); returns its mark.
    fn commit(&mut self, branch: &str, from: &str, merges: &[&str], when: u64, message: &str, ops: &[Op]) -> String {
        self.marks += 1;
        let mark = format!(":{}", self.marks);
        let s = &mut self.stream;
        s.push_str(&format!("commit refs/heads/{branch}\nmark {mark}\n"));
        s.push_str(&format!("author A U Thor <author@example.invalid> {when} +0100\n"));
        s.push_str(&format!("committer C O Mitter <committer@example.invalid> {when} +0000\n"));
        s.push_str(&format!("data {}\n{message}\n", message.len()));
        s.push_str(&format!("from {from}\n"));
        for m in merges {
            s.push_str(&format!("merge {m}\n"));
        }
        for op in ops {
            match op {
                Op::Put(path, content) => {
                    s.push_str(&format!("M 100644 inline {path}\ndata {}\n{content}\n", content.len()))
                }
                Op::Exec(path, content) => {
                    s.push_str(&format!("M 100755 inline {path}\ndata {}\n{content}\n", content.len()))
                }
                Op::Link(path, target) => {
                    s.push_str(&format!("M 120000 inline {path}\ndata {}\n{target}\n", target.len()))
                }
                Op::Del(path) => s.push_str(&format!("D {path}\n")),
                Op::Rename(a, b) => s.push_str(&format!("R {a} {b}\n")),
            }
        }
        s.push('\n');
        mark
    }

    fn run(self, repo: &Path) {
        let mut child = git_cmd(repo).args(["fast-import", "--quiet"]).stdin(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(self.stream.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "fast-import");
    }
}

const T0: u64 = 1_700_000_000;

/// The history the test reads; returns nothing: everything is looked up through git.
fn build_history(repo: &Path) {
    let mut im = Import::new();
    let mut main = im.commit(
        "main",
        "refs/heads/main^0",
        &[],
        T0,
        "Lay out the project",
        &[
            Op::Put("a.txt", "a\n"),
            Op::Put("keep/untouched.txt", "never changes\n"),
            Op::Put("docs/readme.md", "# Readme\n"),
            Op::Put("docs/other.md", "other\n"),
            Op::Put("src/lib.py", "print('lib')\n"),
            Op::Put("src/util.py", "def util():\n    return 1\n"),
            Op::Put("src/sub/x.py", "x = 1\n"),
            Op::Put("src/sub/y.py", "y = 1\n"),
            Op::Put("conflict.txt", "base\n"),
            Op::Put("t", "a file that becomes a directory\n"),
            Op::Put("ünïcode name.txt", "unicode\n"),
            Op::Put("run.sh", "#!/bin/sh\necho hi\n"),
        ],
    );
    let mut when = T0;
    let mut deep_marks = Vec::new();
    for i in 0..320u64 {
        when += 60;
        let file = format!("deep/f{:02}.txt", i % 37);
        // Every seventh change sets a file back to the content it had first.
        let content = if i % 7 == 6 { format!("{}\n", i % 37) } else { format!("{}\nround {i}\n", i % 37) };
        let extra;
        let mut ops = vec![Op::Put(&file, &content)];
        if i % 25 == 3 {
            extra = format!("print('lib {i}')\n");
            ops.push(Op::Put("src/lib.py", &extra));
        }
        match i {
            40 => ops.push(Op::Exec("run.sh", "#!/bin/sh\necho hi\n")),
            60 => ops.push(Op::Link("link", "src/lib.py")),
            80 => ops.push(Op::Del("a.txt")),
            90 => {
                ops.push(Op::Del("t"));
                ops.push(Op::Put("t/inner.txt", "now a directory\n"));
            }
            _ => {}
        }
        main = im.commit("main", &main, &[], when, &format!("Deep change {i}\n\nBody of change {i}."), &ops);
        deep_marks.push(main.clone());
    }

    // A branch that changes src/ while main changes src/ too, with a rename in docs/; its dates
    // equal some of main's, and one of its commits is dated before its parent.
    let fork = deep_marks[100].clone();
    let fork_time = T0 + 101 * 60;
    let f1 = im.commit(
        "feature",
        &fork,
        &[],
        fork_time + 60,
        "Feature: util",
        &[Op::Put("src/util.py", "def util():\n    return 2\n")],
    );
    let f2 =
        im.commit("feature", &f1, &[], fork_time + 120, "Feature: new module", &[Op::Put("src/feature.py", "F = 1\n")]);
    let f3 = im.commit(
        "feature",
        &f2,
        &[],
        fork_time + 30,
        "Feature: rename the readme (dated before its parent)",
        &[Op::Rename("docs/readme.md", "docs/README.md")],
    );
    // Main's tip after the fork, then the merge of the feature: both sides changed src/.
    when += 60;
    let m1 = im.commit("main", &main, &[], when, "Main: lib", &[Op::Put("src/lib.py", "print('main lib')\n")]);
    when += 60;
    let merge1 = im.commit(
        "main",
        &m1,
        &[&f3],
        when,
        "Merge branch 'feature'",
        &[
            Op::Put("src/util.py", "def util():\n    return 2\n"),
            Op::Put("src/feature.py", "F = 1\n"),
            Op::Rename("docs/readme.md", "docs/README.md"),
        ],
    );

    // A branch that changes src/sub/x.py and back again, and docs/other.md: after its merge,
    // x.py is the same on both sides.
    let back1 = im.commit(
        "revert",
        &deep_marks[150],
        &[],
        T0 + 151 * 60 + 1,
        "Try x = 2",
        &[Op::Put("src/sub/x.py", "x = 2\n")],
    );
    let back2 =
        im.commit("revert", &back1, &[], T0 + 151 * 60 + 2, "Back to x = 1", &[Op::Put("src/sub/x.py", "x = 1\n")]);
    let back3 = im.commit(
        "revert",
        &back2,
        &[],
        T0 + 151 * 60 + 3,
        "Other docs",
        &[Op::Put("docs/other.md", "other, revised\n")],
    );
    when += 60;
    let merge2 = im.commit(
        "main",
        &merge1,
        &[&back3],
        when,
        "Merge branch 'revert'",
        &[Op::Put("docs/other.md", "other, revised\n")],
    );

    // A conflict resolved with content neither side had.
    let side = im.commit("side", &merge2, &[], when + 60, "Side: conflict", &[Op::Put("conflict.txt", "side\n")]);
    when += 120;
    let m2 = im.commit("main", &merge2, &[], when, "Main: conflict", &[Op::Put("conflict.txt", "main\n")]);
    when += 60;
    let merge3 = im.commit("main", &m2, &[&side], when, "Merge branch 'side'", &[Op::Put("conflict.txt", "merged\n")]);

    // Commits with the same date on main and on a branch, then a merge of the two (its parents
    // wait in git's queue together), whose second side changed a directory the first did not.
    let same1 =
        im.commit("main", &merge3, &[], when + 60, "Same second, first", &[Op::Put("docs/other.md", "same 1\n")]);
    let same2 = im.commit("main", &same1, &[], when + 60, "Same second, second", &[Op::Put("keep2.txt", "same 2\n")]);
    let other = im.commit("other", &merge3, &[], when + 60, "Other: deep", &[Op::Put("deep/f05.txt", "from other\n")]);
    im.commit(
        "main",
        &same2,
        &[&other],
        when + 120,
        "Merge branch 'other'",
        &[Op::Put("deep/f05.txt", "from other\n")],
    );
    im.run(repo);
}

fn info_of(repo: &Path, sha: &str) -> (String, Vec<String>, i64, String, String, String) {
    let text = git_text(repo, &["log", "-1", "--format=%H%x1f%P%x1f%ct%x1f%an%x1f%ae%x1f%B", sha]);
    let f: Vec<&str> = text.splitn(6, '\u{1f}').collect();
    (
        f[0].to_owned(),
        f[1].split_whitespace().map(str::to_owned).collect(),
        f[2].parse().unwrap(),
        f[3].to_owned(),
        f[4].to_owned(),
        f[5].trim_end().to_owned(),
    )
}

fn assert_commit_info(repo: &Path, c: &CommitInfo) {
    let (sha, parents, ct, an, ae, message) = info_of(repo, &c.sha);
    assert_eq!((&c.sha, &c.parents, c.timestamp), (&sha, &parents, ct));
    assert_eq!((&c.author_name, &c.author_email, &c.message), (&an, &ae, &message), "{sha}");
}

/// `git ls-tree -l -z` of a directory: (name, kind, size), as the API orders it.
fn git_listing(repo: &Path, commit: &str, dir: &str) -> Vec<(String, &'static str, Option<u64>)> {
    let spec = format!("{dir}/");
    let mut args = vec!["ls-tree", "-l", "-z", commit];
    if !dir.is_empty() {
        args.extend(["--", spec.as_str()]);
    }
    let out = git(repo, &args);
    let mut rows: Vec<(String, &'static str, Option<u64>)> = out
        .split(|b| *b == 0)
        .filter(|r| !r.is_empty())
        .map(|r| {
            let r = String::from_utf8(r.to_vec()).unwrap();
            let (meta, path) = r.split_once('\t').unwrap();
            let f: Vec<&str> = meta.split_whitespace().collect();
            let kind = match f[0] {
                "040000" => "directory",
                "120000" => "symlink",
                "160000" => "submodule",
                _ => "file",
            };
            (path.rsplit('/').next().unwrap().to_owned(), kind, f[3].parse().ok())
        })
        .collect();
    rows.sort_by(|a, b| (a.1 != "directory", &a.0).cmp(&(b.1 != "directory", &b.0)));
    rows
}

/// Every directory of a commit ("" for the root).
fn directories(repo: &Path, commit: &str) -> Vec<String> {
    let out = git(repo, &["ls-tree", "-r", "-d", "-z", "--name-only", commit]);
    let mut dirs = vec![String::new()];
    dirs.extend(out.split(|b| *b == 0).filter(|r| !r.is_empty()).map(|r| String::from_utf8(r.to_vec()).unwrap()));
    dirs
}

/// Every file of a commit with its blob id.
fn files(repo: &Path, commit: &str) -> Vec<(String, String)> {
    let out = git(repo, &["ls-tree", "-r", "-z", commit]);
    out.split(|b| *b == 0)
        .filter(|r| !r.is_empty())
        .map(|r| {
            let r = String::from_utf8(r.to_vec()).unwrap();
            let (meta, path) = r.split_once('\t').unwrap();
            (path.to_owned(), meta.split_whitespace().nth(2).unwrap().to_owned())
        })
        .collect()
}

async fn check_commit(repos: &RepoStore, repo: &Path, reference: &str) {
    let commit = repos.resolve("acme", reference).await.unwrap();
    for (path, blob) in files(repo, &commit) {
        let file = repos.read_file("acme", reference, &path).await.unwrap();
        assert_eq!(file.bytes, git(repo, &["cat-file", "blob", &blob]), "{reference}:{path}");
    }
    for dir in directories(repo, &commit) {
        let entries = repos.list_directory("acme", reference, &dir, true).await.unwrap();
        let listed: Vec<(String, &'static str, Option<u64>)> =
            entries.iter().map(|e| (e.name.clone(), e.kind.as_str(), e.size)).collect();
        assert_eq!(listed, git_listing(repo, &commit, &dir), "{reference}:{dir}");
        for e in &entries {
            let expected_path = if dir.is_empty() { e.name.clone() } else { format!("{dir}/{}", e.name) };
            assert_eq!(e.path, expected_path);
            let last = git_text(repo, &["log", "-1", "--format=%H", &commit, "--", &e.path]);
            assert_eq!(e.last_commit.as_ref().map(|c| c.sha.as_str()), Some(last.trim()), "{reference}: {}", e.path);
            assert_commit_info(repo, e.last_commit.as_ref().unwrap());
        }
        let bare = repos.list_directory("acme", reference, &dir, false).await.unwrap();
        assert!(bare.iter().all(|e| e.last_commit.is_none()));
        assert_eq!(bare.len(), entries.len());
    }
}

/// The shas `git log` prints for a query.
fn git_log(
    repo: &Path,
    commit: &str,
    path: Option<&str>,
    skip: usize,
    count: usize,
    since: Option<i64>,
    until: Option<i64>,
) -> Vec<String> {
    let (skip, count) = (format!("--skip={skip}"), format!("--max-count={count}"));
    let mut args = vec!["log".to_owned(), "--format=%H".to_owned(), skip, count];
    if let Some(s) = since {
        args.push(format!("--since=@{s} +0000"));
    }
    if let Some(u) = until {
        args.push(format!("--until=@{u} +0000"));
    }
    args.push(commit.to_owned());
    if let Some(p) = path {
        args.extend(["--".to_owned(), p.to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    git_text(repo, &args).lines().map(str::to_owned).collect()
}

async fn check_log(
    repos: &RepoStore,
    repo: &Path,
    reference: &str,
    path: Option<&str>,
    since: Option<i64>,
    until: Option<i64>,
) {
    let commit = repos.resolve("acme", reference).await.unwrap();
    for limit in [7usize, 100] {
        let mut page = 1;
        loop {
            let query = CommitQuery {
                reference: reference.to_owned(),
                path: path.map(str::to_owned),
                since,
                until,
                limit,
                page,
                ..CommitQuery::default()
            };
            let got = repos.commits("acme", &query).await.unwrap();
            let expected = git_log(repo, &commit, path, (page - 1) * limit, limit + 1, since, until);
            let shas: Vec<&str> = got.items.iter().map(|c| c.sha.as_str()).collect();
            let want: Vec<&str> = expected.iter().take(limit).map(String::as_str).collect();
            assert_eq!(shas, want, "{reference} {path:?} since {since:?} until {until:?} limit {limit} page {page}");
            assert_eq!(got.has_more, expected.len() > limit);
            if let Some(c) = got.items.first() {
                assert_commit_info(repo, c);
            }
            if !got.has_more {
                break;
            }
            page += 1;
        }
    }
}

/// `git log --raw --numstat` of one commit as (path, change, additions, deletions).
fn git_changes(repo: &Path, sha: &str, path: Option<&str>) -> Vec<(String, String, Option<u64>, Option<u64>)> {
    let mut args = vec!["log", "-1", "--format=", "--raw", "--numstat", "--no-renames", sha];
    if let Some(p) = path {
        args.extend(["--", p]);
    }
    let text = git_text(repo, &args);
    let mut files: Vec<(String, String, Option<u64>, Option<u64>)> = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(raw) = line.strip_prefix(':') {
            let (meta, path) = raw.split_once('\t').unwrap();
            let change = match meta.split_whitespace().nth(4).unwrap() {
                "A" => "added",
                "D" => "deleted",
                "T" => "type_changed",
                _ => "modified",
            };
            files.push((path.to_owned(), change.to_owned(), None, None));
        } else {
            let mut parts = line.splitn(3, '\t');
            let (add, del, path) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
            let file = files.iter_mut().find(|f| f.0 == path).unwrap();
            file.2 = add.parse().ok();
            file.3 = del.parse().ok();
        }
    }
    files
}

#[tokio::test]
async fn every_read_matches_what_git_prints() {
    let dir = tempfile::tempdir().unwrap();
    let repos = RepoStore::new(dir.path().to_owned(), Limits::default()).unwrap();
    repos.create("acme").await.unwrap();
    let repo = repos.path_of("acme").unwrap();
    build_history(&repo);
    git(&repo, &["tag", "-a", "-m", "a tag", "v1", "feature"]);
    // Git refuses to point a branch at a tag object; the file can still say so.
    let tag = git_text(&repo, &["rev-parse", "refs/tags/v1"]);
    std::fs::write(repo.join("refs/heads/tagged"), tag).unwrap();
    git(&repo, &["symbolic-ref", "refs/heads/alias", "refs/heads/feature"]);
    // Refs packed, one of them then moved by a loose ref that hides the packed one.
    git(&repo, &["pack-refs", "--all"]);
    git(&repo, &["update-ref", "refs/heads/revert", "refs/heads/revert~1"]);

    // Refs resolve as git resolves them.
    let main = git_text(&repo, &["rev-parse", "main"]).trim().to_owned();
    let old = git_text(&repo, &["rev-parse", "main~200"]).trim().to_owned();
    for reference in ["main", "feature", "revert", "side", "other", "alias", "tagged", &old, &old[..10], &main[..7]] {
        let resolved = repos.resolve("acme", reference).await.unwrap();
        let branch = format!("refs/heads/{reference}^{{commit}}");
        let candidate = if reference.len() >= 7 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
            format!("{reference}^{{commit}}")
        } else {
            branch
        };
        assert_eq!(resolved, git_text(&repo, &["rev-parse", "--verify", &candidate]).trim(), "{reference}");
    }
    assert!(matches!(repos.resolve("acme", "nope").await, Err(RepoError::RefNotFound)));
    assert!(matches!(repos.resolve("acme", "0000000").await, Err(RepoError::RefNotFound)));

    // Files, directories and the last commit of every entry, at branch tips and older commits.
    for reference in ["main", "feature", "revert", "side", "other"] {
        check_commit(&repos, &repo, reference).await;
    }
    for back in [1, 5, 60, 250] {
        let sha = git_text(&repo, &["rev-parse", &format!("main~{back}")]).trim().to_owned();
        check_commit(&repos, &repo, &sha).await;
    }
    // Several files at once, in the order asked.
    let paths: Vec<String> = ["src/lib.py", "link", "deep/f03.txt"].map(str::to_owned).to_vec();
    let many = repos.read_files("acme", "main", &paths).await.unwrap();
    for (file, path) in many.iter().zip(&paths) {
        assert_eq!(file.path, *path);
        assert_eq!(file.bytes, git(&repo, &["cat-file", "-p", &format!("{main}:{path}")]));
    }
    assert!(matches!(repos.read_files("acme", "main", &["src".to_owned()]).await, Err(RepoError::IsADirectory)));
    assert!(matches!(repos.read_file("acme", "main", "a.txt").await, Err(RepoError::PathNotFound)));
    assert!(matches!(repos.read_file("acme", "main", "t/inner.txt/x").await, Err(RepoError::PathNotFound)));
    assert!(matches!(repos.list_directory("acme", "main", "run.sh", false).await, Err(RepoError::IsAFile)));
    assert!(matches!(repos.list_directory("acme", "main", "nowhere", false).await, Err(RepoError::PathNotFound)));
    let root = repos.list_directory("acme", "main", "", false).await.unwrap();
    let kinds: Vec<(&str, EntryKind)> = root.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    assert!(kinds.contains(&("link", EntryKind::Symlink)) && kinds.contains(&("t", EntryKind::Directory)));

    // Commit pages: the whole history, paths that merges, renames, deletions and reverts
    // touched, and time windows.
    for path in [
        None,
        Some("src"),
        Some("src/sub"),
        Some("src/sub/x.py"),
        Some("src/util.py"),
        Some("docs"),
        Some("docs/readme.md"),
        Some("docs/README.md"),
        Some("a.txt"),
        Some("t"),
        Some("conflict.txt"),
        Some("deep/f05.txt"),
        Some("keep"),
        Some("run.sh"),
        Some("nowhere"),
    ] {
        check_log(&repos, &repo, "main", path, None, None).await;
    }
    check_log(&repos, &repo, "main", Some("deep"), Some((T0 + 150 * 60) as i64), Some((T0 + 260 * 60) as i64)).await;
    check_log(&repos, &repo, "main", None, Some((T0 + 101 * 60) as i64), None).await;
    check_log(&repos, &repo, "feature", Some("docs"), None, Some((T0 + 50 * 60) as i64)).await;

    // Changed files and line counts of a page, as `git log --raw --numstat` shows them.
    for path in [None, Some("src"), Some("docs/other.md")] {
        let query = CommitQuery {
            reference: "main".to_owned(),
            path: path.map(str::to_owned),
            limit: 40,
            page: 1,
            changed_files: true,
            stats: true,
            ..CommitQuery::default()
        };
        let page = repos.commits("acme", &query).await.unwrap();
        assert!(!page.items.is_empty());
        for c in &page.items {
            let got: Vec<(String, String, Option<u64>, Option<u64>)> = c
                .changed_files
                .as_ref()
                .unwrap()
                .iter()
                .map(|f| (f.path.clone(), f.change.to_owned(), f.additions, f.deletions))
                .collect();
            assert_eq!(got, git_changes(&repo, &c.sha, path), "{} {path:?}", c.sha);
        }
    }
    let root_commit = git_text(&repo, &["rev-list", "--max-parents=0", "main"]).trim().to_owned();
    let query = CommitQuery {
        reference: root_commit.clone(),
        limit: 1,
        page: 1,
        changed_files: true,
        ..CommitQuery::default()
    };
    let first = repos.commits("acme", &query).await.unwrap();
    let added: BTreeSet<&str> = first.items[0].changed_files.as_ref().unwrap().iter().map(|f| f.change).collect();
    assert_eq!(added, BTreeSet::from(["added"]), "a root commit adds all of its files");

    // Branches, one by one and by pages, as `git for-each-ref` lists them (the branch that
    // points at a tag object has no committer date there, so it is not listed).
    let listed = git_text(
        &repo,
        &["for-each-ref", "--format=%(refname:strip=2) %(objectname) %(committerdate:unix)", "refs/heads/"],
    );
    let expected: Vec<(String, String, i64)> = listed
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Some((f[0].to_owned(), f[1].to_owned(), f[2].parse().ok()?))
        })
        .collect();
    assert!(expected.iter().any(|b| b.0 == "alias") && !expected.iter().any(|b| b.0 == "tagged"));
    let mut paged = Vec::new();
    for page in 1.. {
        let got = repos.branches("acme", 2, page).await.unwrap();
        paged.extend(got.items);
        if !got.has_more {
            break;
        }
    }
    let got: Vec<(String, String, i64)> = paged.iter().map(|b| (b.name.clone(), b.sha.clone(), b.timestamp)).collect();
    assert_eq!(got, expected);
    for b in &paged {
        let one = repos.branch("acme", &b.name).await.unwrap();
        assert_eq!(&one, b);
        assert_eq!(one.message, info_of(&repo, &one.sha).5);
    }
    assert!(matches!(repos.branch("acme", "tagged").await, Err(RepoError::RefNotFound)));
    assert!(matches!(repos.branch("acme", "nope").await, Err(RepoError::RefNotFound)));

    // A push moves main: the same store shows the new tip at once, and the entries it changed.
    let before = repos.list_directory("acme", "main", "deep", true).await.unwrap();
    let mut im = Import::new();
    let pushed = im.commit(
        "main",
        "refs/heads/main^0",
        &[],
        T0 + 100_000,
        "After the push",
        &[Op::Put("deep/f03.txt", "pushed\n")],
    );
    let _ = pushed;
    im.run(&repo);
    let tip = git_text(&repo, &["rev-parse", "main"]).trim().to_owned();
    assert_eq!(repos.resolve("acme", "main").await.unwrap(), tip);
    let after = repos.list_directory("acme", "main", "deep", true).await.unwrap();
    for (b, a) in before.iter().zip(&after) {
        let sha = a.last_commit.as_ref().unwrap().sha.as_str();
        if a.name == "f03.txt" {
            assert_eq!(sha, tip);
        } else {
            assert_eq!(Some(sha), b.last_commit.as_ref().map(|c| c.sha.as_str()), "{}", a.name);
        }
    }
    check_commit(&repos, &repo, "main").await;
    assert_eq!(repos.read_file("acme", "main", "deep/f03.txt").await.unwrap().bytes, b"pushed\n");
}

#[tokio::test]
async fn reads_survive_a_repository_replaced_under_them() {
    let dir = tempfile::tempdir().unwrap();
    let repos = RepoStore::new(dir.path().to_owned(), Limits::default()).unwrap();
    repos.create("acme").await.unwrap();
    let first = repos.resolve("acme", "main").await.unwrap();
    let repo = repos.path_of("acme").unwrap();
    let mut im = Import::new();
    im.commit("main", "refs/heads/main^0", &[], T0, "More", &[Op::Put("more.txt", "more\n")]);
    im.run(&repo);
    git(&repo, &["gc", "--quiet", "--prune=now"]);
    let second = repos.resolve("acme", "main").await.unwrap();
    assert_ne!(first, second);
    assert_eq!(repos.read_file("acme", "main", "more.txt").await.unwrap().bytes, b"more\n");
    assert_eq!(repos.list_directory("acme", &first[..12], "", false).await.unwrap().len(), 1);

    std::fs::remove_dir_all(&repo).unwrap();
    assert!(matches!(repos.resolve("acme", "main").await, Err(RepoError::NoRepository)));
    repos.create("acme").await.unwrap();
    assert_eq!(repos.resolve("acme", "main").await.unwrap(), first, "the scaffold commit is the same everywhere");
    assert!(matches!(repos.resolve("acme", &second[..12]).await, Err(RepoError::RefNotFound)));
}
