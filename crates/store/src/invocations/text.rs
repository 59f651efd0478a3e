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
/// character that ended each run (`None` at the end of the text). A final sigma `ς` counts as
/// `σ`, as case folding has it: lowering `Σ` one character at a time gives `σ` wherever it
/// stands, so `ΟΔΟΣ` would otherwise not find `οδος`.
fn words_with_terminator(text: &str) -> Vec<(String, Option<char>)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            current.extend(c.to_lowercase().map(|l| if l == 'ς' { 'σ' } else { l }));
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

/// Properties of the query builders against the real engines: whatever a caller types, the query
/// is valid syntax for SQLite's FTS5 and PostgreSQL's `tsquery`, and any words taken from a text
/// find that text once indexed.
#[cfg(test)]
mod properties {
    use std::sync::{Mutex, OnceLock};

    use proptest::prelude::*;
    use sqlx::postgres::PgConnection;
    use sqlx::sqlite::SqliteConnection;
    use sqlx::{Connection, Row};
    use tokio::runtime::Runtime;

    use super::*;

    /// The columns of the FTS5 table, in the order the store writes them.
    const COLUMNS: [&str; 4] = ["output", "exception_message", "exception_type", "exception_stack_trace"];

    /// The weights of those columns in PostgreSQL's `tsvector`.
    const WEIGHTS: [char; 4] = ['A', 'B', 'C', 'D'];

    /// One connection to each engine, and the runtime they belong to.
    struct Engines {
        runtime: Runtime,
        sqlite: SqliteConnection,
        postgres: PgConnection,
        next_row: i64,
    }

