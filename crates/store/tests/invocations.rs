//! Invocation records on both backends: durable group commits, filters, every sort order,
//! keyset pages, full-text search, logs, and records made before callers were recorded.

use std::collections::HashSet;

use serde_json::{json, Value};
use toolsmith_domain::time::Timestamp;
use toolsmith_domain::{BuildId, InvocationId, InvocationSource, OrgId, Specifier, ToolId, ToolName, UserId, Version};
use toolsmith_store::secrets::{Keyring, SecretKey};
use toolsmith_store::{
    Invocation, InvocationFilter, InvocationQuery, InvocationSearch, InvocationSortField, NewInvocation, NewTool,
    NewVersion, SearchField, SourceType, Store, StoreError, ToolVersions, UserRef,
};

struct Backend {
    store: Store,
    url: String,
    keyring: Keyring,
    _dir: tempfile::TempDir,
}

async fn backends() -> Vec<Backend> {
    let keyring = Keyring::new(vec![SecretKey::generate()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", dir.path().join("toolsmith.db").display());
    let sqlite = Store::open(&sqlite_url, keyring.clone()).await.unwrap();
    let base = std::env::var("TOOLSMITH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let pg_url = toolsmith_store::testing::fresh_postgres_schema(&base).await.expect("PostgreSQL for the store tests");
    let postgres = Store::open(&pg_url, keyring.clone()).await.unwrap();
    for store in [&sqlite, &postgres] {
        store.create_org(&acme(), "Acme").await.unwrap();
        store.create_org(&other(), "Other").await.unwrap();
    }
    vec![
        Backend { store: sqlite, url: sqlite_url, keyring: keyring.clone(), _dir: dir },
        Backend { store: postgres, url: pg_url, keyring, _dir: tempfile::tempdir().unwrap() },
    ]
}

fn acme() -> OrgId {
    OrgId::parse("acme").unwrap()
}

fn other() -> OrgId {
    OrgId::parse("other").unwrap()
}

fn admin() -> UserRef {
    UserRef { org_id: acme(), user_id: UserId::parse("0123456789abcdef01234567").unwrap() }
}

/// A tool id that no tool has.
fn unknown_tool() -> ToolId {
    ToolId::parse("ffffffffffffffffffffffff").unwrap()
}

/// Creates a tool with the given published versions; returns its id.
async fn tool_with_versions(store: &Store, name: &str, versions: &[&str]) -> ToolId {
    let tool = store
        .create_tool(NewTool {
            org_id: acme(),
            name: ToolName::parse(name).unwrap(),
            description: "d".into(),
            tags: vec![],
            creator: admin(),
        })
        .await
        .unwrap();
    for v in versions {
        store
            .insert_version(NewVersion {
                org_id: acme(),
                tool_id: tool.id.clone(),
                version: Version::parse(v).unwrap(),
                required_envvars: vec![],
                required_secret_envvars: vec![],
                input_schema: json!({"type": "object"}),
                output_schema: None,
                takes_context: false,
                entrypoint: "pkg.tool:run".into(),
                tool_commit_hash: "a".repeat(40),
                scaffold_hash: "b".repeat(64),
                project_directory: "pkg".into(),
                content_digest: "c".repeat(64),
                environment_key: "d".repeat(64),
                build_id: BuildId::generate(),
                creator: admin(),
            })
            .await
            .unwrap();
    }
    tool.id
}

fn source(value: Value) -> InvocationSource {
    serde_json::from_value(value).expect("a source of the wire's shape")
}

fn regular(conversation: &str) -> InvocationSource {
    source(json!({
        "type": "regular-conversation",
        "user_id": "u1",
        "conversation_id": conversation,
        "interaction_id": null,
        "invocation_metadata": {"type": "engage-user", "current_state_machine_and_version": ["sm", 1], "tool_call_round_index": 0}
    }))
}

fn simulation(run: &str) -> InvocationSource {
    source(json!({
        "type": "simulation-conversation",
        "simulation_unit_test_set_run_id": run,
        "unit_test_id": null,
        "run_index": 2,
        "invocation_metadata": {"type": "engage-user", "current_state_machine_and_version": ["sm", 1], "tool_call_round_index": 1}
    }))
}

fn direct() -> InvocationSource {
    source(json!({"type": "direct", "user_id": admin().user_id, "user_org_id": "acme"}))
}

/// The user an agent runtime signs in as.
fn runtime() -> UserRef {
    UserRef { org_id: acme(), user_id: UserId::parse("fedcba9876543210fedcba98").unwrap() }
}

fn succeeded(tool_id: &ToolId, version: &str, output: &str, source: InvocationSource, created: i64) -> NewInvocation {
    let caller = if source == direct() { admin() } else { runtime() };
    NewInvocation {
        id: InvocationId::generate(),
        org_id: acme(),
        tool_id: tool_id.clone(),
        version: Version::parse(version).unwrap(),
        succeeded: true,
        output: Some(output.into()),
        exception_type: None,
        exception_message: None,
        exception_stack_trace: vec![],
        duration_ms: 12,
        inputs: json!({"city": "Paris", "days": 3}),
        source,
        caller,
        logs: "fetching\n".into(),
        created_at: Timestamp(1_700_000_000_000_000 + created),
    }
}

fn failed(
    tool_id: &ToolId,
    version: &str,
    kind: &str,
    message: &str,
    trace: &[&str],
    source: InvocationSource,
) -> NewInvocation {
    NewInvocation {
        succeeded: false,
        output: None,
        exception_type: Some(kind.into()),
        exception_message: Some(message.into()),
        exception_stack_trace: trace.iter().map(|s| s.to_string()).collect(),
        ..succeeded(tool_id, version, "", source, 0)
    }
}

fn query(filter: InvocationFilter) -> InvocationQuery {
    InvocationQuery { filter, sort: vec![], limit: 1000, after: 0 }
}

async fn ids(store: &Store, org: &OrgId, q: &InvocationQuery) -> Vec<InvocationId> {
    store.list_invocations(org, q).await.unwrap().invocations.into_iter().map(|i| i.id).collect()
}

#[tokio::test]
async fn concurrent_callers_are_all_recorded_durably() {
    for backend in backends().await {
        let store = backend.store.clone();
        let tool = tool_with_versions(&store, "t", &["1.0.0"]).await;
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let store = store.clone();
                let tool = tool.clone();
                tokio::spawn(async move {
                    let rows: Vec<NewInvocation> = (0..1 + i % 3)
                        .map(|j| succeeded(&tool, "1.0.0", &format!("caller {i} row {j}"), direct(), i))
                        .collect();
                    let ids: Vec<InvocationId> = rows.iter().map(|r| r.id.clone()).collect();
                    store.record_invocations(rows).await.unwrap();
                    ids
                })
            })
            .collect();
        let mut expected = HashSet::new();
        for task in tasks {
            expected.extend(task.await.unwrap());
        }
        assert_eq!(expected.len(), 399);

        // What was acknowledged survives closing the store and opening the database again.
        store.close().await;
        drop(store);
        let reopened = Store::open(&backend.url, backend.keyring.clone()).await.unwrap();
        let listed: HashSet<InvocationId> =
            ids(&reopened, &acme(), &query(InvocationFilter::default())).await.into_iter().collect();
        assert_eq!(listed, expected);
        assert!(
            ids(&reopened, &other(), &query(InvocationFilter::default())).await.is_empty(),
            "scoped by organization"
        );
    }
}

#[tokio::test]
async fn records_keep_every_field_and_retries_do_not_duplicate() {
    for backend in backends().await {
        let store = &backend.store;
        let tool = tool_with_versions(store, "t", &["1.2.3"]).await;
        let ok = succeeded(&tool, "1.2.3", "{\"temp\": 21}", regular("aaaaaaaaaaaaaaaaaaaaaaaa"), 5);
        let bad = failed(
            &tool,
            "1.2.3",
            "ValueError",
            "bad city \0 name",
            &["Traceback (most recent call last):", "  File \"/tool/run.py\", line 3"],
            simulation("bbbbbbbbbbbbbbbbbbbbbbbb"),
        );
        store.record_invocations(vec![ok.clone(), bad.clone()]).await.unwrap();
        store.record_invocations(vec![ok.clone()]).await.unwrap();

        let got = store.get_invocation(&acme(), &ok.id).await.unwrap().unwrap();
        assert_eq!(
            (got.tool_id.as_str(), got.version.to_string(), got.succeeded, got.output.as_deref()),
            (tool.as_str(), "1.2.3".to_owned(), true, Some("{\"temp\": 21}"))
        );
        assert_eq!((got.exception_type, got.exception_message, got.exception_stack_trace), (None, None, vec![]));
        assert_eq!((got.inputs, got.source, got.duration_ms), (ok.inputs.clone(), ok.source.clone(), 12));
        assert_eq!(got.caller, Some(runtime()), "the caller is kept beside the source they attached");
        assert_eq!((got.created_at, got.updated_at), (ok.created_at, ok.created_at));

        let got = store.get_invocation(&acme(), &bad.id).await.unwrap().unwrap();
        assert!(!got.succeeded);
        assert_eq!(got.exception_type.as_deref(), Some("ValueError"));
        assert_eq!(got.exception_message.as_deref(), Some("bad city \u{fffd} name"), "NUL cannot be stored as is");
        assert_eq!(got.exception_stack_trace, bad.exception_stack_trace);
        assert_eq!(got.source, bad.source);

        assert_eq!(ids(store, &acme(), &query(InvocationFilter::default())).await.len(), 2, "a retried id is skipped");
        assert!(store.get_invocation(&other(), &ok.id).await.unwrap().is_none());

        let logs = store.invocation_logs(&acme(), &ok.id).await.unwrap().unwrap();
        assert_eq!((logs.logs.as_str(), logs.source_type), ("fetching\n", Some(SourceType::RegularConversation)));
        assert!(store.invocation_logs(&other(), &ok.id).await.unwrap().is_none());
        store.record_invocations(vec![]).await.unwrap();
    }
}

#[tokio::test]
async fn filters_select_what_they_name() {
    for backend in backends().await {
        let store = &backend.store;
        let a = tool_with_versions(store, "a", &["1.0.0", "1.1.0", "2.0.0"]).await;
        let b = tool_with_versions(store, "b", &["1.0.0"]).await;
        let (c1, c2, r1) = ("c1c1c1c1c1c1c1c1c1c1c1c1", "c2c2c2c2c2c2c2c2c2c2c2c2", "a1a1a1a1a1a1a1a1a1a1a1a1");
        let rows = vec![
            succeeded(&a, "1.0.0", "a100", regular(c1), 1),
            succeeded(&a, "1.1.0", "a110", regular(c2), 2),
            failed(&a, "2.0.0", "E", "a200", &[], simulation(r1)),
            succeeded(&b, "1.0.0", "b100", direct(), 4),
            failed(&b, "1.0.0", "E", "b100f", &[], regular(c1)),
        ];
        let id: Vec<InvocationId> = rows.iter().map(|r| r.id.clone()).collect();
        store.record_invocations(rows).await.unwrap();
        let pick = |idx: &[usize]| -> Vec<InvocationId> { idx.iter().map(|&i| id[i].clone()).collect() };
        let tools = |list: &[(&ToolId, Option<&str>)]| -> Vec<ToolVersions> {
            list.iter()
                .map(|(t, s)| ToolVersions { tool_id: (*t).clone(), versions: s.map(|s| Specifier::parse(s).unwrap()) })
                .collect()
        };

        for (filter, expected) in [
            (InvocationFilter::default(), pick(&[0, 1, 2, 3, 4])),
            (InvocationFilter { tools: tools(&[(&a, None)]), ..Default::default() }, pick(&[0, 1, 2])),
            (InvocationFilter { tools: tools(&[(&a, Some(">=1.1"))]), ..Default::default() }, pick(&[1, 2])),
            (
                InvocationFilter { tools: tools(&[(&a, Some("==1.*")), (&b, None)]), ..Default::default() },
                pick(&[0, 1, 3, 4]),
            ),
            (
                InvocationFilter { tools: tools(&[(&a, Some("~=2.0")), (&b, Some("==1.0.0"))]), ..Default::default() },
                pick(&[2, 3, 4]),
            ),
            (InvocationFilter { tools: tools(&[(&a, Some(">=3"))]), ..Default::default() }, pick(&[])),
            (InvocationFilter { tools: tools(&[(&unknown_tool(), None)]), ..Default::default() }, pick(&[])),
            (
                InvocationFilter { source_types: Some(vec![SourceType::RegularConversation]), ..Default::default() },
                pick(&[0, 1, 4]),
            ),
            (
                InvocationFilter {
                    source_types: Some(vec![SourceType::SimulationConversation, SourceType::Direct]),
                    ..Default::default()
                },
                pick(&[2, 3]),
            ),
            (
                InvocationFilter { source_types: Some(SourceType::ALL.to_vec()), ..Default::default() },
                pick(&[0, 1, 2, 3, 4]),
            ),
            (InvocationFilter { source_types: Some(vec![]), ..Default::default() }, pick(&[])),
            (InvocationFilter { conversation_ids: vec![c1.into()], ..Default::default() }, pick(&[0, 4])),
            (InvocationFilter { conversation_ids: vec![c1.into(), c2.into()], ..Default::default() }, pick(&[0, 1, 4])),
            (InvocationFilter { simulation_run_ids: vec![r1.into()], ..Default::default() }, pick(&[2])),
            (InvocationFilter { succeeded: Some(true), ..Default::default() }, pick(&[0, 1, 3])),
            (InvocationFilter { succeeded: Some(false), ..Default::default() }, pick(&[2, 4])),
            (
                InvocationFilter {
                    tools: tools(&[(&b, None)]),
                    conversation_ids: vec![c1.into()],
                    succeeded: Some(false),
                    ..Default::default()
                },
                pick(&[4]),
            ),
        ] {
            let mut got = ids(store, &acme(), &query(filter.clone())).await;
            got.sort();
            let mut expected = expected;
            expected.sort();
            assert_eq!(got, expected, "{filter:?}");
        }
        assert!(ids(store, &other(), &query(InvocationFilter::default())).await.is_empty());
    }
}

/// The order the listing promises, computed independently: the requested keys, then
/// `created_at` and recording order, both in the direction of the last requested key.
fn expected_order(rows: &[Invocation], sort: &[(InvocationSortField, bool)]) -> Vec<InvocationId> {
    use std::cmp::Ordering;
    use InvocationSortField::*;
    let trailing_desc = sort.last().is_some_and(|(_, d)| *d);
    let mut rows: Vec<&Invocation> = rows.iter().collect();
    rows.sort_by(|a, b| {
        for (field, desc) in sort {
            let ord = match field {
                CreatedAt => a.created_at.cmp(&b.created_at),
                Major => a.version.major.cmp(&b.version.major),
                Minor => a.version.minor.cmp(&b.version.minor),
                Patch => a.version.patch.cmp(&b.version.patch),
                ToolId => a.tool_id.cmp(&b.tool_id),
                SourceType => a.source.source_type().as_str().cmp(b.source.source_type().as_str()),
                Succeeded => a.succeeded.cmp(&b.succeeded),
            };
            let ord = if *desc { ord.reverse() } else { ord };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        let rest = (a.created_at, a.seq).cmp(&(b.created_at, b.seq));
        if trailing_desc {
            rest.reverse()
        } else {
            rest
        }
    });
    rows.into_iter().map(|r| r.id.clone()).collect()
}

/// 300 rows with many ties in every sort key.
async fn tied_rows(store: &Store) -> Vec<Invocation> {
    let tools = [
        tool_with_versions(store, "t1", &["1.0.0"]).await,
        tool_with_versions(store, "t2", &["1.0.0"]).await,
        tool_with_versions(store, "t3", &["1.0.0"]).await,
    ];
    let versions = ["1.0.0", "1.2.0", "2.0.1", "2.2.1"];
    let mut rows = Vec::new();
    for i in 0..300i64 {
        let tool = &tools[(i % 3) as usize];
        let version = versions[(i % 4) as usize];
        let source = match i % 5 {
            0 | 1 => regular("c1c1c1c1c1c1c1c1c1c1c1c1"),
            2 | 3 => simulation("a1a1a1a1a1a1a1a1a1a1a1a1"),
            _ => direct(),
        };
        let row = if i % 7 == 0 {
            failed(tool, version, "E", "m", &[], source)
        } else {
            succeeded(tool, version, "ok", source, 0)
        };
        rows.push(NewInvocation { created_at: Timestamp((i * 7) % 10), ..row });
    }
    // Several writes, so that recording order and creation order disagree.
    for chunk in rows.chunks(37) {
        store.record_invocations(chunk.to_vec()).await.unwrap();
    }
    let all = store.list_invocations(&acme(), &query(InvocationFilter::default())).await.unwrap();
    assert_eq!(all.invocations.len(), 300);
    all.invocations
}

#[tokio::test]
async fn every_sort_field_orders_both_ways() {
    use InvocationSortField::*;
    for backend in backends().await {
        let store = &backend.store;
        let rows = tied_rows(store).await;
        assert_eq!(rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), expected_order(&rows, &[]), "default order");
        for field in [CreatedAt, Major, Minor, Patch, ToolId, SourceType, Succeeded] {
            for desc in [false, true] {
                let sort = vec![(field, desc)];
                let q = InvocationQuery { sort: sort.clone(), ..query(InvocationFilter::default()) };
                assert_eq!(ids(store, &acme(), &q).await, expected_order(&rows, &sort), "{sort:?}");
            }
        }
    }
}

#[tokio::test]
async fn pages_neither_lose_nor_repeat_rows() {
    use InvocationSortField::*;
    for backend in backends().await {
        let store = &backend.store;
        let rows = tied_rows(store).await;
        for sort in [
            vec![],
            vec![(CreatedAt, true)],
            vec![(ToolId, false), (Major, true)],
            vec![(Succeeded, true), (SourceType, false)],
            vec![(Minor, false), (CreatedAt, true)],
            vec![(Patch, true), (ToolId, true), (CreatedAt, false)],
        ] {
            let filter = InvocationFilter::default();
            let mut seen = Vec::new();
            let mut after = 0;
            let mut pages = 0;
            loop {
                let q = InvocationQuery { filter: filter.clone(), sort: sort.clone(), limit: 7, after };
                let page = store.list_invocations(&acme(), &q).await.unwrap();
                pages += 1;
                seen.extend(page.invocations.iter().map(|i| i.id.clone()));
                assert_eq!(page.has_more, page.next.is_some());
                match page.next {
                    Some(next) => after = next,
                    None => break,
                }
            }
            assert_eq!(pages, 43, "{sort:?}");
            assert_eq!(seen, expected_order(&rows, &sort), "{sort:?}");
        }

        // A filtered listing pages the same way.
        let filter =
            InvocationFilter { source_types: Some(vec![toolsmith_store::SourceType::Direct]), ..Default::default() };
        let expected: Vec<InvocationId> = expected_order(&rows, &[(ToolId, true)])
            .into_iter()
            .filter(|id| {
                rows.iter().any(|r| &r.id == id && r.source.source_type() == toolsmith_store::SourceType::Direct)
            })
            .collect();
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let q = InvocationQuery { filter: filter.clone(), sort: vec![(ToolId, true)], limit: 10, after };
            let page = store.list_invocations(&acme(), &q).await.unwrap();
            seen.extend(page.invocations.into_iter().map(|i| i.id));
            let Some(next) = page.next else { break };
            after = next;
        }
        assert_eq!(seen, expected);

        // A zero-sized page says whether anything follows, and keeps the position.
        let empty = InvocationQuery { limit: 0, ..query(InvocationFilter::default()) };
        let first = store.list_invocations(&acme(), &empty).await.unwrap();
        assert!(first.invocations.is_empty() && first.has_more && first.next == Some(0));
        let last_seq = rows.last().unwrap().seq;
        let end = InvocationQuery { limit: 5, after: last_seq, ..query(InvocationFilter::default()) };
        let end = store.list_invocations(&acme(), &end).await.unwrap();
        assert!(end.invocations.is_empty() && !end.has_more && end.next.is_none());

        // A token names a row of the organization; anything else is refused.
        for (org, after) in [(acme(), 999_999), (other(), rows[0].seq)] {
            let q = InvocationQuery { after, ..query(InvocationFilter::default()) };
            assert!(matches!(store.list_invocations(&org, &q).await, Err(StoreError::NotFound)), "{org} {after}");
        }
    }
}

