//! Git's smart HTTP protocol (v0 and v2), served by the real `git upload-pack` and
//! `git receive-pack` in `--stateless-rpc` mode.
//!
//! Running the two services directly, rather than `git http-backend` as a CGI program, keeps the
//! HTTP framing (status, headers, authentication) in the service and leaves git only the pack
//! work; bodies stream through in both directions with a bounded buffer, so a clone of any size
//! costs the server little memory. When the client goes away, the response stream is dropped,
//! and the git process is killed.

use std::io;
use std::path::Path;
use std::process::Stdio;

use bytes::Bytes;
use futures_util::stream::{BoxStream, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use crate::git::Git;
use crate::{RepoError, RepoStore};

/// The two services a git client talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Fetch and clone.
    UploadPack,
    /// Push.
    ReceivePack,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::UploadPack => "upload-pack",
            Service::ReceivePack => "receive-pack",
        }
    }

    fn parse(s: &str) -> Option<Service> {
        match s {
            "git-upload-pack" => Some(Service::UploadPack),
            "git-receive-pack" => Some(Service::ReceivePack),
            _ => None,
        }
    }
}

/// What a smart-HTTP request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitRequest {
    /// `GET info/refs?service=…`: the ref advertisement.
    InfoRefs(Service),
    /// `POST git-upload-pack` or `POST git-receive-pack`: one round of the protocol.
    Rpc(Service),
}

impl GitRequest {
    /// The service this request is for.
    pub fn service(self) -> Service {
        match self {
            GitRequest::InfoRefs(s) | GitRequest::Rpc(s) => s,
        }
    }
}

/// Maps the path under `/tool/git/` and the `service` query parameter to a request; anything a
/// smart git client does not send is [`RepoError::UnknownService`].
pub fn route(is_post: bool, git_path: &str, service: Option<&str>) -> Result<GitRequest, RepoError> {
    let path = git_path.trim_start_matches('/');
    match (is_post, path) {
        (false, "info/refs") => {
            service.and_then(Service::parse).map(GitRequest::InfoRefs).ok_or(RepoError::UnknownService)
        }
        (true, p) => Service::parse(p).map(GitRequest::Rpc).ok_or(RepoError::UnknownService),
        _ => Err(RepoError::UnknownService),
    }
}

/// The `Git-Protocol` header value if it is well-formed (`version=2`, colon-separated
/// `key=value` pairs of safe characters); anything else is ignored, as git's own server does.
pub fn protocol(header: Option<&str>) -> Option<String> {
    let value = header?.trim();
    let ok = !value.is_empty()
        && value.len() <= 256
        && value.split(':').all(|pair| {
            pair.split_once('=').is_some_and(|(k, v)| {
                !k.is_empty() && k.bytes().chain(v.bytes()).all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            })
        });
    ok.then(|| value.to_owned())
}

/// A response body produced by git.
pub struct GitResponse {
    /// The `Content-Type` to answer with.
    pub content_type: &'static str,
    /// The body, streamed from git as it produces it.
    pub body: BoxStream<'static, io::Result<Bytes>>,
    /// For a push: resolves, after git has finished, with what the push changed.
    pub pushed: Option<oneshot::Receiver<PushOutcome>>,
}

/// What a successful push changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// `(ref, old, new)` for every updated ref.
    pub updates: Vec<(String, String, String)>,
    /// Commits that the push made reachable and that were not reachable before.
    pub new_commits: Vec<String>,
}

const ZERO: &str = "0000000000000000000000000000000000000000";
const POST_RECEIVE: &str = "#!/bin/sh\n\
# Records the ref updates of pushes that toolsmith serves, for attributing commits to pushers.\n\
if [ -n \"$TOOLSMITH_PUSH_LOG\" ]; then cat >> \"$TOOLSMITH_PUSH_LOG\"; fi\n\
exit 0\n";

