//! The one HTTP layer under every outbound call (CXone, OCI registries, MLflow, the signed
//! artifact URLs): the timeouts and body caps, how a client is built, capped reads of an answer,
//! and how a failed exchange is described. Knows no API above it; imports only reqwest, bytes and
//! `crate::text`.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::text::truncate_chars;

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("cxone-skill-operator/", env!("CARGO_PKG_VERSION"));

// ---- timeouts ---------------------------------------------------------------------------------

/// How long an idle pooled connection is kept.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// CXone: connecting to the API or the token endpoint.
pub const CXONE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// CXone: a token request, answer included.
pub const CXONE_TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// CXone: a submission (the payload may be large).
pub const CXONE_SUBMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// CXone: a status request.
pub const CXONE_STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// CXone: an evaluation or export request.
pub const CXONE_RESULTS_TIMEOUT: Duration = Duration::from_secs(15);
/// CXone: a cancel request.
pub const CXONE_CANCEL_TIMEOUT: Duration = Duration::from_secs(10);

/// Registries and signed URLs: connecting.
pub const REGISTRY_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Registries and signed URLs: the longest wait for any single read (not a total: a large copy
/// may take much longer), and while streaming an upload, for any progress.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Registries: a request that carries no file (JSON calls, manifests, tokens, HEADs, upload
/// sessions), answer included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// OCI registries: one `PATCH` chunk of a streamed upload (or its final `PUT`).
pub const CHUNK_TIMEOUT: Duration = Duration::from_secs(600);
/// Registries: the best-effort cancel of an abandoned upload.
pub const ABANDON_TIMEOUT: Duration = Duration::from_secs(10);

// ---- body caps --------------------------------------------------------------------------------

/// Most of an error answer read, from any server (its code and message are all that is kept).
pub const MAX_ERROR_BODY: usize = 64 * 1024;
/// CXone: token, submit, status, export and cancel answers (small JSON documents).
pub const MAX_CXONE_SMALL_BODY: usize = 1024 * 1024;
/// CXone: evaluation answers, per-example arrays that grow with the validation split (why 16 MiB:
/// `crate::cxone::ResponseLimits`).
pub const MAX_CXONE_EVALUATION_BODY: usize = 16 * 1024 * 1024;
/// Registries: a JSON answer, an OCI manifest or index.
pub const MAX_JSON_BODY: usize = 4 * 1024 * 1024;
/// OCI registries: a token service's answer.
pub const MAX_TOKEN_BODY: usize = 64 * 1024;
/// Largest file copied from a signed URL: a bound on a source that never ends.
pub const MAX_SOURCE_BYTES: u64 = 64 * 1024 * 1024 * 1024;
/// Longest failure description or server message quoted in an error, in characters.
pub const MAX_DETAIL_CHARS: usize = 300;

// ---- clients ----------------------------------------------------------------------------------

/// Whether a client lets a redirect take a request elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redirects {
    /// Never: for APIs called with credentials (a redirect could carry them to another host, and
    /// a streamed upload cannot be sent twice).
    Never,
    /// Up to five: for signed URLs, which carry no credentials of ours (CDNs redirect).
    Follow,
}

/// A client with a connect timeout, an optional per-read timeout, the pool's idle timeout and
/// the redirect rule; `Err` holds why it could not be built.
pub fn client(
    connect_timeout: Duration,
    read_timeout: Option<Duration>,
    user_agent: &str,
    redirects: Redirects,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .user_agent(user_agent)
        .redirect(match redirects {
            Redirects::Never => reqwest::redirect::Policy::none(),
            Redirects::Follow => reqwest::redirect::Policy::limited(5),
        })
        .pool_idle_timeout(POOL_IDLE_TIMEOUT);
    if let Some(read_timeout) = read_timeout {
        builder = builder.read_timeout(read_timeout);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(e)))
}

/// A client for registries and signed URLs: [`REGISTRY_CONNECT_TIMEOUT`], [`READ_TIMEOUT`] on
/// every read, no total limit (each request sets its own where it has one).
pub fn registry_client(redirects: Redirects) -> Result<reqwest::Client, String> {
    client(
        REGISTRY_CONNECT_TIMEOUT,
        Some(READ_TIMEOUT),
        USER_AGENT,
        redirects,
    )
}

// ---- reading answers --------------------------------------------------------------------------

/// An answer's body read up to a limit.
#[derive(Debug, PartialEq, Eq)]
pub enum Capped {
    Complete(Bytes),
    /// The body (or its declared `Content-Length`) passed the limit; reading stopped there.
    TooLarge,
}

