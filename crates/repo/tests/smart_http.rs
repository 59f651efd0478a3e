//! Smart-HTTP plumbing without an HTTP server: gzip'd request bodies and clean-up when the
//! client goes away.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use toolsmith_repo::smart_http::Service;
use toolsmith_repo::{Limits, RepoStore};

fn pkt(text: &str) -> String {
    format!("{:04x}{text}", text.len() + 4)
}

/// A protocol v2 `ls-refs` request.
fn ls_refs() -> Vec<u8> {
    format!("{}{}0001{}0000", pkt("command=ls-refs\n"), pkt("object-format=sha1\n"), pkt("ref-prefix refs/heads/\n"))
        .into_bytes()
}

async fn collect(mut body: futures_util::stream::BoxStream<'static, std::io::Result<Bytes>>) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

#[tokio::test]
async fn plain_and_gzipped_requests_get_the_same_answer() {
    let dir = tempfile::tempdir().unwrap();
    let repos = RepoStore::new(dir.path().to_owned(), Limits::default()).unwrap();
    repos.create("acme").await.unwrap();
    let v2 = Some("version=2".to_owned());

    let plain = futures_util::stream::iter([Ok(Bytes::from(ls_refs()))]);
    let answer = repos.rpc("acme", Service::UploadPack, plain, false, v2.clone()).await.unwrap();
    let plain_answer = collect(answer.body).await;
    assert!(
        String::from_utf8_lossy(&plain_answer).contains("refs/heads/main"),
        "{}",
        String::from_utf8_lossy(&plain_answer)
    );

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &ls_refs()).unwrap();
    let compressed = gz.finish().unwrap();
    // Split the compressed body across chunks, as it arrives from the network.
    let chunks: Vec<std::io::Result<Bytes>> = compressed.chunks(7).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let answer = repos.rpc("acme", Service::UploadPack, futures_util::stream::iter(chunks), true, v2).await.unwrap();
    assert_eq!(collect(answer.body).await, plain_answer);
}

fn git_processes_for(path: &std::path::Path) -> usize {
    let needle = path.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|cmd| String::from_utf8_lossy(cmd).contains(&needle))
        .count()
}

#[tokio::test]
async fn dropping_the_response_kills_git() {
    let dir = tempfile::tempdir().unwrap();
    let repos = RepoStore::new(dir.path().to_owned(), Limits::default()).unwrap();
    repos.create("acme").await.unwrap();
    // A client that sent headers and then went quiet: git waits for the rest of the request.
    let never = futures_util::stream::pending::<std::io::Result<Bytes>>();
    let answer = repos.rpc("acme", Service::UploadPack, never, false, None).await.unwrap();
    let repo = repos.path_of("acme").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(git_processes_for(&repo), 1, "git is serving the request");
    drop(answer);
    let deadline = Instant::now() + Duration::from_secs(5);
    while git_processes_for(&repo) > 0 {
        assert!(Instant::now() < deadline, "git outlived its client");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
