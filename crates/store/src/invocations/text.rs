//! The words of invocation text, for indexing and for queries, and their spelling in each
//! backend's full-text syntax.
//!
//! Both backends index the words this module extracts rather than running their own parsers:
//! PostgreSQL's parser keeps `/app/tool.py` or `user@example.com` as single tokens while SQLite's
//! splits them, so the same search would find different rows on each. Extracting words here
//! gives one definition of a word for both, and leaves nothing in a user's query that either
//! backend could read as syntax.

use std::collections::HashSet;

/// Words longer than this are not indexed (base64 blobs, minified code); long enough for a
/// hex SHA-256.
const MAX_WORD_CHARS: usize = 128;

/// At most this many bytes of distinct words are indexed per field, which keeps PostgreSQL's
/// `tsvector` (1 MiB at most) and the SQLite index bounded whatever a tool prints.
pub(crate) const MAX_INDEXED_BYTES: usize = 64 * 1024;

/// At most this many words of a query are used.
pub(crate) const MAX_QUERY_WORDS: usize = 32;

/// The words of `text`: maximal runs of letters and digits, lowercased, in order, with the
/// character that ended each run (`None` at the end of the text).
fn words_with_terminator(text: &str) -> Vec<(String, Option<char>)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            current.extend(c.to_lowercase());
        } else if !current.is_empty() {
            out.push((std::mem::take(&mut current), Some(c)));
        }
    }
    if !current.is_empty() {
        out.push((current, None));
    }
    out.retain(|(w, _)| w.chars().count() <= MAX_WORD_CHARS);
    out
}

/// The distinct words of a field, in order of first appearance, up to [`MAX_INDEXED_BYTES`].
pub(crate) fn distinct_words(text: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut bytes = 0;
    let mut out = Vec::new();
    for (word, _) in words_with_terminator(text) {
        if bytes + word.len() + 1 > MAX_INDEXED_BYTES {
            break;
        }
        if seen.insert(word.clone()) {
            bytes += word.len() + 1;
            out.push(word);
        }
    }
    out
}

/// One word of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Term {
    /// The lowercased word.
    pub(crate) word: String,
    /// Whether it matches any word starting with it (the user wrote `word*`).
    pub(crate) prefix: bool,
}

/// The terms of a user's query: its words, each a prefix when directly followed by `*`;
/// everything else in the query is ignored. Repeats are dropped; at most [`MAX_QUERY_WORDS`].
pub(crate) fn query_terms(query: &str) -> Vec<Term> {
    let mut out: Vec<Term> = Vec::new();
    for (word, end) in words_with_terminator(query) {
        let term = Term { word, prefix: end == Some('*') };
        if !out.contains(&term) {
            out.push(term);
        }
        if out.len() == MAX_QUERY_WORDS {
            break;
        }
    }
    out
}

/// An FTS5 query requiring every term, each in one of `columns` (all columns when empty).
/// Every term is a quoted string, so nothing of the user's text is read as FTS5 syntax.
pub(crate) fn fts5_query(terms: &[Term], columns: &[&str]) -> String {
    let filter = match columns {
        [] => String::new(),
        [one] => format!("{one} : "),
        many => format!("{{{}}} : ", many.join(" ")),
    };
    terms
        .iter()
        .map(|t| {
            let quoted = format!("\"{}\"", t.word.replace('"', "\"\""));
            let star = if t.prefix { " *" } else { "" };
            format!("{filter}{quoted}{star}")
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// A PostgreSQL `tsquery` requiring every term, each carrying one of `weights` (any weight when
/// empty). Words are letters and digits only, so single-quoting them is enough to keep them
/// literal; quotes and backslashes are escaped all the same.
pub(crate) fn tsquery(terms: &[Term], weights: &str) -> String {
    terms
        .iter()
        .map(|t| {
            let quoted = format!("'{}'", t.word.replace('\\', "\\\\").replace('\'', "''"));
            let star = if t.prefix { "*" } else { "" };
            if star.is_empty() && weights.is_empty() {
                quoted
            } else {
                format!("{quoted}:{star}{weights}")
            }
        })
        .collect::<Vec<_>>()
        .join(" & ")
}

/// A PostgreSQL `tsvector` literal holding the distinct words of each field with the field's
/// weight. Weights are attached to positions in a `tsvector`, so every word gets one.
pub(crate) fn tsvector(fields: &[(&[String], char)]) -> String {
    let mut out = String::new();
    let mut position = 0u32;
    for (words, weight) in fields {
        for word in words.iter() {
            // PostgreSQL caps positions at 16383 itself; capping here keeps the literal honest.
            position = (position + 1).min(16383);
            if !out.is_empty() {
                out.push(' ');
            }
            out.push('\'');
            out.push_str(&word.replace('\\', "\\\\").replace('\'', "''"));
            out.push_str(&format!("':{position}{weight}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn words_split_on_everything_but_letters_and_digits() {
        assert_eq!(
            distinct_words("File \"/app/tool.py\", line 3, in run\nValueError: Bad_value 3"),
            w(&["file", "app", "tool", "py", "line", "3", "in", "run", "valueerror", "bad", "value"])
        );
        assert_eq!(distinct_words("Ünïcode ÉTÉ été"), w(&["ünïcode", "été"]));
        assert_eq!(distinct_words(&"x".repeat(129)), Vec::<String>::new());
        let many: String = (0..20_000).map(|i| format!("w{i} ")).collect();
        let kept = distinct_words(&many);
        assert!(kept.iter().map(|w| w.len() + 1).sum::<usize>() <= MAX_INDEXED_BYTES);
        assert!(kept.len() > 5_000);
    }

    #[test]
    fn query_terms_ignore_syntax_and_mark_prefixes() {
        let terms = query_terms("\"timeout\" AND (conn* OR 'x') -y: z&* timeout");
        let got: Vec<(&str, bool)> = terms.iter().map(|t| (t.word.as_str(), t.prefix)).collect();
        assert_eq!(
            got,
            [
                ("timeout", false),
                ("and", false),
                ("conn", true),
                ("or", false),
                ("x", false),
                ("y", false),
                ("z", false)
            ]
        );
        assert!(query_terms("\"*:&'( ").is_empty());
        assert_eq!(query_terms(&"a ".repeat(100)).len(), 1);
        let distinct: String = (0..100).map(|i| format!("w{i} ")).collect();
        assert_eq!(query_terms(&distinct).len(), MAX_QUERY_WORDS);
    }

    #[test]
    fn backend_syntax() {
        let terms = query_terms("Value conn*");
        assert_eq!(fts5_query(&terms, &[]), "\"value\" AND \"conn\" *");
        assert_eq!(fts5_query(&terms, &["output"]), "output : \"value\" AND output : \"conn\" *");
        assert_eq!(fts5_query(&terms[..1], &["output", "exception_type"]), "{output exception_type} : \"value\"");
        assert_eq!(tsquery(&terms, ""), "'value' & 'conn':*");
        assert_eq!(tsquery(&terms, "AB"), "'value':AB & 'conn':*AB");
        assert_eq!(tsvector(&[(&w(&["a", "b"]), 'A'), (&w(&["a"]), 'C')]), "'a':1A 'b':2A 'a':3C");
    }
}
