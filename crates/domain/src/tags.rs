//! Tool tags and the `key:value` filter syntax of the tool listing.

use serde::Serialize;

/// One tag of a tool: a key with an optional value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Tag {
    /// The tag's key.
    pub key: String,
    /// The tag's value; `None` is a tag that is present without a value.
    pub value: Option<String>,
}

/// What a `tag` query parameter asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagFilter {
    /// `key:value`: the key is present with exactly this value.
    Equals(String, String),
    /// `key:*`: the key is present, whatever its value.
    Present(String),
    /// `key:`: the key is present with no value.
    Null(String),
}

impl TagFilter {
    /// Parses `key:value`, splitting at the first colon (values may contain colons); `None` when
    /// there is no colon or no key.
    pub fn parse(raw: &str) -> Option<Self> {
        let (key, value) = raw.split_once(':')?;
        if key.is_empty() {
            return None;
        }
        let key = key.to_owned();
        Some(match value {
            "" => TagFilter::Null(key),
            "*" => TagFilter::Present(key),
            v => TagFilter::Equals(key, v.to_owned()),
        })
    }

    /// The key this filter constrains.
    pub fn key(&self) -> &str {
        match self {
            TagFilter::Equals(k, _) | TagFilter::Present(k) | TagFilter::Null(k) => k,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_forms() {
        assert_eq!(TagFilter::parse("team:core"), Some(TagFilter::Equals("team".into(), "core".into())));
        assert_eq!(TagFilter::parse("team:*"), Some(TagFilter::Present("team".into())));
        assert_eq!(TagFilter::parse("team:"), Some(TagFilter::Null("team".into())));
        assert_eq!(TagFilter::parse("url:a:b"), Some(TagFilter::Equals("url".into(), "a:b".into())));
        assert_eq!(TagFilter::parse("team"), None);
        assert_eq!(TagFilter::parse(":x"), None);
    }
}
