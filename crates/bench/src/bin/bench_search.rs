//! Invocation search and listing benchmark: fills a store with 1,000,000 invocation records
//! through the store's recording path (group commits), then measures search (newest 50 hits) and
//! listing pages, on SQLite and, when a PostgreSQL URL is given, on PostgreSQL. Every sort field,
//! both ways, is measured on its first page and on a page 90% of the way in, against the budget
//! of the default order. Also measures how many durable single-row records per second 64
//! concurrent callers get, and last how fast retention deletes every filled record (as a server
//! does: 250 a transaction on SQLite, 1,000 on PostgreSQL, 20 ms apart) while 8 callers keep
//! recording.
//!
//! Run with `cargo build --release -p toolsmith-bench && target/release/bench_search`.
//! PostgreSQL: set `TOOLSMITH_BENCH_POSTGRES_URL` (or `TOOLSMITH_TEST_POSTGRES_URL`) to a
//! database; the benchmark works in a fresh schema of it (left behind for inspection). `BENCH_ROWS`
//! changes the row count; `BENCH_ONLY=sqlite` or `BENCH_ONLY=postgres` runs one backend.
//!
//! The data mimics a busy organization: 20 tools with 3 versions each, 80% succeeded calls with
//! varied outputs, failures spread over a dozen exception types with messages and stack traces,
//! conversations of about 20 calls, and a rare word in one row of 10,000.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use toolsmith_bench::Samples;
use toolsmith_domain::time::Timestamp;
use toolsmith_domain::{BuildId, InvocationId, OrgId, ToolId, ToolName, Version};
use toolsmith_store::secrets::{Keyring, SecretKey};
use toolsmith_store::{
    InvocationFilter, InvocationQuery, InvocationSearch, InvocationSortField, NewInvocation, NewTool, NewVersion,
    SearchField, SourceType, Store, ToolVersions, UserRef,
};

const ORG: &str = "bench";

/// The benchmark's organization.
fn org() -> OrgId {
    OrgId::parse(ORG).expect("a valid slug")
}

/// The user every benchmark record names.
const USER: &str = "0123456789abcdef01234567";
const TOOLS: usize = 20;
const PRODUCERS: usize = 4;
const BATCH: usize = 2_000;
const RUNS: usize = 200;
/// Runs of the one measurement that reads every row.
const SLOW_RUNS: usize = 10;
/// What a listing page may take at the 99th percentile, as the default order does: SQLite,
/// PostgreSQL.
const BUDGET_MS: (f64, f64) = (10.0, 50.0);
/// Retention's transaction size (SQLite, PostgreSQL) and pause, as `toolsmith serve` uses them.
const RETENTION_BATCH: (u32, u32) = (250, 1_000);
const RETENTION_PAUSE: Duration = Duration::from_millis(20);
/// One row in this many carries the rare word.
const RARE_EVERY: u64 = 10_000;
const RARE_WORD: &str = "quasarglint";

/// A small deterministic generator (xorshift64*), so every run indexes the same text.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// An index skewed towards 0, as word frequencies in text are.
    fn skewed(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64) * u * u * u) as usize
    }
}

/// Pronounceable made-up words, so that frequencies are controlled rather than English's.
fn vocabulary(size: usize) -> Vec<String> {
    const SYLLABLES: [&str; 24] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qu", "ex", "in", "or", "al", "en", "dra", "fli",
        "gro", "sha", "tor", "bel", "cor", "dun",
    ];
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut seen = std::collections::HashSet::new();
    let mut words = Vec::with_capacity(size);
    while words.len() < size {
        let parts = 2 + rng.below(3);
        let word: String = (0..parts).map(|_| SYLLABLES[rng.below(SYLLABLES.len())]).collect();
        if word != RARE_WORD && seen.insert(word.clone()) {
            words.push(word);
        }
    }
    words
}

