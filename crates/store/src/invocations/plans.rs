//! The plans both databases choose for listing pages: every sort field, both directions, first
//! and deep pages, with the common filters, is an index walk rather than a sort of every
//! matching row.
//!
//! SQLite runs without statistics, so its choice depends on the query's shape alone and is
//! checked exactly: the index used, and no temporary B-tree for the order. PostgreSQL chooses
//! by statistics, which a small test table does not have; with sorting priced out, a plan
//! without a sort node shows that an index can serve the order (what it chooses at scale is
//! measured by `bench_search`).

use serde_json::json;
use sqlx::Row;
use toolsmith_domain::time::Timestamp;
use toolsmith_domain::{InvocationId, InvocationSource, OrgId, ToolId, UserId, Version};

use super::{InvocationFilter, InvocationQuery, InvocationSortField, NewInvocation, SourceType as Kind, ToolVersions};
use crate::db::Dialect;
use crate::secrets::{Keyring, SecretKey};
use crate::tools::{bind_all, UserRef};
use crate::Store;

const TOOLS: [&str; 3] = ["aaaaaaaaaaaaaaaaaaaaaaa1", "aaaaaaaaaaaaaaaaaaaaaaa2", "aaaaaaaaaaaaaaaaaaaaaaa3"];
const CONVERSATION: &str = "c0c0c0c0c0c0c0c0c0c0c0c0";

fn acme() -> OrgId {
    OrgId::parse("acme").unwrap()
}

fn tool(i: usize) -> ToolId {
    ToolId::parse(TOOLS[i]).unwrap()
}

