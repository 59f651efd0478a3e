//! Reading the organization's repository: files, directories (with the last commit of each
//! entry), history and branches, each with who pushed the commits shown when they arrived
//! through toolsmith. Also the repository steps of other use cases: creating the repository on
//! first use and the ancestry check of publishing.

use std::collections::HashMap;

use toolsmith_domain::{OrgId, Permission};
use toolsmith_repo::browse::{BranchInfo, CommitInfo, CommitQuery, DirEntry, FileContent, Page};
use toolsmith_repo::RepoError;
use toolsmith_store::UserRef;

use super::{Caller, Error};
use crate::app::AppState;

/// Who pushed each commit, by sha; commits that did not arrive through toolsmith are absent.
pub type Pushers = HashMap<String, UserRef>;

/// Creates the organization's repository on first use (organizations made before it existed,
/// or whose creation-time attempt failed).
pub async fn ensure_repo(state: &AppState, org: &OrgId) -> Result<(), Error> {
    if state.repos().exists(org.as_str()) {
        return Ok(());
    }
    state.repos().create(org.as_str()).await.map_err(Error::from_repo)
}

/// Whether `ancestor` is an ancestor of (or the same commit as) `descendant`.
pub async fn is_ancestor(state: &AppState, org: &OrgId, ancestor: &str, descendant: &str) -> Result<bool, Error> {
    state
        .repos()
        .is_ancestor(org.as_str(), ancestor, descendant)
        .await
        .map_err(|e| Error::internal("ancestry check failed", e))
}

impl Error {
    /// The error of a repository read: what does not exist is [`Error::NotFound`], what cannot
    /// be answered as asked is a rejection, and the rest is the server's.
    pub fn from_repo(err: RepoError) -> Error {
        match err {
            RepoError::NoRepository | RepoError::RefNotFound | RepoError::PathNotFound | RepoError::IsADirectory => {
                Error::NotFound
            }
            RepoError::IsAFile => Error::Rejected("The specified path is a file, not a directory.".into()),
            RepoError::TooLarge { limit } => Error::Rejected(format!(
                "The file is larger than {limit} bytes, the most this endpoint returns; clone the repository to read it."
            )),
            RepoError::InvalidRef(why) => Error::InvalidArgument { name: "ref", message: why },
            RepoError::InvalidPath(why) => Error::InvalidArgument { name: "path", message: why },
            RepoError::UnknownService => Error::NotFound,
            other => Error::internal("repository error", other),
        }
    }
}

async fn opened(state: &AppState, caller: &Caller) -> Result<(), Error> {
    caller.require(Permission::AccessRepo)?;
    ensure_repo(state, &caller.org).await
}

/// A file's bytes at a ref.
pub async fn read_file(state: &AppState, caller: &Caller, reference: &str, path: &str) -> Result<FileContent, Error> {
    opened(state, caller).await?;
    state.repos().read_file(caller.org.as_str(), reference, path).await.map_err(Error::from_repo)
}

/// Several files at a ref; a path naming a directory is a rejection.
pub async fn read_files(
    state: &AppState,
    caller: &Caller,
    reference: &str,
    paths: &[String],
) -> Result<Vec<FileContent>, Error> {
    opened(state, caller).await?;
    state.repos().read_files(caller.org.as_str(), reference, paths).await.map_err(|e| match e {
        RepoError::IsADirectory => Error::Rejected("One or more specified paths are not files.".into()),
        other => Error::from_repo(other),
    })
}

/// A directory's entries at a ref, with the last commit of each when asked.
pub async fn list_directory(
    state: &AppState,
    caller: &Caller,
    reference: &str,
    path: &str,
    with_last_commit: bool,
) -> Result<(Vec<DirEntry>, Pushers), Error> {
    opened(state, caller).await?;
    let entries = state
        .repos()
        .list_directory(caller.org.as_str(), reference, path, with_last_commit)
        .await
        .map_err(Error::from_repo)?;
    let shas: Vec<String> = entries.iter().filter_map(|e| e.last_commit.as_ref().map(|c| c.sha.clone())).collect();
    let pushers = state.store().pushers(&caller.org, &shas).await?;
    Ok((entries, pushers))
}

/// A page of history.
pub async fn commits(
    state: &AppState,
    caller: &Caller,
    query: &CommitQuery,
) -> Result<(Page<CommitInfo>, Pushers), Error> {
    opened(state, caller).await?;
    let page = state.repos().commits(caller.org.as_str(), query).await.map_err(Error::from_repo)?;
    let shas: Vec<String> = page.items.iter().map(|c| c.sha.clone()).collect();
    let pushers = state.store().pushers(&caller.org, &shas).await?;
    Ok((page, pushers))
}

/// One branch; a name that cannot be a branch names none.
pub async fn branch(state: &AppState, caller: &Caller, name: &str) -> Result<(BranchInfo, Pushers), Error> {
    opened(state, caller).await?;
    let info = state.repos().branch(caller.org.as_str(), name).await.map_err(|e| match e {
        RepoError::InvalidRef(_) => Error::NotFound,
        other => Error::from_repo(other),
    })?;
    let pushers = state.store().pushers(&caller.org, std::slice::from_ref(&info.sha)).await?;
    Ok((info, pushers))
}

/// A page of branches.
pub async fn branches(
    state: &AppState,
    caller: &Caller,
    limit: usize,
    page: usize,
) -> Result<(Page<BranchInfo>, Pushers), Error> {
    opened(state, caller).await?;
    let listed = state.repos().branches(caller.org.as_str(), limit, page).await.map_err(Error::from_repo)?;
    let shas: Vec<String> = listed.items.iter().map(|b| b.sha.clone()).collect();
    let pushers = state.store().pushers(&caller.org, &shas).await?;
    Ok((listed, pushers))
}