const EXCEPTIONS: [(&str, &str); 12] = [
    ("TimeoutError", "the upstream service did not answer within 5 seconds"),
    ("ConnectionError", "connection refused by api.internal:443"),
    ("KeyError", "'customer_id' is missing from the payload"),
    ("ValueError", "invalid literal for int() with base 10"),
    ("PermissionError", "the token does not grant access to this account"),
    ("HTTPStatusError", "server answered 502 bad gateway"),
    ("JSONDecodeError", "expecting value at line 1 column 1"),
    ("RuntimeError", "the order is already closed"),
    ("TypeError", "unsupported operand types for addition"),
    ("IndexError", "list index out of range"),
    ("ZeroDivisionError", "division by zero"),
    ("LookupError", "no appointment matches the requested slot"),
];

struct Fixture {
    tools: Vec<ToolId>,
}

fn make_row(n: u64, rng: &mut Rng, words: &[String], f: &Fixture) -> NewInvocation {
    let tool = &f.tools[rng.below(f.tools.len())];
    let version = Version { major: 1 + rng.below(3) as u64, minor: 0, patch: 0 };
    let sentence = |rng: &mut Rng, len: usize| -> String {
        (0..len).map(|_| words[rng.skewed(words.len())].as_str()).collect::<Vec<_>>().join(" ")
    };
    let conversation = n / 20;
    let source = if n % 10 < 7 {
        json!({
            "type": "regular-conversation",
            "user_id": format!("{:024x}", n % 5_000),
            "conversation_id": format!("{conversation:024x}"),
            "interaction_id": format!("{n:024x}"),
            "invocation_metadata": {"type": "engage-user", "current_state_machine_and_version": ["support", 4], "tool_call_round_index": 0}
        })
    } else {
        json!({
            "type": "simulation-conversation",
            "simulation_unit_test_set_run_id": format!("{:024x}", conversation % 500),
            "unit_test_id": null,
            "run_index": n % 7,
            "invocation_metadata": {"type": "engage-user", "current_state_machine_and_version": ["support", 4], "tool_call_round_index": 1}
        })
    };
    let rare = if n % RARE_EVERY == 7 { format!(" {RARE_WORD}") } else { String::new() };
    let mut row = NewInvocation {
        id: InvocationId::generate(),
        org_id: org(),
        tool_id: tool.clone(),
        version,
        succeeded: true,
        output: None,
        exception_type: None,
        exception_message: None,
        exception_stack_trace: vec![],
        duration_ms: 5 + rng.below(400) as i64,
        inputs: json!({"query": sentence(rng, 3), "limit": rng.below(50)}),
        source: serde_json::from_value(source).expect("a source of the wire's shape"),
        caller: UserRef { org_id: org(), user_id: format!("{:024x}", n % 5_000).parse().expect("a user id") },
        logs: format!("calling upstream for {}\n", sentence(rng, 2)),
        created_at: Timestamp(1_760_000_000_000_000 + n as i64 * 3_000),
    };
    if rng.below(10) < 8 {
        // Half of the outputs are structured results, the rest free text.
        let len = 8 + rng.below(30);
        let body = sentence(rng, len);
        row.output = Some(if rng.below(2) == 0 {
            format!("{{\"result\": \"{body}{rare}\", \"count\": {}}}", rng.below(100))
        } else {
            format!("{body}{rare}")
        });
    } else {
        let (kind, message) = EXCEPTIONS[rng.skewed(EXCEPTIONS.len())];
        row.succeeded = false;
        row.exception_type = Some(kind.into());
        row.exception_message = Some(format!("{message} ({}){rare}", sentence(rng, 2)));
        let depth = 3 + rng.below(4);
        let mut trace = vec!["Traceback (most recent call last):".to_owned()];
        for d in 0..depth {
            let module = &words[rng.skewed(words.len() / 10)];
            trace.push(format!("  File \"/srv/tools/{module}/handler.py\", line {}, in step_{d}", 10 + rng.below(300)));
        }
        trace.push(format!("{kind}: {message}"));
        row.exception_stack_trace = trace;
    }
    row
}