/// A SQLite store (in the returned directory) and a PostgreSQL one, holding the same rows.
async fn stores() -> (Vec<Store>, tempfile::TempDir) {
    let keyring = || Keyring::new(vec![SecretKey::generate()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open_sqlite_dir(dir.path(), keyring()).await.unwrap();
    let base = std::env::var("TOOLSMITH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let url = crate::testing::fresh_postgres_schema(&base).await.expect("PostgreSQL for the store tests");
    let postgres = Store::open(&url, keyring()).await.unwrap();
    for store in [&sqlite, &postgres] {
        let rows = (0..300i64)
            .map(|n| {
                let source: InvocationSource = serde_json::from_value(if n % 3 == 0 {
                    json!({"type": "direct", "user_id": "u", "user_org_id": "acme"})
                } else {
                    json!({
                        "type": "regular-conversation",
                        "user_id": "u",
                        "conversation_id": CONVERSATION,
                        "interaction_id": null,
                        "invocation_metadata": {"type": "engage-user", "current_state_machine_and_version": ["sm", 1], "tool_call_round_index": 0}
                    })
                })
                .unwrap();
                NewInvocation {
                    id: InvocationId::parse(&format!("{n:024x}")).unwrap(),
                    org_id: acme(),
                    tool_id: tool((n % 3) as usize),
                    version: Version { major: (n % 4) as u64, minor: (n % 5) as u64, patch: (n % 2) as u64 },
                    succeeded: n % 7 != 0,
                    output: Some("ok".into()),
                    exception_type: None,
                    exception_message: None,
                    exception_stack_trace: vec![],
                    duration_ms: 1,
                    inputs: json!({}),
                    source,
                    caller: UserRef { org_id: acme(), user_id: UserId::parse("0123456789abcdef01234567").unwrap() },
                    logs: String::new(),
                    created_at: Timestamp(n * 13 % 50),
                }
            })
            .collect();
        store.record_invocations(rows).await.unwrap();
    }
    (vec![sqlite, postgres], dir)
}

/// The plan of each part of a listing page, with whether the part starts after a token.
async fn plans(store: &Store, q: &InvocationQuery) -> Vec<(bool, Vec<String>)> {
    let mut plans = Vec::new();
    for part in store.list_parts(&acme(), q).await.unwrap() {
        plans.push((part.after > 0, plan(store, &part).await));
    }
    plans
}

/// The plan's lines: SQLite's details, or PostgreSQL's plan with sorting priced out.
async fn plan(store: &Store, q: &InvocationQuery) -> Vec<String> {
    let (sql, binds) = store.list_statement(&acme(), q, 101).await.unwrap().expect("a filter that can match");
    match store.db.dialect {
        Dialect::Sqlite => {
            let explain = format!("EXPLAIN QUERY PLAN {sql}");
            let rows = bind_all(sqlx::query(&explain), &binds).fetch_all(&store.db.read).await.unwrap();
            rows.iter().map(|r| r.try_get::<String, _>("detail").unwrap()).collect()
        }
        Dialect::Postgres => {
            let mut tx = store.db.read.begin().await.unwrap();
            sqlx::query("SET LOCAL enable_sort = off").execute(&mut *tx).await.unwrap();
            let explain = format!("EXPLAIN {sql}");
            let rows = bind_all(sqlx::query(&explain), &binds).fetch_all(&mut *tx).await.unwrap();
            rows.iter().map(|r| r.try_get::<String, _>(0).unwrap()).collect()
        }
    }
}

fn name(field: InvocationSortField) -> &'static str {
    match field {
        InvocationSortField::CreatedAt => "created",
        InvocationSortField::Major => "major",
        InvocationSortField::Minor => "minor",
        InvocationSortField::Patch => "patch",
        InvocationSortField::ToolId => "tool",
        InvocationSortField::SourceType => "source",
        InvocationSortField::Succeeded => "succeeded",
    }
}

#[tokio::test]
async fn every_sort_is_an_index_walk_on_both_databases() {
    use InvocationSortField::*;
    let contract = Some(vec![Kind::RegularConversation, Kind::SimulationConversation]);
    let one_tool = vec![ToolVersions { tool_id: tool(1), versions: None }];
    let filters: Vec<(&str, InvocationFilter)> = vec![
        ("none", InvocationFilter::default()),
        ("the contract's source types", InvocationFilter { source_types: contract.clone(), ..Default::default() }),
        (
            "failed only",
            InvocationFilter { source_types: contract.clone(), succeeded: Some(false), ..Default::default() },
        ),
        ("one tool", InvocationFilter { source_types: contract.clone(), tools: one_tool, ..Default::default() }),
    ];
    let (stores, _dir) = stores().await;
    for store in stores {
        let half = InvocationQuery { filter: InvocationFilter::default(), sort: vec![], limit: 150, after: 0 };
        let middle = store.list_invocations(&acme(), &half).await.unwrap().invocations.last().unwrap().seq;
        for field in [CreatedAt, Major, Minor, Patch, ToolId, SourceType, Succeeded] {
            for desc in [false, true] {
                for (filter_name, filter) in &filters {
                    for after in [0, middle] {
                        let q =
                            InvocationQuery { filter: filter.clone(), sort: vec![(field, desc)], limit: 100, after };
                        for (deep, plan) in plans(&store, &q).await {
                            let what = format!(
                                "{:?} sort {field:?} desc={desc}, {filter_name}, after {after}: {plan:#?}",
                                store.db.dialect
                            );
                            match store.db.dialect {
                                Dialect::Sqlite => {
                                    assert_eq!(plan.len(), 1, "{what}");
                                    let tool = !filter.tools.is_empty();
                                    let expected = match field {
                                        CreatedAt | ToolId if tool => "invocations_tool ".to_owned(),
                                        _ if tool => format!("invocations_tool_{} ", name(field)),
                                        // With the sort field held to one value by the filter, the
                                        // order is `created_at`'s, which the filter's index serves
                                        // as well.
                                        SourceType | Succeeded if filter.succeeded.is_some() => {
                                            "invocations_".to_owned()
                                        }
                                        CreatedAt if filter.succeeded.is_some() => "invocations_".to_owned(),
                                        _ => format!("invocations_{} ", name(field)),
                                    };
                                    assert!(plan[0].starts_with(&format!("SEARCH i USING INDEX {expected}")), "{what}");
                                    if deep {
                                        assert!(plan[0].contains('>') || plan[0].contains('<'), "a range: {what}");
                                    }
                                }
                                Dialect::Postgres => {
                                    assert!(plan.iter().all(|line| !line.contains("Sort")), "{what}");
                                    assert!(plan.iter().any(|line| line.contains("Index Scan")), "{what}");
                                    if deep {
                                        assert!(
                                            plan.iter().any(|l| l.contains("Index Cond") && l.contains("ROW(")),
                                            "{what}"
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }

        // A conversation holds few rows: SQLite reads them through its index and sorts them,
        // however the listing is sorted and filtered otherwise.
        if store.db.dialect == Dialect::Postgres {
            continue;
        }
        let conversation = InvocationFilter {
            conversation_ids: vec![CONVERSATION.into()],
            tools: vec![ToolVersions { tool_id: tool(1), versions: None }],
            succeeded: Some(true),
            source_types: contract.clone(),
            ..Default::default()
        };
        for field in [Major, Succeeded, CreatedAt] {
            let q =
                InvocationQuery { filter: conversation.clone(), sort: vec![(field, true)], limit: 100, after: middle };
            let plan = plan(&store, &q).await;
            let uses = plan.iter().any(|line| line.contains("invocations_conversation"));
            assert!(uses, "{field:?}: {plan:#?}");
        }
    }
}
