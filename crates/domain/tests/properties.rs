//! Properties of every parser of caller input in the domain: none panics, what one accepts
//! follows the rule the API documents for it, and what can be rendered parses back to itself.

use proptest::prelude::*;
use regex::Regex;
use toolsmith_domain::names::{parse_word_string, NameError, ENV_VAR_NAME_MAX_LEN, TOOL_NAME_MAX_LEN};
use toolsmith_domain::time::Timestamp;
use toolsmith_domain::{
    ApiKeyId, BuildId, BumpType, EnvVarName, InvocationId, ObjectId, OrgId, Specifier, TagFilter, ToolId, ToolName,
    UserId, Version, VersionId,
};

fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, ..ProptestConfig::default() }
}

fn matches(pattern: &str, s: &str) -> bool {
    Regex::new(pattern).expect("pattern").is_match(s)
}

/// Strings a caller could send: anything at all, or something close to the accepted shapes (the
/// characters the rules are about, white space around), so that both sides of each rule are hit.
fn near(alphabet: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::string::string_regex(&format!("[ \t\n]{{0,2}}[{alphabet}]{{0,70}}[ \t\n]{{0,2}}")).expect("regex"),
    ]
}

/// A version number part as a caller might write it: small, large, or past `u64`.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![(0u64..20).prop_map(|n| n.to_string()), any::<u64>().prop_map(|n| n.to_string()), "[0-9]{1,25}",]
}