async fn fill(store: &Store, rows: u64) -> anyhow::Result<(Fixture, f64)> {
    store.create_org(&org(), "Bench").await?;
    let admin = UserRef { org_id: org(), user_id: USER.parse().expect("a user id") };
    let mut tools = Vec::new();
    for i in 0..TOOLS {
        let tool = store
            .create_tool(NewTool {
                org_id: org(),
                name: ToolName::parse(&format!("tool_{i}")).map_err(|e| anyhow::anyhow!("{e}"))?,
                description: "A benchmark tool.".into(),
                tags: vec![],
                creator: admin.clone(),
            })
            .await?;
        for major in 1..=3 {
            store
                .insert_version(NewVersion {
                    org_id: org(),
                    tool_id: tool.id.clone(),
                    version: Version { major, minor: 0, patch: 0 },
                    required_envvars: vec![],
                    required_secret_envvars: vec![],
                    input_schema: json!({"type": "object"}),
                    takes_context: false,
                    entrypoint: "tool:run".into(),
                    tool_commit_hash: "a".repeat(40),
                    scaffold_hash: "b".repeat(64),
                    project_directory: format!("tool_{i}"),
                    content_digest: "c".repeat(64),
                    environment_key: "d".repeat(64),
                    build_id: BuildId::generate(),
                    output_schema: None,
                    creator: admin.clone(),
                })
                .await?;
        }
        tools.push(tool.id);
    }
    let fixture = Arc::new(Fixture { tools });
    let words = Arc::new(vocabulary(20_000));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (store, fixture, words, next) = (store.clone(), fixture.clone(), words.clone(), next.clone());
            tokio::spawn(async move {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (p as u64 + 1));
                loop {
                    let start = next.fetch_add(BATCH as u64, Ordering::Relaxed);
                    if start >= rows {
                        return Ok::<_, anyhow::Error>(());
                    }
                    let end = (start + BATCH as u64).min(rows);
                    let batch: Vec<NewInvocation> =
                        (start..end).map(|n| make_row(n, &mut rng, &words, &fixture)).collect();
                    store.record_invocations(batch).await?;
                }
            })
        })
        .collect();
    let mut last_report = Instant::now();
    for producer in producers {
        while !producer.is_finished() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if last_report.elapsed() > Duration::from_secs(30) {
                eprintln!(
                    "  … {} rows queued after {:.0}s",
                    next.load(Ordering::Relaxed).min(rows),
                    started.elapsed().as_secs_f64()
                );
                last_report = Instant::now();
            }
        }
        producer.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    store.refresh_invocation_statistics().await?;
    let fixture = Arc::try_unwrap(fixture).map_err(|_| anyhow::anyhow!("fixture still shared"))?;
    Ok((fixture, secs))
}

/// Runs `f` `runs` times after a few warm-up calls; returns the latencies and the size of the
/// last answer.
async fn measure<F, Fut>(runs: usize, mut f: F) -> anyhow::Result<(Samples, usize)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    for _ in 0..runs.min(5) {
        f().await?;
    }
    let mut samples = Samples::default();
    let mut size = 0;
    for _ in 0..runs {
        let t = Instant::now();
        size = f().await?;
        samples.push(t.elapsed());
    }
    Ok((samples, size))
}