/// Reads `resp`'s body chunk by chunk, stopping as soon as it passes `limit` bytes. Dropping the
/// response then closes the connection, so the rest of the body is never transferred.
pub async fn read_capped(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Capped, reqwest::Error> {
    let declared = resp.content_length();
    if declared.is_some_and(|n| n > limit as u64) {
        return Ok(Capped::TooLarge);
    }
    // Trust the declared length for preallocation only up to 64 KiB.
    let mut out = BytesMut::with_capacity(declared.map_or(0, |n| n.min(64 * 1024) as usize));
    while let Some(chunk) = resp.chunk().await? {
        if chunk.len() > limit - out.len() {
            return Ok(Capped::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Capped::Complete(out.freeze()))
}

/// At most the first `limit` bytes of a body; the rest, and a body that breaks off, are dropped
/// (for quoting an error answer, where the status already says what happened).
pub async fn read_prefix(mut resp: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match resp.chunk().await {
            Ok(Some(piece)) => {
                let room = limit - body.len();
                body.extend_from_slice(&piece[..piece.len().min(room)]);
            }
            _ => break,
        }
    }
    body
}

// ---- failures ---------------------------------------------------------------------------------

/// What an exchange that got no complete answer ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportFailure {
    /// No answer (or no next piece of it) within a timeout.
    Timeout,
    /// The connection could not be made.
    Connect,
    /// Anything else: the connection broke, the answer was not HTTP, …
    Other,
}

impl TransportFailure {
    pub fn of(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            Self::Timeout
        } else if e.is_connect() {
            Self::Connect
        } else {
            Self::Other
        }
    }
}

/// `e` and its causes, `: `-separated, without any URL (a signed URL's query must not leak),
/// clipped to [`MAX_DETAIL_CHARS`].
pub fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    truncate_chars(&message, MAX_DETAIL_CHARS)
}

/// [`error_chain`] led by what kind of failure it was (`timed out: …`, `cannot connect: …`).
pub fn describe_transport(e: reqwest::Error) -> String {
    let lead = match TransportFailure::of(&e) {
        TransportFailure::Timeout => "timed out: ",
        TransportFailure::Connect => "cannot connect: ",
        TransportFailure::Other => "",
    };
    format!("{lead}{}", error_chain(e))
}

/// A tiny HTTP server on loopback for the unit tests of the HTTP callers.
#[cfg(test)]
pub(crate) mod loopback {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers each of its first `requests` requests with `answer` (a raw HTTP response, headers
    /// and body) on its own connection, then closes that connection. Returns `http://<addr>`.
    pub(crate) async fn serve(answer: Vec<u8>, requests: usize) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for _ in 0..requests {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                // The request head; a body is not read (the connection closes after the answer).
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = stream.write_all(&answer).await;
                let _ = stream.shutdown().await;
            }
        });
        format!("http://{addr}")
    }
}

#[cfg(test)]
mod tests {
    use super::loopback::serve;
    use super::*;

    async fn answering(answer: &'static [u8]) -> String {
        format!("{}/x?signature=s3cr3t", serve(answer.to_vec(), 1).await)
    }

    #[tokio::test]
    async fn capped_reads_stop_at_the_limit() {
        let http = registry_client(Redirects::Never).unwrap();
        let url =
            answering(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello")
                .await;
        let resp = http.get(&url).send().await.unwrap();
        assert_eq!(
            read_capped(resp, 5).await.unwrap(),
            Capped::Complete(Bytes::from_static(b"hello"))
        );
        // Declared too large: not read at all.
        let url =
            answering(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello")
                .await;
        let resp = http.get(&url).send().await.unwrap();
        assert_eq!(read_capped(resp, 4).await.unwrap(), Capped::TooLarge);
        // Undeclared (read to the end of the connection) and too large.
        let url = answering(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nhello").await;
        let resp = http.get(&url).send().await.unwrap();
        assert_eq!(read_capped(resp, 4).await.unwrap(), Capped::TooLarge);
        let url = answering(b"HTTP/1.1 500 No\r\nconnection: close\r\n\r\nhello").await;
        let resp = http.get(&url).send().await.unwrap();
        assert_eq!(read_prefix(resp, 3).await, b"hel");
    }

    #[tokio::test]
    async fn transport_failures_name_their_kind_and_never_the_url() {
        // A port nobody listens on: bind one, then drop it.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let http = registry_client(Redirects::Never).unwrap();
        let e = http
            .get(format!("http://{addr}/x?signature=s3cr3t"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(TransportFailure::of(&e), TransportFailure::Connect);
        let text = describe_transport(e);
        assert!(text.starts_with("cannot connect: "), "{text}");
        assert!(!text.contains("s3cr3t") && !text.contains("/x"), "{text}");
        assert!(text.chars().count() <= MAX_DETAIL_CHARS + 1, "{text}");
    }
}