    /// The FTS5 table exactly as the SQLite migration creates it.
    fn fts5_table() -> &'static str {
        let migration = include_str!("../../migrations/sqlite/0004_invocations.sql");
        let start = migration.find("CREATE VIRTUAL TABLE invocations_fts").expect("the FTS5 table");
        let end = start + migration[start..].find(");").expect("end of the statement") + 2;
        &migration[start..end]
    }

    fn engines() -> &'static Mutex<Engines> {
        static ENGINES: OnceLock<Mutex<Engines>> = OnceLock::new();
        ENGINES.get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            let url = std::env::var("TOOLSMITH_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let (sqlite, postgres) = runtime.block_on(async {
                let mut sqlite = SqliteConnection::connect("sqlite::memory:").await.expect("SQLite in memory");
                sqlx::raw_sql(fts5_table()).execute(&mut sqlite).await.expect("create the FTS5 table");
                let postgres = PgConnection::connect(&url).await.expect("PostgreSQL for the search properties");
                (sqlite, postgres)
            });
            Mutex::new(Engines { runtime, sqlite, postgres, next_row: 0 })
        })
    }

    /// Indexes `fields` as the store does on both engines and runs `query` against them: whether
    /// each engine finds the row, or the error the engine gave.
    fn search(fields: &[String; 4], query: &str, columns: &[usize]) -> Result<(bool, bool), String> {
        let terms = query_terms(query);
        let names: Vec<&str> = columns.iter().map(|&c| COLUMNS[c]).collect();
        let weights: String = columns.iter().map(|&c| WEIGHTS[c]).collect();
        let words: Vec<Vec<String>> = fields.iter().map(|f| distinct_words(f)).collect();
        let fts5 = fts5_query(&terms, &names);
        let ts_query = tsquery(&terms, &weights);
        let weighted: Vec<(&[String], char)> = words.iter().map(Vec::as_slice).zip(WEIGHTS).collect();
        let ts_vector = tsvector(&weighted);
        let mut guard = engines().lock().unwrap_or_else(|e| e.into_inner());
        let engines = &mut *guard;
        engines.next_row += 1;
        let row = engines.next_row;
        engines.runtime.block_on(async {
            let mut insert = sqlx::query(
                "INSERT INTO invocations_fts (rowid, output, exception_message, exception_type, exception_stack_trace) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(row);
            for w in &words {
                insert = insert.bind(w.join(" "));
            }
            insert.execute(&mut engines.sqlite).await.map_err(|e| format!("FTS5 insert: {e}"))?;
            let sqlite =
                sqlx::query("SELECT count(*) FROM invocations_fts WHERE invocations_fts MATCH $1 AND rowid = $2")
                    .bind(&fts5)
                    .bind(row)
                    .fetch_one(&mut engines.sqlite)
                    .await
                    .map_err(|e| format!("FTS5 query {fts5:?}: {e}"))?
                    .get::<i64, _>(0);
            let postgres = sqlx::query("SELECT $1::tsvector @@ $2::tsquery")
                .bind(&ts_vector)
                .bind(&ts_query)
                .fetch_one(&mut engines.postgres)
                .await
                .map_err(|e| format!("tsquery {ts_query:?} against {ts_vector:?}: {e}"))?
                .get::<bool, _>(0);
            Ok((sqlite > 0, postgres))
        })
    }

    /// Text as tools print it: words in several scripts and cases, digits, punctuation and the
    /// query syntax of both engines.
    fn printed() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                "[a-zA-Z0-9]{1,12}",
                "[À-ÿ]{1,6}",
                "[α-ω]{1,6}",
                "[一-龥]{1,3}",
                "[ \"'*:&|!()^{}.,/@-]{1,3}",
                Just("AND".to_owned()),
                Just("NEAR".to_owned()),
            ],
            0..12,
        )
        .prop_map(|parts| parts.join(" "))
    }

    /// Printed text, or anything at all.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), printed()]
    }

    /// Some of the searchable columns, or none (every column).
    fn columns() -> impl Strategy<Value = Vec<usize>> {
        proptest::sample::subsequence(vec![0, 1, 2, 3], 0..=3)
    }

    #[test]
    fn a_final_sigma_is_found_in_either_case() {
        assert_eq!(distinct_words("ΟΔΟΣ οδος"), ["οδοσ"]);
        assert_eq!(
            search(&["λόγος".into(), String::new(), String::new(), String::new()], "ΛΌΓΟΣ", &[]),
            Ok((true, true))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn terms_are_distinct_bounded_words(query in text()) {
            let terms = query_terms(&query);
            prop_assert!(terms.len() <= MAX_QUERY_WORDS);
            for (i, t) in terms.iter().enumerate() {
                prop_assert!(!t.word.is_empty() && t.word.chars().count() <= MAX_WORD_CHARS);
                prop_assert!(t.word.chars().all(|c| c.is_alphanumeric() || !c.is_ascii()), "{:?}", t.word);
                prop_assert!(!terms[..i].contains(t));
            }
            let words = distinct_words(&query);
            prop_assert!(words.iter().map(|w| w.len() + 1).sum::<usize>() <= MAX_INDEXED_BYTES);
        }

        #[test]
        fn any_query_is_valid_syntax_for_both_engines(fields in [text(), text(), text(), text()], query in text(), cols in columns()) {
            prop_assume!(!query_terms(&query).is_empty());
            if let Err(e) = search(&fields, &query, &cols) {
                prop_assert!(false, "{}", e);
            }
        }

        // The searched field is printed text: FTS5's tokenizer takes letters, numbers and
        // private-use characters as parts of words, while a word here also takes the few marks and
        // symbols Unicode counts as alphabetic (combining vowel signs, circled letters), so a term
        // made only of those finds nothing on SQLite.
        #[test]
        fn words_of_a_field_find_it(
            mut fields in [text(), text(), text(), text()],
            searched_text in printed(),
            field in 0usize..4,
            picks in proptest::collection::vec((any::<prop::sample::Index>(), any::<bool>(), any::<bool>()), 1..5),
            cols in columns(),
        ) {
            fields[field] = searched_text;
            let words = distinct_words(&fields[field]);
            prop_assume!(!words.is_empty());
            // A query a user could write from what they saw: some of the words, in another case,
            // some cut short and marked as prefixes, separated by punctuation.
            let query: Vec<String> = picks
                .iter()
                .map(|(i, upper, cut)| {
                    let word = i.get(&words);
                    // Upper case where lowering it gives the word back (not `ῲ` → `ῺΙ`, which
                    // lowers to another spelling).
                    let upper_case = word.to_uppercase();
                    let word = if *upper && upper_case.to_lowercase() == *word { upper_case } else { word.clone() };
                    if *cut && word.chars().count() > 1 {
                        format!("{}*", word.chars().take(word.chars().count() / 2).collect::<String>())
                    } else {
                        word
                    }
                })
                .collect();
            let query = query.join(", ");
            let searched = cols.is_empty() || cols.contains(&field);
            let (sqlite, postgres) = search(&fields, &query, &cols).map_err(TestCaseError::fail)?;
            if searched {
                prop_assert!(sqlite, "FTS5 does not find {:?} in {:?}", query, fields[field]);
                prop_assert!(postgres, "PostgreSQL does not find {:?} in {:?}", query, fields[field]);
            }
            prop_assert_eq!(sqlite, postgres, "the engines disagree on {:?}", query);
        }
    }
}
