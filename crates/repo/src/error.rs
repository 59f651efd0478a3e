//! The repository error type, precise enough for the HTTP layer to choose a status.

/// What went wrong with a repository operation.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The organization has no repository.
    #[error("the organization has no repository")]
    NoRepository,
    /// The ref names no branch or commit.
    #[error("ref not found")]
    RefNotFound,
    /// Nothing exists at the path in that commit.
    #[error("path not found")]
    PathNotFound,
    /// A file was asked for, but the path is a directory.
    #[error("the path is a directory")]
    IsADirectory,
    /// A directory was asked for, but the path is a file.
    #[error("the path is a file")]
    IsAFile,
    /// The file is larger than the configured cap.
    #[error("the file is larger than {limit} bytes")]
    TooLarge {
        /// The cap in bytes.
        limit: u64,
    },
    /// The ref is not a plausible branch name or commit id.
    #[error("invalid ref: {0}")]
    InvalidRef(String),
    /// The path escapes the repository or is otherwise malformed.
    #[error("invalid path: {0}")]
    InvalidPath(String),
    /// The git path of a smart-HTTP request is not one git clients use.
    #[error("unknown git service path")]
    UnknownService,
    /// Git failed in a way the caller did not cause.
    #[error("git failed: {0}")]
    Git(String),
    /// A filesystem operation failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}