async fn durable_throughput(store: &Store, tool: &ToolId) -> anyhow::Result<f64> {
    const CALLERS: usize = 64;
    const DURATION: Duration = Duration::from_secs(5);
    let deadline = Instant::now() + DURATION;
    let started = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|c| {
            let (store, tool) = (store.clone(), tool.to_owned());
            tokio::spawn(async move {
                let mut count = 0u64;
                while Instant::now() < deadline {
                    let row = NewInvocation {
                        id: InvocationId::generate(),
                        org_id: org(),
                        tool_id: tool.clone(),
                        version: Version { major: 1, minor: 0, patch: 0 },
                        succeeded: true,
                        output: Some(format!("caller {c} call {count} done")),
                        exception_type: None,
                        exception_message: None,
                        exception_stack_trace: vec![],
                        duration_ms: 1,
                        inputs: json!({}),
                        source: serde_json::from_value(
                            json!({"type": "direct", "user_id": "0123456789abcdef01234567", "user_org_id": ORG}),
                        )?,
                        caller: UserRef { org_id: org(), user_id: USER.parse().expect("a user id") },
                        logs: String::new(),
                        created_at: Timestamp::now(),
                    };
                    store.record_invocations(vec![row]).await?;
                    count += 1;
                }
                Ok::<_, anyhow::Error>(count)
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// The filters the measurements share: what the API applies by default (two of the three source
/// types), one tool of the 20, failures only and one conversation.
struct Filters {
    two_sources: InvocationFilter,
    one_tool: InvocationFilter,
    failed_only: InvocationFilter,
    conversation: InvocationFilter,
}

impl Filters {
    fn new(tool: &ToolId, rows: u64) -> Filters {
        Filters {
            two_sources: InvocationFilter {
                source_types: Some(vec![SourceType::RegularConversation, SourceType::SimulationConversation]),
                ..Default::default()
            },
            one_tool: InvocationFilter {
                tools: vec![ToolVersions { tool_id: tool.clone(), versions: None }],
                ..Default::default()
            },
            failed_only: InvocationFilter { succeeded: Some(false), ..Default::default() },
            conversation: InvocationFilter {
                conversation_ids: vec![format!("{:024x}", rows / 20 / 2)],
                ..Default::default()
            },
        }
    }
}

/// Every sort field the listing offers, with its name in the API.
const SORT_FIELDS: [(&str, InvocationSortField); 7] = [
    ("created_at", InvocationSortField::CreatedAt),
    ("version.major", InvocationSortField::Major),
    ("version.minor", InvocationSortField::Minor),
    ("version.patch", InvocationSortField::Patch),
    ("tool_id", InvocationSortField::ToolId),
    ("invocation_source.type", InvocationSortField::SourceType),
    ("invocation_status.succeeded", InvocationSortField::Succeeded),
];

/// A search for the newest 50 hits.
fn search(text: &str, fields: &[SearchField], filter: InvocationFilter) -> InvocationSearch {
    InvocationSearch { query: text.into(), fields: fields.to_vec(), filter, limit: 50 }
}

/// A listing page of 100 rows.
fn page(filter: InvocationFilter, sort: Vec<(InvocationSortField, bool)>, after: i64) -> InvocationQuery {
    InvocationQuery { filter, sort, limit: 100, after }
}

/// Fills one backend's store and measures it, printing one table.
async fn run(label: &str, store: Store, rows: u64) -> anyhow::Result<()> {
    eprintln!("{label}: recording {rows} invocations …");
    let (fixture, fill_secs) = fill(&store, rows).await?;
    let tool = fixture.tools[3].clone();
    let filters = Filters::new(&tool, rows);
    println!();
    println!("### {label}: {rows} invocations");
    println!();
    println!(
        "Recorded in {fill_secs:.0} s ({:.0} rows/s, {PRODUCERS} callers handing over {BATCH} rows at a time).",
        rows as f64 / fill_secs
    );
    println!();
    println!("| measurement | rows returned | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    measure_searches(&store, &filters).await?;
    measure_listings(&store, &filters).await?;
    let sorted = measure_sorted_pages(&store, &filters).await?;
    let per_sec = durable_throughput(&store, &tool).await?;
    println!("| durable single-row records, 64 concurrent callers for 5 s | {per_sec:.0}/s | | |");
    retention(&store, &tool, rows).await?;
    report_budget(&store, &sorted);
    store.close().await;
    Ok(())
}

/// Searches for words of every frequency, in one field or all, with and without filters.
async fn measure_searches(store: &Store, filters: &Filters) -> anyhow::Result<()> {
    let searches = [
        ("rare word (1 row in 10,000), all fields", search(RARE_WORD, &[], InvocationFilter::default())),
        ("common word (\"result\", ~40% of rows), all fields", search("result", &[], InvocationFilter::default())),
        (
            "two words in one field (exception_message)",
            search("connection refused", &[SearchField::ExceptionMessage], InvocationFilter::default()),
        ),
        (
            "one field (exception_type = TimeoutError)",
            search("TimeoutError", &[SearchField::ExceptionType], InvocationFilter::default()),
        ),
        ("common word, filtered to one tool of 20", search("result", &[], filters.one_tool.clone())),
        ("common word, filtered to one conversation", search("result", &[], filters.conversation.clone())),
        ("prefix (\"conn*\"), failed only", search("conn*", &[], filters.failed_only.clone())),
    ];
    for (name, q) in &searches {
        let (mut samples, size) =
            measure(RUNS, || async { Ok(store.search_invocations(&org(), q).await?.len()) }).await?;
        println!(
            "| search: {name} | {size} | {:.2} | {:.2} |",
            samples.percentile_ms(50.0),
            samples.percentile_ms(99.0)
        );
    }
    Ok(())
}

/// First and deep pages of the listings clients ask for most, and of an order no index serves.
async fn measure_listings(store: &Store, filters: &Filters) -> anyhow::Result<()> {
    use InvocationSortField as F;
    // Listing entries: (name, filter, sort, deep, runs). A deep page starts 100 rows before the
    // end of its order; the reversed order's first page ends there.
    let listings = [
        ("first page (100, default order)", InvocationFilter::default(), vec![], false, RUNS),
        ("deep page (100 rows before the end), default order", InvocationFilter::default(), vec![], true, RUNS),
        ("deep page, one tool", filters.one_tool.clone(), vec![], true, RUNS),
        ("first page, newest first, failed only", filters.failed_only.clone(), vec![(F::CreatedAt, true)], false, RUNS),
        ("deep page, caller who may read two of three source types", filters.two_sources.clone(), vec![], true, RUNS),
        (
            "deep page, sorted by -version.major +tool_id (mixed directions: no index serves it)",
            InvocationFilter::default(),
            vec![(F::Major, true), (F::ToolId, false)],
            true,
            SLOW_RUNS,
        ),
    ];
    for (name, filter, sort, deep, runs) in listings {
        let after = if deep {
            let reversed: Vec<(F, bool)> = sort.iter().map(|(f, d)| (*f, !d)).collect();
            let reversed = if reversed.is_empty() { vec![(F::CreatedAt, true)] } else { reversed };
            let tail = store.list_invocations(&org(), &page(filter.clone(), reversed, 0)).await?;
            tail.invocations.last().map_or(0, |i| i.seq)
        } else {
            0
        };
        let q = page(filter, sort, after);
        let (mut samples, size) =
            measure(runs, || async { Ok(store.list_invocations(&org(), &q).await?.invocations.len()) }).await?;
        println!("| list: {name} | {size} | {:.2} | {:.2} |", samples.percentile_ms(50.0), samples.percentile_ms(99.0));
    }
    Ok(())
}

/// Every sort field, both ways, with the filter the API applies by default (the contract's two
/// source types): the first page, and 100 rows starting 90% of the way in. Then the same for
/// the listing of one tool and of failures only, on their deep pages. Returns each page's name
/// and p99, which the budget is checked against.
async fn measure_sorted_pages(store: &Store, filters: &Filters) -> anyhow::Result<Vec<(String, f64)>> {
    let mut sorted = Vec::new();
    let filtered =
        [("", &filters.two_sources), (", one tool", &filters.one_tool), (", failed only", &filters.failed_only)];
    for (filter_name, filter) in filtered {
        let matching = {
            let q = InvocationQuery { filter: filter.clone(), sort: vec![], limit: i64::MAX - 1, after: 0 };
            count(store, &q).await?
        };
        let depth = matching * 9 / 10;
        let pages: &[bool] = if filter_name.is_empty() { &[false, true] } else { &[true] };
        for (label, field) in SORT_FIELDS {
            for desc in [false, true] {
                let sign = if desc { '-' } else { '+' };
                for &deep in pages {
                    let after =
                        if deep { token_before(store, filter, (field, desc), matching, depth).await? } else { 0 };
                    let q = page(filter.clone(), vec![(field, desc)], after);
                    let (mut samples, size) =
                        measure(RUNS, || async { Ok(store.list_invocations(&org(), &q).await?.invocations.len()) })
                            .await?;
                    let (p50, p99) = (samples.percentile_ms(50.0), samples.percentile_ms(99.0));
                    let which = if deep { format!("rows {depth}+ of {matching}") } else { "first page".into() };
                    let name = format!("sort_by={sign}{label}{filter_name}, {which}");
                    println!("| list: {name} | {size} | {p50:.2} | {p99:.2} |");
                    sorted.push((name, p99));
                }
            }
        }
    }
    Ok(sorted)
}

/// The token of the row before position `depth` of the `matching` rows in order `sort`: the
/// last of the first `matching - depth + 1` rows of the reversed order.
async fn token_before(
    store: &Store,
    filter: &InvocationFilter,
    (field, desc): (InvocationSortField, bool),
    matching: u64,
    depth: u64,
) -> anyhow::Result<i64> {
    let q = InvocationQuery {
        filter: filter.clone(),
        sort: vec![(field, !desc)],
        limit: (matching - depth + 1) as i64,
        after: 0,
    };
    Ok(store.list_invocations(&org(), &q).await?.invocations.last().map_or(0, |i| i.seq))
}

/// How many sorted pages kept within the default order's budget, and which did not.
fn report_budget(store: &Store, sorted: &[(String, f64)]) {
    let budget = if store.dialect() == toolsmith_store::Dialect::Sqlite { BUDGET_MS.0 } else { BUDGET_MS.1 };
    let over: Vec<&(String, f64)> = sorted.iter().filter(|(_, p99)| *p99 > budget).collect();
    let worst = sorted.iter().map(|(_, p99)| *p99).fold(0.0, f64::max);
    println!();
    println!(
        "Sorted pages within the default order's budget (p99 ≤ {budget} ms): {} of {} (slowest p99 {worst:.2} ms).",
        sorted.len() - over.len(),
        sorted.len()
    );
    for (name, p99) in over {
        println!("- over budget: {name}: p99 {p99:.2} ms");
    }
}

/// How many rows a listing has, counted page by page through continuation tokens.
async fn count(store: &Store, q: &InvocationQuery) -> anyhow::Result<u64> {
    let mut q = InvocationQuery { limit: 10_000, ..q.clone() };
    let mut n = 0;
    loop {
        let page = store.list_invocations(&org(), &q).await?;
        n += page.invocations.len() as u64;
        match page.next {
            Some(next) => q.after = next,
            None => return Ok(n),
        }
    }
}

/// Deletes every filled record as the server's retention would, while 8 callers keep recording
/// single rows; prints the rate, how long each transaction held the database, and what the
/// callers waited meanwhile.
async fn retention(store: &Store, tool: &ToolId, rows: u64) -> anyhow::Result<()> {
    // Every filled record was created before this; the throughput test's records after it.
    let cutoff = Timestamp(1_760_000_000_000_000 + rows as i64 * 3_000 + 1);
    let deleting = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let callers: Vec<_> = (0..8)
        .map(|c| {
            let (store, tool, deleting) = (store.clone(), tool.to_owned(), deleting.clone());
            tokio::spawn(async move {
                let mut samples = Samples::default();
                let mut n = 0u64;
                while deleting.load(Ordering::Relaxed) {
                    let row = NewInvocation {
                        id: InvocationId::generate(),
                        org_id: org(),
                        tool_id: tool.clone(),
                        version: Version { major: 1, minor: 0, patch: 0 },
                        succeeded: true,
                        output: Some(format!("caller {c} call {n} during retention")),
                        exception_type: None,
                        exception_message: None,
                        exception_stack_trace: vec![],
                        duration_ms: 1,
                        inputs: json!({}),
                        source: serde_json::from_value(
                            json!({"type": "direct", "user_id": "0123456789abcdef01234567", "user_org_id": ORG}),
                        )?,
                        caller: UserRef { org_id: org(), user_id: USER.parse().expect("a user id") },
                        logs: String::new(),
                        created_at: Timestamp::now(),
                    };
                    let t = Instant::now();
                    store.record_invocations(vec![row]).await?;
                    samples.push(t.elapsed());
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ok::<_, anyhow::Error>(samples)
            })
        })
        .collect();
    let batch = if store.dialect() == toolsmith_store::Dialect::Sqlite { RETENTION_BATCH.0 } else { RETENTION_BATCH.1 };
    let started = Instant::now();
    let mut batches = Samples::default();
    let mut deleted = 0;
    loop {
        let t = Instant::now();
        let n = store.delete_invocations_before(cutoff, batch).await?;
        batches.push(t.elapsed());
        deleted += n;
        if n < u64::from(batch) {
            break;
        }
        tokio::time::sleep(RETENTION_PAUSE).await;
    }
    let secs = started.elapsed().as_secs_f64();
    deleting.store(false, Ordering::Relaxed);
    let mut waits = Samples::default();
    for caller in callers {
        waits.extend(caller.await??);
    }
    println!(
        "| retention: deleted {deleted} records ({batch} a transaction, {} ms apart) in {secs:.1} s | {:.0}/s | | |",
        RETENTION_PAUSE.as_millis(),
        deleted as f64 / secs
    );
    println!(
        "| retention: one transaction of {batch} | | {:.2} | {:.2} |",
        batches.percentile_ms(50.0),
        batches.percentile_ms(99.0)
    );
    println!(
        "| retention: a durable single-row record meanwhile (8 callers, {} records) | | {:.2} | {:.2} |",
        waits.len(),
        waits.percentile_ms(50.0),
        waits.percentile_ms(99.0)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rows: u64 = std::env::var("BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let keyring = || Keyring::new(vec![SecretKey::generate()]).ok_or_else(|| anyhow::anyhow!("no secret key"));
    println!(
        "toolsmith invocation search benchmark (newest 50 hits per search, pages of 100, {RUNS} runs per row, one client)"
    );

    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let dir = tempfile::tempdir()?;
    if only != "postgres" {
        let sqlite = Store::open_sqlite_dir(dir.path(), keyring()?).await?;
        run("SQLite", sqlite, rows).await?;
    }
    if only == "sqlite" {
        return Ok(());
    }

    let pg = std::env::var("TOOLSMITH_BENCH_POSTGRES_URL").or_else(|_| std::env::var("TOOLSMITH_TEST_POSTGRES_URL"));
    match pg {
        Ok(base) => {
            let url = toolsmith_store::testing::fresh_postgres_schema(&base).await?;
            if let Some(schema) = url.split("search_path%3D").nth(1) {
                eprintln!("PostgreSQL: working in schema {schema}; drop it when done");
            }
            let store = Store::open(&url, keyring()?).await?;
            run("PostgreSQL", store, rows).await?;
        }
        Err(_) => println!("\n(PostgreSQL skipped: set TOOLSMITH_BENCH_POSTGRES_URL to include it.)"),
    }
    Ok(())
}
