//! Properties of what the repository checks before git sees a caller's string or number: refs,
//! paths, organization names and page windows never panic, and what they accept is what the
//! API documents (and, for refs, what git itself accepts as a branch name).

use std::process::Command;

use proptest::prelude::*;
use regex::Regex;
use toolsmith_repo::browse::page_window;
use toolsmith_repo::names::{check_org, check_ref, looks_like_sha, normalize_path, MAX_REF_LEN};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// Refs a caller might send: anything, or mostly plausible names with the characters the rules
/// are about mixed in.
fn ref_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[-a-z0-9_./@{}~^:?*\\[\\\\ ]{1,24}",
        "[a-z0-9][a-z0-9_/.-]{0,30}",
        "[0-9a-f]{3,41}",
        "[a-z]{250,260}",
    ]
}

/// Paths a caller might send: anything, or slash-separated parts including `.`, `..`, `.git`
/// and empty ones.
fn path_like() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        "[a-zA-Z0-9_ .-]{1,8}",
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just(".GiT".to_owned()),
        Just(String::new())
    ];
    prop_oneof![
        any::<String>(),
        (proptest::option::of(Just("/")), proptest::collection::vec(part, 0..5), proptest::option::of(Just("/")))
            .prop_map(|(lead, parts, trail)| format!(
                "{}{}{}",
                lead.unwrap_or(""),
                parts.join("/"),
                trail.unwrap_or("")
            )),
    ]
}

/// Whether git accepts `r` as the name of a branch.
fn git_accepts_branch(r: &str) -> bool {
    Command::new("git")
        .args(["check-ref-format", "--allow-onelevel"])
        .arg(format!("refs/heads/{r}"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .status()
        .expect("git runs")
        .success()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn accepted_refs_follow_the_documented_rules(r in ref_like()) {
        if check_ref(&r).is_ok() {
            let chars = r.chars().count();
            prop_assert!((1..=MAX_REF_LEN).contains(&chars));
            prop_assert!(!r.starts_with('-'), "would read as an option: {r:?}");
            prop_assert!(!r.starts_with('/') && !r.ends_with('/') && !r.ends_with('.'));
            for bad in ["..", "@{", "//"] {
                prop_assert!(!r.contains(bad), "{r:?} contains {bad:?}");
            }
            prop_assert!(r != "@");
            prop_assert!(!r.chars().any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c)), "{r:?}");
            prop_assert!(r.split('/').all(|p| !p.starts_with('.') && !p.ends_with(".lock")));
        }
        if looks_like_sha(&r) {
            prop_assert!(Regex::new("^[0-9a-f]{4,40}$").unwrap().is_match(&r), "{r:?}");
        }
    }

    #[test]
    fn accepted_paths_normalize_to_clean_relative_paths(raw in path_like()) {
        if let Ok(path) = normalize_path(&raw) {
            prop_assert!(!path.starts_with('/') && !path.ends_with('/'), "{path:?}");
            prop_assert!(!path.contains('\0'));
            if !path.is_empty() {
                for part in path.split('/') {
                    prop_assert!(!part.is_empty() && part != "." && part != "..", "{raw:?} -> {path:?}");
                    prop_assert!(!part.eq_ignore_ascii_case(".git"), "{raw:?} -> {path:?}");
                }
            }
            // Normalizing is idempotent, and a trailing slash changes nothing.
            prop_assert_eq!(normalize_path(&path).ok(), Some(path.clone()));
            if !path.is_empty() {
                prop_assert_eq!(normalize_path(&format!("{path}/")).ok(), Some(path.clone()));
            }
        }
    }

    #[test]
    fn clean_paths_are_kept_as_they_are(parts in proptest::collection::vec("[a-zA-Z0-9_-][a-zA-Z0-9_. -]{0,10}", 1..5)) {
        let path = parts.join("/");
        prop_assert_eq!(normalize_path(&path).ok(), Some(path.clone()));
    }

    #[test]
    fn organization_names_are_slugs(org in prop_oneof![any::<String>(), "[a-z0-9_./-]{0,70}"]) {
        let slug = Regex::new("^[a-z0-9][a-z0-9-]{0,62}$").unwrap().is_match(&org);
        prop_assert_eq!(check_org(&org).is_ok(), slug, "{:?}", org);
    }

    #[test]
    fn page_windows_never_overflow(limit in any::<usize>(), page in prop_oneof![any::<usize>(), 0usize..1000]) {
        match page_window(limit, page) {
            Some((skip, size)) => {
                prop_assert!(size >= 1 && size < i32::MAX as usize);
                prop_assert!(skip <= i32::MAX as usize, "git reads --skip as an int");
                prop_assert_eq!(Some(skip), size.checked_mul(page.saturating_sub(1)));
            }
            None => prop_assert!(limit.clamp(1, i32::MAX as usize - 1).checked_mul(page.saturating_sub(1)).is_none_or(|s| s > i32::MAX as usize)),
        }
    }
}

proptest! {
    // Each case runs git once.
    #![proptest_config(config(128))]

    #[test]
    fn git_accepts_every_ref_the_service_accepts(
        r in prop_oneof![1 => ref_like(), 3 => "[^\\x00-\\x20~^:?*\\[\\\\]{1,30}".prop_filter("accepted", |r| check_ref(r).is_ok())]
    ) {
        if check_ref(&r).is_ok() {
            prop_assert!(git_accepts_branch(&r), "git refuses {r:?}");
        }
    }
}
