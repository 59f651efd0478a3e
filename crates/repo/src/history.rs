//! History walks over the in-process object reader, with git's own semantics.
//!
//! `git log [-- <path>]` walks commits newest first by committer date and, with a path, applies
//! git's default history simplification: a commit whose path content equals a parent's
//! ("TREESAME") is not shown, and a merge that is TREESAME to one of its parents is followed
//! through the first such parent only. [`log`] reproduces that walk; [`last_commits`] answers
//! `git log -1 -- <dir>/<name>` for every entry of a directory at once.
//!
//! Comparing a path between two commits is comparing what git's tree diff would report for
//! it: the entries' modes and ids, and where both are directories with different ids, whether
//! any file below them differs (a directory holding only empty directories has no files, so
//! git sees no change in it).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use crate::objects::{lock, Commit, LastCommits, Mode, Oid, Repo, Tree};
use crate::RepoError;

/// An entry as a path names it: mode and object id.
pub(crate) type PathEntry = Option<(Mode, Oid)>;

/// The entry at `path` ("" is the root tree) below the tree `root`.
pub(crate) fn entry_at(repo: &Repo, root: &Oid, path: &str) -> Result<PathEntry, RepoError> {
    if path.is_empty() {
        return Ok(Some((Mode::Directory, root.clone())));
    }
    let mut current = root.clone();
    let mut parts = path.split('/').peekable();
    while let Some(part) = parts.next() {
        let tree = repo.tree(&current)?;
        let Some(entry) = tree.get(part.as_bytes()) else { return Ok(None) };
        if parts.peek().is_none() {
            return Ok(Some((entry.mode, entry.oid.clone())));
        }
        if entry.mode != Mode::Directory {
            return Ok(None);
        }
        current = entry.oid.clone();
    }
    Ok(None)
}

fn tree_of(repo: &Repo, entry: &PathEntry) -> Result<Option<Arc<Tree>>, RepoError> {
    match entry {
        Some((Mode::Directory, oid)) => Ok(Some(repo.tree(oid)?)),
        _ => Ok(None),
    }
}

fn child(tree: &Option<Arc<Tree>>, name: &[u8]) -> PathEntry {
    tree.as_ref().and_then(|t| t.get(name)).map(|e| (e.mode, e.oid.clone()))
}

/// Whether git's recursive tree diff reports a change between two entries of the same path.
pub(crate) fn differ(repo: &Repo, a: &PathEntry, b: &PathEntry) -> Result<bool, RepoError> {
    // Iterative, so that a deeply nested tree cannot exhaust the stack.
    let mut pending: Vec<(PathEntry, PathEntry)> = vec![(a.clone(), b.clone())];
    while let Some((a, b)) = pending.pop() {
        match (&a, &b) {
            (None, None) => {}
            (Some(x), Some(y)) if x == y => {}
            (Some((Mode::Directory, _)), Some((Mode::Directory, _)))
            | (Some((Mode::Directory, _)), None)
            | (None, Some((Mode::Directory, _))) => {
                let (ta, tb) = (tree_of(repo, &a)?, tree_of(repo, &b)?);
                if let Some(ta) = &ta {
                    for e in &ta.entries {
                        pending.push((Some((e.mode, e.oid.clone())), child(&tb, &e.raw_name)));
                    }
                }
                if let Some(tb) = &tb {
                    for e in &tb.entries {
                        if child(&ta, &e.raw_name).is_none() {
                            pending.push((None, Some((e.mode, e.oid.clone()))));
                        }
                    }
                }
            }
            _ => return Ok(true),
        }
    }
    Ok(false)
}

fn commit(repo: &Repo, oid: &Oid) -> Result<Arc<Commit>, RepoError> {
    repo.commit(oid)?.ok_or_else(|| RepoError::Git(format!("commit {oid} cannot be read")))
}

/// What the commit listing walks.
pub(crate) struct LogQuery<'a> {
    /// Only commits that change this path (none, or "", for every commit).
    pub(crate) path: Option<&'a str>,
    /// Commits older than this are not shown, nor is anything reached only through them.
    pub(crate) since: Option<u64>,
    /// Commits newer than this are not shown (their history still is).
    pub(crate) until: Option<u64>,
    /// Shown commits to pass over first.
    pub(crate) skip: usize,
    /// Shown commits to return at most.
    pub(crate) count: usize,
}