/// Every page of a listing, following continuation tokens from the start.
async fn all_pages(
    store: &Store,
    filter: &InvocationFilter,
    sort: &[(InvocationSortField, bool)],
    limit: i64,
) -> Vec<InvocationId> {
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let q = InvocationQuery { filter: filter.clone(), sort: sort.to_vec(), limit, after };
        let page = store.list_invocations(&acme(), &q).await.unwrap();
        assert!(page.invocations.len() as i64 <= limit);
        seen.extend(page.invocations.iter().map(|i| i.id.clone()));
        match page.next {
            Some(next) => after = next,
            None => return seen,
        }
    }
}

/// Which rows a filter keeps, computed independently of the store.
type Keep<'a> = Box<dyn Fn(&Invocation) -> bool + 'a>;

#[tokio::test]
async fn each_sort_field_pages_both_ways_under_the_common_filters() {
    use toolsmith_store::SourceType as Kind;
    use InvocationSortField::*;
    for backend in backends().await {
        let store = &backend.store;
        let rows = tied_rows(store).await;
        let mut tools: Vec<toolsmith_domain::ToolId> = rows.iter().map(|r| r.tool_id.clone()).collect();
        tools.sort();
        tools.dedup();
        let tool = |ids: &[&toolsmith_domain::ToolId]| -> Vec<ToolVersions> {
            ids.iter().map(|id| ToolVersions { tool_id: (*id).clone(), versions: None }).collect()
        };
        let contract = vec![Kind::RegularConversation, Kind::SimulationConversation];
        let filters: Vec<(InvocationFilter, Keep)> = vec![
            (InvocationFilter::default(), Box::new(|_| true)),
            (
                InvocationFilter { source_types: Some(contract.clone()), ..Default::default() },
                Box::new(|r| r.source.source_type() != Kind::Direct),
            ),
            (
                InvocationFilter { source_types: Some(vec![Kind::Direct]), ..Default::default() },
                Box::new(|r| r.source.source_type() == Kind::Direct),
            ),
            (InvocationFilter { tools: tool(&[&tools[1]]), ..Default::default() }, Box::new(|r| r.tool_id == tools[1])),
            (
                InvocationFilter {
                    tools: tool(&[&tools[2], &tools[0]]),
                    source_types: Some(contract.clone()),
                    ..Default::default()
                },
                Box::new(|r| r.tool_id != tools[1] && r.source.source_type() != Kind::Direct),
            ),
            (
                InvocationFilter { succeeded: Some(false), source_types: Some(contract), ..Default::default() },
                Box::new(|r| !r.succeeded && r.source.source_type() != Kind::Direct),
            ),
        ];
        for (filter, keep) in &filters {
            let matching: Vec<Invocation> = rows.iter().filter(|r| keep(r)).cloned().collect();
            for field in [CreatedAt, Major, Minor, Patch, ToolId, SourceType, Succeeded] {
                let ascending = all_pages(store, filter, &[(field, false)], 9).await;
                let descending = all_pages(store, filter, &[(field, true)], 9).await;
                assert_eq!(ascending, expected_order(&matching, &[(field, false)]), "+{field:?} {filter:?}");
                let mut reversed = descending.clone();
                reversed.reverse();
                assert_eq!(ascending, reversed, "-{field:?} is +{field:?} reversed, {filter:?}");
            }
        }

        // A token stays a position when the filter changes: after a row of the first tool in
        // `tool_id` order, the second filter continues with the other tools' rows that follow.
        let q = InvocationQuery {
            filter: InvocationFilter { tools: tool(&[&tools[0]]), ..Default::default() },
            sort: vec![(ToolId, false)],
            limit: 3,
            after: 0,
        };
        let first = store.list_invocations(&acme(), &q).await.unwrap();
        let q = InvocationQuery {
            filter: InvocationFilter { tools: tool(&[&tools[2], &tools[1]]), ..Default::default() },
            after: first.next.unwrap(),
            limit: 1000,
            ..q
        };
        let rest: Vec<InvocationId> =
            store.list_invocations(&acme(), &q).await.unwrap().invocations.into_iter().map(|i| i.id).collect();
        let others: Vec<Invocation> = rows.iter().filter(|r| r.tool_id != tools[0]).cloned().collect();
        assert_eq!(rest, expected_order(&others, &[(ToolId, false)]));
    }
}

