//! Validation of what callers name: organizations, refs and paths. Everything a caller sends is
//! checked here before it reaches a git command line.

use crate::RepoError;

/// Checks an organization id (the repository's directory name).
pub fn check_org(org: &str) -> Result<(), RepoError> {
    let b = org.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(RepoError::InvalidPath(format!("organization {org:?}")))
    }
}

/// The longest ref a caller may give, in characters.
pub const MAX_REF_LEN: usize = 255;

/// Checks a ref as a caller may give it: a branch name or a full or abbreviated commit id.
///
/// The rules are git's own for branch names (`git check-ref-format`), tightened: no leading `-`
/// (it would read as an option), no `..`, no `@{`, no control characters, white space or the
/// characters git reserves (`~^:?*[\`). The error says which rule failed, not the ref itself,
/// so that it can be shown next to the input without repeating it.
pub fn check_ref(r: &str) -> Result<(), RepoError> {
    let bad = |why: &str| Err(RepoError::InvalidRef(why.to_owned()));
    if r.is_empty() || r.chars().count() > MAX_REF_LEN {
        return bad("must be 1 to 255 characters");
    }
    if r.starts_with('-') || r.starts_with('/') || r.ends_with('/') || r.ends_with('.') {
        return bad("must not start with '-' or '/' nor end with '/' or '.'");
    }
    if r.contains("..") || r.contains("@{") || r.contains("//") || r == "@" {
        return bad("must not contain '..', '@{' or '//'");
    }
    if r.chars().any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c)) {
        return bad("contains white space, a control character or one of the characters git reserves (~^:?*[\\)");
    }
    if r.split('/').any(|part| part.starts_with('.') || part.ends_with(".lock")) {
        return bad("a component starts with '.' or ends with '.lock'");
    }
    Ok(())
}

/// Whether a (checked) ref looks like a commit id or a prefix of one.
pub fn looks_like_sha(r: &str) -> bool {
    (4..=40).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Normalizes a path inside the repository: `""`, `"/"` and `"."` are the root; the result has
/// no leading or trailing `/`. Absolute paths, `..` and `.` components, empty components, NUL,
/// and anything inside `.git` are refused; the error says which rule failed.
pub fn normalize_path(raw: &str) -> Result<String, RepoError> {
    let bad = |why: &str| Err(RepoError::InvalidPath(why.to_owned()));
    if raw.len() > 4096 {
        return bad("too long");
    }
    if raw.contains('\0') {
        return bad("contains NUL");
    }
    if raw.is_empty() || raw == "/" || raw == "." {
        return Ok(String::new());
    }
    if raw.starts_with('/') && raw.len() > 1 {
        return bad("absolute paths are not allowed");
    }
    let trimmed = raw.trim_end_matches('/');
    let mut parts = Vec::new();
    for part in trimmed.split('/') {
        match part {
            "" => return bad("empty path component"),
            "." | ".." => return bad("'.' and '..' are not allowed"),
            p if p.eq_ignore_ascii_case(".git") => return bad("'.git' is not part of the repository's content"),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs() {
        for good in ["main", "feature/login", "v1.2.3", "abc1234", "team_a-b"] {
            assert!(check_ref(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-x",
            "--upload-pack=touch /tmp/x",
            "a..b",
            "a b",
            "a~1",
            "HEAD^",
            "x:y",
            "@",
            "a@{1}",
            "/a",
            "a/",
            ".hidden",
            "a.lock",
            "a\nb",
            "a//b",
            "a\u{2000}b",
        ] {
            assert!(check_ref(bad).is_err(), "{bad:?}");
        }
        assert!(looks_like_sha("abc1234"));
        assert!(!looks_like_sha("main"));
        assert!(!looks_like_sha("ABC1234"));
    }

    #[test]
    fn paths() {
        assert_eq!(normalize_path("").unwrap(), "");
        assert_eq!(normalize_path("/").unwrap(), "");
        assert_eq!(normalize_path("hello_world/").unwrap(), "hello_world");
        assert_eq!(normalize_path("a/b.py").unwrap(), "a/b.py");
        for bad in [
            "../etc/passwd",
            "a/../../b",
            "/etc/passwd",
            ".git/config",
            "a/.git/x",
            "a//b",
            "./a",
            "a\0b",
            ".GIT/config",
        ] {
            assert!(normalize_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_org("acme").is_ok());
        assert!(check_org("../x").is_err());
    }
}