/// Installs the repository's hooks (the push log).
pub(crate) fn install_hooks(bare: &Path) -> Result<(), RepoError> {
    use std::os::unix::fs::PermissionsExt;
    let hooks = bare.join("hooks");
    std::fs::create_dir_all(&hooks)?;
    let path = hooks.join("post-receive");
    std::fs::write(&path, POST_RECEIVE)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn pkt_line(text: &str) -> Vec<u8> {
    format!("{:04x}{text}", text.len() + 4).into_bytes()
}

impl RepoStore {
    /// Answers `GET info/refs?service=…`: the ref advertisement of `service`.
    pub async fn info_refs(
        &self,
        org: &str,
        service: Service,
        git_protocol: Option<String>,
    ) -> Result<GitResponse, RepoError> {
        let git = self.git(org)?;
        let mut cmd = git_command(service, self.limits.max_push_bytes);
        cmd.args(["--stateless-rpc", "--http-backend-info-refs"]).arg(git.dir());
        let v2 = git_protocol.as_deref().is_some_and(|p| p.split(':').any(|kv| kv == "version=2"));
        if let Some(p) = &git_protocol {
            cmd.env("GIT_PROTOCOL", p);
        }
        // Protocol v0 starts with a service announcement; v2 starts straight with capabilities.
        let mut prefix = Vec::new();
        if !v2 {
            prefix.extend(pkt_line(&format!("# service=git-{}\n", service.name())));
            prefix.extend_from_slice(b"0000");
        }
        let (body, _) = spawn_streaming(cmd, futures_util::stream::empty::<io::Result<Bytes>>(), false, prefix, None)?;
        let content_type = match service {
            Service::UploadPack => "application/x-git-upload-pack-advertisement",
            Service::ReceivePack => "application/x-git-receive-pack-advertisement",
        };
        Ok(GitResponse { content_type, body, pushed: None })
    }

    /// Answers `POST git-upload-pack` / `POST git-receive-pack`, streaming `body` (gzip'd when
    /// `gzip`) into git and git's answer back.
    pub async fn rpc<S>(
        &self,
        org: &str,
        service: Service,
        body: S,
        gzip: bool,
        git_protocol: Option<String>,
    ) -> Result<GitResponse, RepoError>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static,
    {
        let git = self.git(org)?;
        let mut cmd = git_command(service, self.limits.max_push_bytes);
        cmd.arg("--stateless-rpc").arg(git.dir());
        if let Some(p) = &git_protocol {
            cmd.env("GIT_PROTOCOL", p);
        }
        let push_log = match service {
            Service::ReceivePack => {
                let log = tempfile::NamedTempFile::new()?;
                cmd.env("TOOLSMITH_PUSH_LOG", log.path());
                Some((git.clone(), log))
            }
            Service::UploadPack => None,
        };
        let (body, pushed) = spawn_streaming(cmd, body, gzip, Vec::new(), push_log)?;
        let content_type = match service {
            Service::UploadPack => "application/x-git-upload-pack-result",
            Service::ReceivePack => "application/x-git-receive-pack-result",
        };
        Ok(GitResponse { content_type, body, pushed })
    }
}

fn git_command(service: Service, max_push_bytes: u64) -> tokio::process::Command {
    let mut cmd = crate::git::command();
    if service == Service::ReceivePack {
        // git refuses a larger pack itself, tells the client why, and leaves the repository as
        // it was (the incoming objects are quarantined until the push is accepted).
        cmd.arg("-c").arg(format!("receive.maxInputSize={max_push_bytes}"));
        cmd.arg("-c").arg("receive.denyCurrentBranch=ignore");
    }
    cmd.arg(service.name());
    cmd
}

type Spawned = (BoxStream<'static, io::Result<Bytes>>, Option<oneshot::Receiver<PushOutcome>>);

/// Runs git with `input` as stdin and returns its stdout as a stream (after `prefix`).
fn spawn_streaming<S>(
    mut cmd: tokio::process::Command,
    input: S,
    gzip: bool,
    prefix: Vec<u8>,
    push_log: Option<(Git, tempfile::NamedTempFile)>,
) -> Result<Spawned, RepoError>
where
    S: Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static,
{
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let (Some(stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(RepoError::Git("git started without pipes".into()));
    };
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    let (pushed_tx, pushed_rx) = match push_log {
        Some(_) => {
            let (t, r) = oneshot::channel();
            (Some(t), Some(r))
        }
        None => (None, None),
    };
    tokio::spawn(async move {
        if !prefix.is_empty() && tx.send(Ok(Bytes::from(prefix))).await.is_err() {
            let _ = child.start_kill();
            return;
        }
        let reader = tokio_util::io::StreamReader::new(input);
        let feed = feed_stdin(reader, gzip, stdin);
        let drain = async {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stdout.read(&mut buf).await {
                    Ok(0) => return true,
                    Ok(n) => {
                        if tx.send(Ok(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                            return false;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return false;
                    }
                }
            }
        };
        let gone = tx.closed();
        tokio::pin!(feed, drain, gone);
        let mut fed = false;
        let completed = loop {
            tokio::select! {
                ok = &mut feed, if !fed => {
                    fed = true;
                    if !ok { break false; }
                }
                ok = &mut drain => break ok,
                // The response was dropped (the client went away) while git was quiet.
                () = &mut gone => break false,
            }
        };
        if !completed {
            // The client went away or sent a broken body: stop git now.
            let _ = child.start_kill();
            let _ = child.wait().await;
            return;
        }
        let status = child.wait().await;
        if let (Some(pushed_tx), Some((git, log)), Ok(status)) = (pushed_tx, push_log, status) {
            if status.success() {
                if let Ok(outcome) = push_outcome(&git, log.path()).await {
                    let _ = pushed_tx.send(outcome);
                }
            }
        }
    });
    let body = tokio_stream_from(rx);
    Ok((body, pushed_rx))
}

async fn feed_stdin<R: AsyncRead + Unpin>(reader: R, gzip: bool, mut stdin: tokio::process::ChildStdin) -> bool {
    let copied = if gzip {
        let mut decoder = async_compression::tokio::bufread::GzipDecoder::new(BufReader::new(reader));
        tokio::io::copy(&mut decoder, &mut stdin).await
    } else {
        let mut reader = reader;
        tokio::io::copy(&mut reader, &mut stdin).await
    };
    // Closing stdin tells git the request is complete.
    let closed = stdin.shutdown().await;
    match (copied, closed) {
        (Ok(_), _) => true,
        // git may stop reading early (a refused push); what it answers still goes back.
        (Err(e), _) if e.kind() == io::ErrorKind::BrokenPipe => true,
        (Err(e), _) => {
            tracing::debug!(error = %e, "git request body failed");
            false
        }
    }
}

fn tokio_stream_from(mut rx: mpsc::Receiver<io::Result<Bytes>>) -> BoxStream<'static, io::Result<Bytes>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

async fn push_outcome(git: &Git, log: &Path) -> Result<PushOutcome, RepoError> {
    let text = tokio::fs::read_to_string(log).await?;
    let mut outcome = PushOutcome::default();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(old), Some(new), Some(name)) = (parts.next(), parts.next(), parts.next()) else { continue };
        outcome.updates.push((name.to_owned(), old.to_owned(), new.to_owned()));
        if new == ZERO {
            continue;
        }
        let listed = if old == ZERO {
            let exclude = format!("--exclude={name}");
            git.run(&["rev-list", new, "--not", &exclude, "--all"]).await?
        } else {
            git.run(&["rev-list", new, &format!("^{old}")]).await?
        };
        for sha in listed.lines() {
            if !outcome.new_commits.iter().any(|s| s == sha) {
                outcome.new_commits.push(sha.to_owned());
            }
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route(false, "info/refs", Some("git-upload-pack")).unwrap(),
            GitRequest::InfoRefs(Service::UploadPack)
        );
        assert_eq!(route(true, "git-receive-pack", None).unwrap(), GitRequest::Rpc(Service::ReceivePack));
        assert!(route(false, "info/refs", Some("git-evil")).is_err());
        assert!(route(false, "HEAD", None).is_err());
        assert!(route(true, "objects/info/packs", None).is_err());
    }

    #[test]
    fn protocol_header() {
        assert_eq!(protocol(Some("version=2")).as_deref(), Some("version=2"));
        assert_eq!(protocol(Some("version=2:object-format=sha1")).as_deref(), Some("version=2:object-format=sha1"));
        assert_eq!(protocol(Some("version=2; rm -rf")), None);
        assert_eq!(protocol(Some("")), None);
    }

    #[test]
    fn pkt_lines() {
        assert_eq!(pkt_line("# service=git-upload-pack\n"), b"001e# service=git-upload-pack\n".to_vec());
    }
}