fn search(text: &str, fields: &[SearchField]) -> InvocationSearch {
    InvocationSearch { query: text.into(), fields: fields.to_vec(), filter: InvocationFilter::default(), limit: 100 }
}

async fn hits(store: &Store, q: &InvocationSearch) -> Vec<InvocationId> {
    store.search_invocations(&acme(), q).await.unwrap().into_iter().map(|i| i.id).collect()
}

#[tokio::test]
async fn search_finds_words_in_the_chosen_fields_newest_first() {
    use SearchField::*;
    for backend in backends().await {
        let store = &backend.store;
        let t = tool_with_versions(store, "t", &["1.0.0"]).await;
        let u = tool_with_versions(store, "u", &["1.0.0"]).await;
        let rows = vec![
            succeeded(&t, "1.0.0", "Sunny in Paris, 21 degrees", regular("c1c1c1c1c1c1c1c1c1c1c1c1"), 1),
            failed(
                &t,
                "1.0.0",
                "ConnectionError",
                "could not reach weather.example.com: timeout",
                &["Traceback (most recent call last):", "  File \"/srv/weather_client.py\", line 12, in fetch"],
                simulation("a1a1a1a1a1a1a1a1a1a1a1a1"),
            ),
            failed(&u, "1.0.0", "TimeoutError", "Paris lookup exceeded 5s", &["  File \"/srv/lookup.py\""], direct()),
            succeeded(&u, "1.0.0", "paris: rain; TIMEOUT=none", direct(), 4),
        ];
        let id: Vec<InvocationId> = rows.iter().map(|r| r.id.clone()).collect();
        for row in rows {
            // One at a time, so that recording order is the order above.
            store.record_invocations(vec![row]).await.unwrap();
        }
        let pick = |idx: &[usize]| -> Vec<InvocationId> { idx.iter().map(|&i| id[i].clone()).collect() };

        // Newest recorded first; every word must match; case does not matter.
        assert_eq!(hits(store, &search("paris", &[])).await, pick(&[3, 2, 0]));
        assert_eq!(hits(store, &search("PARIS rain", &[])).await, pick(&[3]));
        assert_eq!(hits(store, &search("timeout", &[])).await, pick(&[3, 1]));
        // Whole words, unless asked for a prefix.
        assert_eq!(hits(store, &search("degree", &[])).await, pick(&[]));
        assert_eq!(hits(store, &search("degree*", &[])).await, pick(&[0]));
        assert_eq!(hits(store, &search("time*", &[])).await, pick(&[3, 2, 1]));
        // Each field on its own, and in combination.
        assert_eq!(hits(store, &search("paris", &[Output])).await, pick(&[3, 0]));
        assert_eq!(hits(store, &search("paris", &[ExceptionMessage])).await, pick(&[2]));
        assert_eq!(hits(store, &search("timeouterror", &[ExceptionType])).await, pick(&[2]));
        assert_eq!(hits(store, &search("timeouterror", &[ExceptionMessage])).await, pick(&[]));
        assert_eq!(hits(store, &search("srv", &[ExceptionStackTrace])).await, pick(&[2, 1]));
        assert_eq!(hits(store, &search("weather", &[ExceptionStackTrace])).await, pick(&[1]));
        assert_eq!(hits(store, &search("timeout", &[ExceptionType, ExceptionMessage])).await, pick(&[1]));
        assert_eq!(hits(store, &search("timeout", &[Output, ExceptionMessage])).await, pick(&[3, 1]));
        assert_eq!(hits(store, &search("paris 5s", &[Output, ExceptionMessage, ExceptionType])).await, pick(&[2]));
        // Words may sit in different fields of one invocation.
        assert_eq!(hits(store, &search("connectionerror fetch", &[])).await, pick(&[1]));

        // Filters apply to hits.
        let mut q = search("paris", &[]);
        q.filter.tools = vec![ToolVersions { tool_id: u.clone(), versions: None }];
        assert_eq!(hits(store, &q).await, pick(&[3, 2]));
        q.filter.succeeded = Some(false);
        assert_eq!(hits(store, &q).await, pick(&[2]));
        let mut q = search("paris", &[]);
        q.filter.source_types = Some(vec![SourceType::RegularConversation, SourceType::SimulationConversation]);
        assert_eq!(hits(store, &q).await, pick(&[0]));
        q.filter.source_types = Some(vec![]);
        assert_eq!(hits(store, &q).await, pick(&[]));
        let mut q = search("timeout", &[]);
        q.filter.simulation_run_ids = vec!["a1a1a1a1a1a1a1a1a1a1a1a1".into()];
        assert_eq!(hits(store, &q).await, pick(&[1]));
        let mut q = search("paris", &[]);
        q.filter.conversation_ids = vec!["c1c1c1c1c1c1c1c1c1c1c1c1".into()];
        assert_eq!(hits(store, &q).await, pick(&[0]));
        let mut q = search("paris", &[]);
        q.limit = 2;
        assert_eq!(hits(store, &q).await, pick(&[3, 2]));

        // Query syntax of either backend is only ever read as words.
        for text in [
            "\"",
            "*",
            ":",
            "&",
            "'",
            "(",
            ")",
            "\\",
            "!",
            "|",
            "-",
            "^",
            "{",
            "}",
            "NEAR(",
            "AND",
            "OR NOT",
            "paris\" OR \"rain",
            "paris:*",
            "paris & !rain",
            "'paris' | x",
            "output: paris",
            "{output}: x",
            "(((",
            "paris*'",
            "paris' ",
            ":* paris",
            "",
        ] {
            let result = store.search_invocations(&acme(), &search(text, &[])).await;
            assert!(result.is_ok(), "{text:?}: {result:?}");
        }
        assert_eq!(hits(store, &search("\"Paris\" & (rain)", &[])).await, pick(&[3]));
        assert_eq!(hits(store, &search("*:&'(", &[])).await, pick(&[]));
        assert!(store.search_invocations(&other(), &search("paris", &[])).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn newest_hits_are_right_whatever_the_frequency_of_the_words() {
    for backend in backends().await {
        let store = &backend.store;
        let tool = tool_with_versions(store, "t", &["1.0.0"]).await;
        // 3,000 rows, more than a search tests before choosing how to go on, with words from
        // everywhere to only among the oldest rows.
        let rows: Vec<NewInvocation> = (0..3_000i64)
            .map(|i| {
                let mut words = vec!["every".to_owned()];
                for (word, every) in [("w20", 20), ("w25", 25), ("w400", 400)] {
                    if i % every == 0 {
                        words.push(word.to_owned());
                    }
                }
                if i < 10 {
                    words.push("old".into());
                }
                if i < 1_500 && i % 3 == 0 {
                    words.push("gone".into());
                }
                let row = succeeded(&tool, "1.0.0", &words.join(" "), direct(), i);
                if i % 2 == 0 {
                    row
                } else {
                    NewInvocation { succeeded: false, ..row }
                }
            })
            .collect();
        for chunk in rows.chunks(500) {
            store.record_invocations(chunk.to_vec()).await.unwrap();
        }
        let everything = InvocationQuery { limit: 5_000, ..query(Default::default()) };
        let all = store.list_invocations(&acme(), &everything).await.unwrap().invocations;
        for (word, limit, succeeded) in [
            ("every", 50, None),
            ("w20", 60, None),
            ("w25", 100, None),
            ("w400", 50, None),
            ("old", 50, None),
            ("gone", 50, None),
            ("gone", 100, Some(true)),
            ("w25", 100, Some(true)),
            ("every w20", 60, None),
        ] {
            let mut expected: Vec<&Invocation> = all
                .iter()
                .filter(|i| word.split(' ').all(|w| i.output.as_deref().unwrap().split(' ').any(|x| x == w)))
                .filter(|i| succeeded.is_none_or(|s| i.succeeded == s))
                .collect();
            expected.sort_by_key(|i| std::cmp::Reverse(i.seq));
            let expected: Vec<InvocationId> = expected.into_iter().take(limit).map(|i| i.id.clone()).collect();
            let mut q = search(word, &[]);
            q.limit = limit as i64;
            q.filter.succeeded = succeeded;
            assert_eq!(hits(store, &q).await, expected, "{word} {limit} {succeeded:?}");
        }
    }
}

/// Records an invocation the way a server before callers did: the source as given, no caller.
async fn record_before_callers(
    conn: &mut sqlx::AnyConnection,
    postgres: bool,
    id: &InvocationId,
    source: &InvocationSource,
) {
    let sql = format!(
        "INSERT INTO invocations (org_id, id, tool_id, major, minor, patch, succeeded, output, \
         exception_stack_trace, duration_ms, inputs, source, source_type, conversation_id, created_at, \
         updated_at, logs{}) VALUES ('acme', $1, 'ffffffffffffffffffffffff', 1, 0, 0, 1, 'legacy words', '[]', \
         3, '{{}}', $2, $3, $4, 10, 10, ''{})",
        if postgres { ", search" } else { "" },
        if postgres { ", '''legacy'':1A ''words'':2A'::tsvector" } else { "" },
    );
    let inserted = sqlx::query(&sql)
        .bind(id.as_str())
        .bind(serde_json::to_string(source).unwrap())
        .bind(source.source_type().as_str())
        .bind(source.conversation_id())
        .execute(&mut *conn)
        .await
        .unwrap();
    assert_eq!(inserted.rows_affected(), 1);
    if !postgres {
        sqlx::query(
            "INSERT INTO invocations_fts (rowid, output, exception_message, exception_type, exception_stack_trace) \
             SELECT seq, 'legacy words', '', '', '' FROM invocations WHERE id = $1",
        )
        .bind(id.as_str())
        .execute(&mut *conn)
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn invocations_recorded_before_callers_keep_everything_and_direct_ones_gain_their_caller() {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let urls = toolsmith_store::testing::empty_databases(dir.path()).await.expect("PostgreSQL for the store tests");
    for url in urls {
        let postgres = url.starts_with("postgres");
        let (direct_id, regular_id, dropped_id) =
            (InvocationId::generate(), InvocationId::generate(), InvocationId::generate());
        // The schema before callers were recorded (migration 6).
        toolsmith_store::testing::migrate_through(&url, 5).await.unwrap();
        {
            let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
            sqlx::raw_sql("INSERT INTO organizations (id, name, created_at) VALUES ('acme', 'Acme', 0)")
                .execute(&mut conn)
                .await
                .unwrap();
            record_before_callers(&mut conn, postgres, &direct_id, &direct()).await;
            record_before_callers(&mut conn, postgres, &regular_id, &regular("c1c1c1c1c1c1c1c1c1c1c1c1")).await;
            // The newest row is gone; its number must still never be given again.
            record_before_callers(&mut conn, postgres, &dropped_id, &direct()).await;
            sqlx::query("DELETE FROM invocations WHERE id = $1")
                .bind(dropped_id.as_str())
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
        }

        let keyring = Keyring::new(vec![SecretKey::generate()]).unwrap();
        let store = Store::open(&url, keyring).await.unwrap();
        let listed = store.list_invocations(&acme(), &query(InvocationFilter::default())).await.unwrap().invocations;
        let summary: Vec<(i64, &str, Option<UserRef>, SourceType)> =
            listed.iter().map(|i| (i.seq, i.id.as_str(), i.caller.clone(), i.source.source_type())).collect();
        assert_eq!(
            summary,
            [
                (1, direct_id.as_str(), Some(admin()), SourceType::Direct),
                (2, regular_id.as_str(), None, SourceType::RegularConversation),
            ],
            "{url}"
        );
        assert_eq!(listed[1].source, regular("c1c1c1c1c1c1c1c1c1c1c1c1"));
        // The search index still points at the same rows, and the filters' indexes are there.
        assert_eq!(hits(&store, &search("legacy", &[])).await, [regular_id.clone(), direct_id.clone()], "{url}");
        let conversation =
            InvocationFilter { conversation_ids: vec!["c1c1c1c1c1c1c1c1c1c1c1c1".into()], ..Default::default() };
        assert_eq!(ids(&store, &acme(), &query(conversation)).await, vec![regular_id.clone()]);

        let new = succeeded(&unknown_tool(), "1.0.0", "new", regular("c2c2c2c2c2c2c2c2c2c2c2c2"), 20);
        store.record_invocations(vec![new.clone()]).await.unwrap();
        let got = store.get_invocation(&acme(), &new.id).await.unwrap().unwrap();
        assert_eq!((got.seq, got.caller), (4, Some(runtime())), "{url}: numbers go on after the highest ever given");
    }
}

#[tokio::test]
async fn retention_deletes_old_records_in_batches_and_tokens_survive_it() {
    use InvocationSortField::*;
    let day = 86_400_000_000i64;
    let now = Timestamp::now().0;
    for backend in backends().await {
        let store = &backend.store;
        let tool = tool_with_versions(store, "t", &["1.0.0", "2.0.0"]).await;
        let at = |row: NewInvocation, created: i64| NewInvocation { created_at: Timestamp(created), ..row };
        let old: Vec<NewInvocation> = (0..30)
            .map(|i| {
                at(
                    succeeded(&tool, if i % 2 == 0 { "1.0.0" } else { "2.0.0" }, "ancient", direct(), 0),
                    now - 10 * day + i,
                )
            })
            .collect();
        let new: Vec<NewInvocation> =
            (0..20).map(|i| at(succeeded(&tool, "2.0.0", "fresh", direct(), 0), now - day + i)).collect();
        let elsewhere: Vec<NewInvocation> = (0..5)
            .map(|i| NewInvocation {
                org_id: other(),
                ..at(succeeded(&tool, "1.0.0", "ancient", direct(), 0), now - 9 * day + i)
            })
            .collect();
        for rows in [&old, &new, &elsewhere] {
            store.record_invocations(rows.to_vec()).await.unwrap();
        }
        let everything =
            |sort: Vec<(InvocationSortField, bool)>| InvocationQuery { sort, ..query(InvocationFilter::default()) };
        // Tokens naming old rows, taken before they are deleted.
        let page = |sort: Vec<(InvocationSortField, bool)>| InvocationQuery { limit: 5, ..everything(sort) };
        let ascending = store.list_invocations(&acme(), &page(vec![])).await.unwrap().next.unwrap();
        let by_tool = store.list_invocations(&acme(), &page(vec![(ToolId, false)])).await.unwrap().next.unwrap();
        let newest = store.list_invocations(&acme(), &page(vec![(CreatedAt, true)])).await.unwrap().invocations;
        let all_desc = store.list_invocations(&acme(), &everything(vec![(CreatedAt, true)])).await.unwrap().invocations;
        let descending = all_desc[all_desc.len() - 3].seq;
        assert!(newest.iter().all(|i| i.created_at.0 > now - 2 * day));

        // Batches smaller than what is old, while new records keep arriving.
        let writer = {
            let store = store.clone();
            let tool = tool.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    let row = NewInvocation {
                        created_at: Timestamp::now(),
                        ..succeeded(&tool, "2.0.0", "fresh", direct(), i)
                    };
                    store.record_invocations(vec![row]).await.unwrap();
                }
            })
        };
        let cutoff = Timestamp(now - 5 * day);
        let mut batches = Vec::new();
        loop {
            let deleted = store.delete_invocations_before(cutoff, 7).await.unwrap();
            batches.push(deleted);
            if deleted < 7 {
                break;
            }
        }
        writer.await.unwrap();
        assert_eq!(batches.iter().sum::<u64>(), 35, "{batches:?}");
        assert!(batches.iter().all(|n| *n <= 7), "{batches:?}");
        assert_eq!(store.delete_invocations_before(cutoff, 7).await.unwrap(), 0);

        // Nothing old is listed, found, or readable; everything new is.
        let listed = store.list_invocations(&acme(), &everything(vec![])).await.unwrap().invocations;
        assert_eq!(listed.len(), 30);
        assert!(listed.iter().all(|i| i.output.as_deref() == Some("fresh")));
        assert!(store.list_invocations(&other(), &everything(vec![])).await.unwrap().invocations.is_empty());
        assert!(hits(store, &search("ancient", &[])).await.is_empty());
        assert_eq!(hits(store, &search("fresh", &[])).await.len(), 30);
        assert!(store.get_invocation(&acme(), &old[0].id).await.unwrap().is_none());
        assert!(store.invocation_logs(&acme(), &old[0].id).await.unwrap().is_none());
        assert!(store.get_invocation(&acme(), &new[0].id).await.unwrap().is_some());
        if backend.url.starts_with("sqlite") {
            use sqlx::{Connection, Row};
            let mut conn = sqlx::AnyConnection::connect(&backend.url).await.unwrap();
            let left = sqlx::query("SELECT count(*) AS n FROM invocations_fts WHERE invocations_fts MATCH 'ancient'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(left.try_get::<i64, _>("n").unwrap(), 0, "the search index forgot the deleted rows");
        }

        // A token naming a deleted record continues where it stood in orders led by
        // `created_at`: before every kept record ascending, after all of them descending.
        let after = |after: i64, sort: Vec<(InvocationSortField, bool)>| InvocationQuery { after, ..everything(sort) };
        let from_old = store.list_invocations(&acme(), &after(ascending, vec![])).await.unwrap();
        assert_eq!(from_old.invocations, listed);
        let past_old = store.list_invocations(&acme(), &after(descending, vec![(CreatedAt, true)])).await.unwrap();
        assert!(past_old.invocations.is_empty() && !past_old.has_more);
        let by_version = after(ascending, vec![(CreatedAt, false), (Major, true)]);
        assert_eq!(store.list_invocations(&acme(), &by_version).await.unwrap().invocations.len(), 30);
        // Elsewhere its place depended on values that are gone.
        let lost = store.list_invocations(&acme(), &after(by_tool, vec![(ToolId, false)])).await;
        assert!(matches!(lost, Err(StoreError::NotFound)), "{lost:?}");
        // A number above every deleted one still names nothing.
        let unknown = store.list_invocations(&acme(), &after(999_999, vec![])).await;
        assert!(matches!(unknown, Err(StoreError::NotFound)));
    }
}
