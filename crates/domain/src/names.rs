//! Validated names: tool names and environment variable names.
//!
//! The wire contract's string types are "stripped non-empty strings": surrounding white space is
//! removed before the pattern is checked, so parsing returns the stripped value.

use std::fmt;
use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;

/// The longest tool name accepted. The wire contract has a 400 "too long" case without a number;
/// 64 matches the common limit on function names that LLM providers impose.
pub const TOOL_NAME_MAX_LEN: usize = 64;

/// The longest environment variable name accepted; far above any real name, it only bounds storage.
pub const ENV_VAR_NAME_MAX_LEN: usize = 128;

/// Why a name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty after stripping white space.
    #[error("String should have at least 1 character")]
    Empty,
    /// Characters outside the allowed pattern.
    #[error("String should match pattern '{0}'")]
    Pattern(&'static str),
    /// Longer than the maximum; a distinct case because the API reports it with its own status.
    #[error("String is too long")]
    TooLong,
}

/// The name of a tool: `^[a-z0-9_]+$`, at most [`TOOL_NAME_MAX_LEN`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ToolName(String);

/// The pattern tool names follow, as the wire contract states it.
pub const TOOL_NAME_PATTERN: &str = "^[a-z0-9_]+$";

impl ToolName {
    /// Strips and validates a tool name.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return Err(NameError::Pattern(TOOL_NAME_PATTERN));
        }
        if s.len() > TOOL_NAME_MAX_LEN {
            return Err(NameError::TooLong);
        }
        Ok(ToolName(s.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ToolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of an environment variable of a tool.
///
/// The wire contract's pattern `[A-Z_]+` is unanchored, which would accept `a1B`; toolsmith
/// anchors it and allows digits after the first character, as shells do: `^[A-Z_][A-Z0-9_]*$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct EnvVarName(String);

/// The pattern environment variable names follow in toolsmith.
pub const ENV_VAR_NAME_PATTERN: &str = "^[A-Z_][A-Z0-9_]*$";

impl EnvVarName {
    /// Strips and validates an environment variable name.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let s = raw.trim();
        let bytes = s.as_bytes();
        if bytes.is_empty() {
            return Err(NameError::Empty);
        }
        let first_ok = bytes[0].is_ascii_uppercase() || bytes[0] == b'_';
        let rest_ok = bytes.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_');
        if !first_ok || !rest_ok {
            return Err(NameError::Pattern(ENV_VAR_NAME_PATTERN));
        }
        if s.len() > ENV_VAR_NAME_MAX_LEN {
            return Err(NameError::TooLong);
        }
        Ok(EnvVarName(s.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EnvVarName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stripped, non-empty string matching `^[\w\s]+$` (Unicode word characters and white space),
/// the type of tag keys and non-null tag values.
pub fn parse_word_string(raw: &str) -> Result<String, NameError> {
    static WORDS: OnceLock<Regex> = OnceLock::new();
    let words = WORDS.get_or_init(|| Regex::new(r"^[\w\s]+$").expect("static pattern"));
    let s = raw.trim();
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if !words.is_match(s) {
        return Err(NameError::Pattern(r"^[\w\s]+$"));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names() {
        assert_eq!(ToolName::parse("  get_weather ").unwrap().as_str(), "get_weather");
        assert_eq!(ToolName::parse(" "), Err(NameError::Empty));
        assert!(matches!(ToolName::parse("Get"), Err(NameError::Pattern(_))));
        assert!(matches!(ToolName::parse("a-b"), Err(NameError::Pattern(_))));
        assert!(ToolName::parse(&"a".repeat(64)).is_ok());
        assert_eq!(ToolName::parse(&"a".repeat(65)), Err(NameError::TooLong));
    }

    #[test]
    fn env_var_names() {
        assert!(EnvVarName::parse("API_KEY_2").is_ok());
        assert!(EnvVarName::parse("_X").is_ok());
        for bad in ["a1B", "1ABC", "API-KEY", "API KEY", "ÄPI"] {
            assert!(matches!(EnvVarName::parse(bad), Err(NameError::Pattern(_))), "{bad}");
        }
        assert_eq!(EnvVarName::parse(""), Err(NameError::Empty));
    }

    #[test]
    fn word_strings() {
        assert_eq!(parse_word_string(" team a ").unwrap(), "team a");
        assert_eq!(parse_word_string("équipe_1").unwrap(), "équipe_1");
        assert!(parse_word_string("a:b").is_err());
        assert!(parse_word_string("   ").is_err());
    }
}
