//! Tool versions (`X.Y.Z`), bumps, and PEP 440 version specifiers over them.
//!
//! Versions are plain semantic versions; clients select and deprecate them with the Python
//! packaging specifiers agents already use for tool dependencies (`==1.2.3`, `>=1,<2`,
//! `~=1.2`, `!=1.0.0`, `==1.*`). Matching is delegated to `pep440_rs` so that it agrees with pip
//! and uv, including the subtle cases (`~=`, wildcards, zero padding).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A tool version `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Version {
    /// Incompatible changes.
    pub major: u64,
    /// Compatible additions.
    pub minor: u64,
    /// Fixes.
    pub patch: u64,
}

/// Which part of the version a publish increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BumpType {
    /// `X+1.0.0`.
    Major,
    /// `X.Y+1.0`.
    Minor,
    /// `X.Y.Z+1`.
    Patch,
}

impl BumpType {
    /// Parses `major`, `minor` or `patch`.
    pub fn parse(s: &str) -> Option<BumpType> {
        match s {
            "major" => Some(BumpType::Major),
            "minor" => Some(BumpType::Minor),
            "patch" => Some(BumpType::Patch),
            _ => None,
        }
    }
}

impl Version {
    /// Parses exactly `X.Y.Z` (decimal, no leading `v`, no pre-release or local part).
    pub fn parse(s: &str) -> Option<Version> {
        let mut parts = s.split('.');
        let mut next = || -> Option<u64> {
            let p = parts.next()?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || (p.len() > 1 && p.starts_with('0')) {
                return None;
            }
            p.parse().ok()
        };
        let v = Version { major: next()?, minor: next()?, patch: next()? };
        parts.next().is_none().then_some(v)
    }

    /// The version after `highest` (the highest ever published, deprecated ones included) for a
    /// bump; with nothing published yet, counting starts from `0.0.0`, so the first `major` is
    /// `1.0.0`. A part already at `u64::MAX` stays there rather than wrapping to a number that
    /// was used before.
    pub fn next(highest: Option<Version>, bump: BumpType) -> Version {
        let v = highest.unwrap_or(Version { major: 0, minor: 0, patch: 0 });
        match bump {
            BumpType::Major => Version { major: v.major.saturating_add(1), minor: 0, patch: 0 },
            BumpType::Minor => Version { major: v.major, minor: v.minor.saturating_add(1), patch: 0 },
            BumpType::Patch => Version { major: v.major, minor: v.minor, patch: v.patch.saturating_add(1) },
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A PEP 440 version specifier set, such as `>=1.0,<2` (comma means "and").
#[derive(Debug, Clone)]
pub struct Specifier {
    text: String,
    inner: pep440_rs::VersionSpecifiers,
}

impl Specifier {
    /// Parses a specifier set; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<Specifier, String> {
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Err("a version specifier cannot be empty".into());
        }
        let inner = pep440_rs::VersionSpecifiers::from_str(trimmed).map_err(|e| e.to_string())?;
        Ok(Specifier { text: trimmed.to_owned(), inner })
    }

    /// Whether `version` satisfies every clause.
    pub fn matches(&self, version: &Version) -> bool {
        let v = pep440_rs::Version::new([version.major, version.minor, version.patch]);
        self.inner.contains(&v)
    }

    /// The specifier as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(v("1.2.3").to_string(), "1.2.3");
        for bad in ["1.2", "1.2.3.4", "v1.2.3", "1.02.3", "1.2.x", "", "1..3", "-1.2.3"] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
        assert!(v("1.10.0") > v("1.9.9"));
    }

    #[test]
    fn bumps_start_from_zero_and_follow_the_highest() {
        assert_eq!(Version::next(None, BumpType::Major), v("1.0.0"));
        assert_eq!(Version::next(None, BumpType::Minor), v("0.1.0"));
        assert_eq!(Version::next(None, BumpType::Patch), v("0.0.1"));
        assert_eq!(Version::next(Some(v("1.4.2")), BumpType::Major), v("2.0.0"));
        assert_eq!(Version::next(Some(v("1.4.2")), BumpType::Minor), v("1.5.0"));
        assert_eq!(Version::next(Some(v("1.4.2")), BumpType::Patch), v("1.4.3"));
    }

    #[test]
    fn specifiers_match_like_pip() {
        let cases = [
            ("==1.2.3", "1.2.3", true),
            ("==1.2.3", "1.2.4", false),
            ("==1.2", "1.2.0", true),
            ("==1.*", "1.9.0", true),
            ("==1.*", "2.0.0", false),
            (">=1,<2", "1.5.0", true),
            (">=1,<2", "2.0.0", false),
            ("~=1.2", "1.9.0", true),
            ("~=1.2", "2.0.0", false),
            ("~=1.2.3", "1.2.9", true),
            ("~=1.2.3", "1.3.0", false),
            ("!=1.0.0", "1.0.0", false),
            ("!=1.0.0", "1.0.1", true),
            (" >1.0.0 ", "1.0.1", true),
        ];
        for (spec, version, expected) in cases {
            assert_eq!(Specifier::parse(spec).unwrap().matches(&v(version)), expected, "{spec} vs {version}");
        }
        for bad in ["", "1.2.3", "=>1", "~=1", "==1.2.*.4", ">>1"] {
            assert!(Specifier::parse(bad).is_err(), "{bad:?}");
        }
    }
}