/// The commits `git log [--since] [--until] --skip --max-count <start> [-- <path>]` prints, in
/// its order.
pub(crate) fn log(
    repo: &Repo,
    start: (Oid, Arc<Commit>),
    query: &LogQuery<'_>,
) -> Result<Vec<(Oid, Arc<Commit>)>, RepoError> {
    let path = query.path.filter(|p| !p.is_empty());
    let mut out = Vec::new();
    if query.count == 0 {
        return Ok(out);
    }
    // Git keeps the commits to visit in a list ordered by committer date, a new one going after
    // those of the same date: popping the newest, the earliest queued first among equals.
    let mut queue: BinaryHeap<(u64, Reverse<u64>, Oid)> = BinaryHeap::new();
    let mut commits: HashMap<Oid, Arc<Commit>> = HashMap::new();
    let mut seen: HashSet<Oid> = HashSet::new();
    let mut order = 0u64;
    let (start_oid, start_commit) = start;
    queue.push((start_commit.date, Reverse(order), start_oid.clone()));
    seen.insert(start_oid.clone());
    commits.insert(start_oid, start_commit);
    let mut skipped = 0;
    while let Some((_, _, oid)) = queue.pop() {
        let c = match commits.remove(&oid) {
            Some(c) => c,
            None => commit(repo, &oid)?,
        };
        if query.since.is_some_and(|since| c.date < since) {
            continue;
        }
        let mut parents: Vec<(Oid, Arc<Commit>)> = Vec::with_capacity(c.parents.len());
        for p in &c.parents {
            parents.push((p.clone(), commit(repo, p)?));
        }
        let mut treesame = false;
        if let Some(path) = path {
            let here = entry_at(repo, &c.tree, path)?;
            if parents.is_empty() {
                treesame = !differ(repo, &here, &None)?;
            } else {
                for i in 0..parents.len() {
                    let there = entry_at(repo, &parents[i].1.tree, path)?;
                    if !differ(repo, &here, &there)? {
                        let only = parents.swap_remove(i);
                        parents = vec![only];
                        treesame = true;
                        break;
                    }
                }
            }
        }
        for (p, pc) in parents {
            if seen.insert(p.clone()) {
                order += 1;
                queue.push((pc.date, Reverse(order), p.clone()));
                commits.insert(p, pc);
            }
        }
        if query.until.is_some_and(|until| c.date > until) || treesame {
            continue;
        }
        if skipped < query.skip {
            skipped += 1;
            continue;
        }
        out.push((oid, c));
        if out.len() >= query.count {
            break;
        }
    }
    Ok(out)
}

/// For every entry of directory `dir` at commit `start`, the newest commit that changed it:
/// the commit `git log -1 -- <dir>/<name>` prints.
///
/// That commit is the start itself if it changed the entry, and otherwise the answer for the
/// parent git's simplification follows, so the entries walk down together and part where a
/// merge sends them to different parents. The answer for a (commit, directory) is cached, and a
/// walk stops at any commit whose answer is cached: after a push, the walk covers only the
/// commits the push added.
pub(crate) fn last_commits(repo: &Repo, start: &Oid, dir: &str) -> Result<LastCommits, RepoError> {
    let key = (start.clone(), dir.to_owned());
    let cached = lock(&repo.objects.last_commits).get(&key);
    if let Some(found) = cached {
        return Ok(found);
    }
    let first = commit(repo, start)?;
    let names: Vec<Box<[u8]>> = match tree_of(repo, &entry_at(repo, &first.tree, dir)?)? {
        Some(tree) => tree.entries.iter().map(|e| e.raw_name.clone()).collect(),
        None => Vec::new(),
    };
    let mut found: HashMap<Box<[u8]>, Option<Oid>> = HashMap::with_capacity(names.len());
    // Commits to visit with the names that reached them, newest first so that names arriving
    // by different paths are usually handled together.
    let mut waiting: HashMap<Oid, Vec<Box<[u8]>>> = HashMap::new();
    let mut queue: BinaryHeap<(u64, Oid)> = BinaryHeap::new();
    waiting.insert(start.clone(), names);
    queue.push((first.date, start.clone()));
    while let Some((_, oid)) = queue.pop() {
        let Some(mut names) = waiting.remove(&oid) else { continue };
        if &oid != start {
            let cached = lock(&repo.objects.last_commits).get(&(oid.clone(), dir.to_owned()));
            if let Some(known) = cached {
                names.retain(|n| match known.get(n) {
                    Some(answer) => {
                        found.insert(n.clone(), answer.clone());
                        false
                    }
                    None => true,
                });
                if names.is_empty() {
                    continue;
                }
            }
        }
        let c = commit(repo, &oid)?;
        let here_entry = entry_at(repo, &c.tree, dir)?;
        let here = tree_of(repo, &here_entry)?;
        let mut next: Vec<(Oid, Vec<Box<[u8]>>)> = Vec::new();
        if c.parents.is_empty() {
            for n in names {
                let changed = differ(repo, &child(&here, &n), &None)?;
                found.insert(n, changed.then(|| oid.clone()));
            }
        } else {
            let mut parents = Vec::with_capacity(c.parents.len());
            for p in &c.parents {
                let pc = commit(repo, p)?;
                let there_entry = entry_at(repo, &pc.tree, dir)?;
                // The same directory: nothing below it changed.
                let same_dir = there_entry == here_entry;
                let there = if same_dir { None } else { tree_of(repo, &there_entry)? };
                parents.push((p.clone(), same_dir, there));
                next.push((p.clone(), Vec::new()));
            }
            'names: for n in names {
                let mine = child(&here, &n);
                for (i, (_, same_dir, there)) in parents.iter().enumerate() {
                    if *same_dir || !differ(repo, &mine, &child(there, &n))? {
                        next[i].1.push(n);
                        continue 'names;
                    }
                }
                found.insert(n, Some(oid.clone()));
            }
        }
        for (p, names) in next.into_iter().filter(|(_, names)| !names.is_empty()) {
            let date = commit(repo, &p)?.date;
            match waiting.get_mut(&p) {
                Some(already) => already.extend(names),
                None => {
                    waiting.insert(p.clone(), names);
                    queue.push((date, p));
                }
            }
        }
    }
    let found: LastCommits = Arc::new(found);
    let weight = 64 + found.len() * 64;
    lock(&repo.objects.last_commits).insert(key, found.clone(), weight);
    Ok(found)
}