fn version() -> impl Strategy<Value = Version> {
    let part = prop_oneof![0u64..5, any::<u64>(), Just(u64::MAX)];
    (part.clone(), part.clone(), part).prop_map(|(major, minor, patch)| Version { major, minor, patch })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn tag_filters_split_at_the_first_colon(raw in near("a-z:* _")) {
        let parsed = TagFilter::parse(&raw);
        match raw.split_once(':') {
            Some((key, value)) if !key.is_empty() => {
                let expected = match value {
                    "" => TagFilter::Null(key.to_owned()),
                    "*" => TagFilter::Present(key.to_owned()),
                    v => TagFilter::Equals(key.to_owned(), v.to_owned()),
                };
                prop_assert_eq!(parsed, Some(expected));
            }
            _ => prop_assert_eq!(parsed, None),
        }
    }

    #[test]
    fn a_tag_filter_written_from_its_parts_reads_back(key in "[^:]{1,20}", value in any::<String>()) {
        let filter = TagFilter::parse(&format!("{key}:{value}")).expect("a key and a colon");
        prop_assert_eq!(filter.key(), key.as_str());
        if let TagFilter::Equals(_, v) = filter {
            prop_assert_eq!(v, value);
        }
    }

    #[test]
    fn tag_words_are_stripped_and_follow_the_pattern(raw in near("a-zA-Z0-9_ :é-")) {
        match parse_word_string(&raw) {
            Ok(s) => {
                prop_assert!(matches(r"^[\w\s]+$", &s), "{s:?}");
                prop_assert_eq!(s.as_str(), raw.trim());
                prop_assert_eq!(parse_word_string(&s), Ok(s.clone()));
            }
            Err(NameError::Empty) => prop_assert!(raw.trim().is_empty()),
            Err(_) => prop_assert!(!raw.trim().is_empty() && !matches(r"^[\w\s]+$", raw.trim())),
        }
    }

    #[test]
    fn tool_names_follow_the_documented_rule(raw in near("a-z0-9_A-Z-")) {
        let s = raw.trim();
        let valid = matches("^[a-z0-9_]+$", s);
        match ToolName::parse(&raw) {
            Ok(name) => {
                prop_assert!(valid && s.len() <= TOOL_NAME_MAX_LEN);
                prop_assert_eq!(name.as_str(), s);
                prop_assert_eq!(ToolName::parse(name.as_str()), Ok(name.clone()));
            }
            Err(NameError::Empty) => prop_assert!(s.is_empty()),
            Err(NameError::TooLong) => prop_assert!(valid && s.len() > TOOL_NAME_MAX_LEN),
            Err(NameError::Pattern(p)) => {
                prop_assert!(!s.is_empty() && !valid);
                prop_assert_eq!(p, "^[a-z0-9_]+$");
            }
        }
    }

    #[test]
    fn env_var_names_follow_the_documented_rule(raw in prop_oneof![near("A-Z0-9_a-z-"), "[A-Z_][A-Z0-9_]{100,140}"]) {
        let s = raw.trim();
        let valid = matches("^[A-Z_][A-Z0-9_]*$", s);
        match EnvVarName::parse(&raw) {
            Ok(name) => {
                prop_assert!(valid && s.len() <= ENV_VAR_NAME_MAX_LEN);
                prop_assert_eq!(name.as_str(), s);
                prop_assert_eq!(EnvVarName::parse(&name.to_string()), Ok(name.clone()));
            }
            Err(NameError::Empty) => prop_assert!(s.is_empty()),
            Err(NameError::TooLong) => prop_assert!(valid && s.len() > ENV_VAR_NAME_MAX_LEN),
            Err(NameError::Pattern(_)) => prop_assert!(!s.is_empty() && !valid),
        }
    }

    #[test]
    fn object_ids_are_exactly_24_lowercase_hex(raw in prop_oneof![near("0-9a-fA-Fg"), "[0-9a-f]{24}"]) {
        let valid = matches("^[a-f0-9]{24}$", &raw);
        match ObjectId::parse(&raw) {
            Ok(id) => {
                prop_assert!(valid);
                prop_assert_eq!(id.as_str(), raw.as_str());
                let json = serde_json::to_string(&id).unwrap();
                prop_assert_eq!(serde_json::from_str::<ObjectId>(&json).unwrap(), id);
            }
            Err(_) => prop_assert!(!valid),
        }
    }

    #[test]
    fn every_kind_of_id_accepts_exactly_the_object_ids(raw in prop_oneof![near("0-9a-fA-Fg"), "[0-9a-f]{24}"]) {
        let expected = ObjectId::parse(&raw).ok().map(|id| id.as_str().to_owned());
        let json = serde_json::to_string(&raw).unwrap();
        prop_assert_eq!(ToolId::parse(&raw).ok().map(String::from), expected.clone());
        prop_assert_eq!(VersionId::parse(&raw).ok().map(String::from), expected.clone());
        prop_assert_eq!(InvocationId::parse(&raw).ok().map(String::from), expected.clone());
        prop_assert_eq!(raw.parse::<UserId>().ok().map(String::from), expected.clone());
        prop_assert_eq!(raw.parse::<ApiKeyId>().ok().map(String::from), expected.clone());
        prop_assert_eq!(serde_json::from_str::<BuildId>(&json).ok().map(String::from), expected.clone());
        if let Ok(id) = ToolId::parse(&raw) {
            prop_assert_eq!(serde_json::to_string(&id).unwrap(), json);
        }
    }

    #[test]
    fn org_ids_are_slugs(raw in near("a-z0-9_A-Z-")) {
        let valid = matches("^[a-z0-9][a-z0-9-]{0,62}$", &raw);
        match OrgId::parse(&raw) {
            Ok(org) => {
                prop_assert!(valid);
                prop_assert_eq!(org.as_str(), raw.as_str());
                prop_assert!(!org.as_str().contains('_'), "the git user name splits at the first underscore");
            }
            Err(_) => prop_assert!(!valid),
        }
    }

    #[test]
    fn versions_render_and_parse_back(v in version()) {
        prop_assert_eq!(Version::parse(&v.to_string()), Some(v));
    }

    #[test]
    fn accepted_versions_are_canonical_x_y_z(
        raw in prop_oneof![
            any::<String>(),
            (number_text(), number_text(), number_text()).prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
            "[0-9.v+-]{0,12}",
        ]
    ) {
        match Version::parse(&raw) {
            Some(v) => {
                prop_assert!(matches(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$", &raw), "{raw:?}");
                prop_assert_eq!(v.to_string(), raw);
            }
            None => {
                let canonical = matches(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$", &raw);
                // Refused only when not canonical, or when a number does not fit in 64 bits.
                prop_assert!(!canonical || raw.split('.').any(|p| p.parse::<u64>().is_err()), "{raw:?}");
            }
        }
    }

    #[test]
    fn a_bump_never_overflows_and_moves_forward(highest in proptest::option::of(version())) {
        for bump in [BumpType::Major, BumpType::Minor, BumpType::Patch] {
            let next = Version::next(highest, bump);
            if let Some(h) = highest {
                let saturated = match bump {
                    BumpType::Major => h.major == u64::MAX,
                    BumpType::Minor => h.minor == u64::MAX,
                    BumpType::Patch => h.patch == u64::MAX,
                };
                prop_assert!(next > h || saturated, "{h} -> {next}");
            }
        }
    }

    #[test]
    fn specifiers_never_panic_and_reparse_to_the_same_meaning(
        raw in prop_oneof![
            any::<String>(),
            "[ ]?(==|!=|<=|>=|<|>|~=|===|=)?[ ]?[0-9]{1,22}(\\.[0-9*]{1,3}){0,4}(,[ ]?(>=|<)[0-9]{1,3})?[ ]?",
            "[<>=!~,*. 0-9a-z+]{0,16}",
        ],
        probes in proptest::collection::vec(version(), 4),
    ) {
        if let Ok(spec) = Specifier::parse(&raw) {
            prop_assert_eq!(spec.as_str(), raw.trim());
            let again = Specifier::parse(spec.as_str()).expect("a specifier parses again");
            for v in &probes {
                prop_assert_eq!(spec.matches(v), again.matches(v));
            }
        }
    }

    #[test]
    fn comparison_specifiers_order_versions_like_x_y_z(a in version(), b in version()) {
        let cases = [
            ("==", a == b),
            ("!=", a != b),
            (">=", b >= a),
            ("<=", b <= a),
            (">", b > a),
            ("<", b < a),
        ];
        for (op, expected) in cases {
            let spec = Specifier::parse(&format!("{op}{a}")).expect("a comparison with a version");
            prop_assert_eq!(spec.matches(&b), expected, "{}{} against {}", op, a, b);
        }
    }

    #[test]
    fn timestamps_never_panic_and_milliseconds_round_trip(micros in any::<i64>(), raw in any::<String>()) {
        let _ = Timestamp::parse_rfc3339(&raw);
        let t = Timestamp(micros);
        let _ = (t.as_secs(), t.plus_secs(micros), t.to_rfc3339());
        // Within the years RFC 3339 can write, a millisecond time renders and parses back.
        let ms = Timestamp(micros.rem_euclid(253_402_300_800_000_000) / 1000 * 1000);
        prop_assert_eq!(Timestamp::parse_rfc3339(&ms.to_rfc3339()), Some(ms));
    }
}
