//! The one download from a signed URL (the CXone export's artifact URLs), used by both registry
//! targets: its client, the one rule for a URL that no longer serves its file, the one size cap,
//! and the byte count against the declared length. Imports `crate::http` and the registry's
//! shared types.
//!
//! The rule: 401, 403, 404 and 410 mean the URL is spent ([`RegistryError::SourceExpired`]: export
//! again for fresh URLs, then retry). A signed URL carries its authorisation in its query and we
//! send no credentials with it, so a 401 or 403 can only mean the signature is not (or no longer)
//! accepted (S3, CloudFront and Azure answer an expired or tampered signature with 403, token
//! gateways in front of a CDN with 401, the simulator with 403), and a 404 or 410 that the
//! file behind it is gone. Retrying the same URL cannot help in any of these cases; a fresh export
//! can. Any other failure is [`RegistryError::Source`], retried with backoff.

use bytes::Bytes;
use reqwest::StatusCode;

use super::{RegistryError, redact_url};
use crate::http::{self, MAX_SOURCE_BYTES, Redirects, describe_transport};

/// The client for signed URLs: no credentials, redirects followed (CDNs use them), the registry
/// timeouts.
pub(crate) fn client() -> Result<reqwest::Client, RegistryError> {
    http::registry_client(Redirects::Follow).map_err(RegistryError::Rejected)
}

/// Whether a signed URL's answer says the URL is spent (see the module documentation).
pub(crate) fn is_spent(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND | StatusCode::GONE
    )
}

/// One file being downloaded from a signed URL: its pieces in order, counted against the length
/// the source declared and against [`MAX_SOURCE_BYTES`]. Errors name the URL only redacted.
pub(crate) struct Download {
    response: reqwest::Response,
    declared: Option<u64>,
    received: u64,
    limit: u64,
    /// What the download is for, leading every message (e.g. `pushing model-weights.json to …`).
    what: String,
    /// The URL, redacted.
    shown: String,
}

impl Download {
    /// `GET url`: the download, once the source answered with success and a size within the cap.
    pub(crate) async fn start(
        client: &reqwest::Client,
        url: &str,
        what: &str,
    ) -> Result<Self, RegistryError> {
        Self::start_capped(client, url, what, MAX_SOURCE_BYTES).await
    }

    async fn start_capped(
        client: &reqwest::Client,
        url: &str,
        what: &str,
        limit: u64,
    ) -> Result<Self, RegistryError> {
        let shown = redact_url(url);
        let response = client.get(url).send().await.map_err(|e| {
            RegistryError::Source(format!("{what}: GET {shown}: {}", describe_transport(e)))
        })?;
        let status = response.status();
        if is_spent(status) {
            return Err(RegistryError::SourceExpired(format!(
                "{what}: GET {shown} answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(RegistryError::Source(format!(
                "{what}: GET {shown} answered {status}"
            )));
        }
        let declared = response.content_length();
        if let Some(n) = declared.filter(|n| *n > limit) {
            return Err(RegistryError::Source(format!(
                "{what}: GET {shown} announces {n} bytes, more than the {limit} copied at most"
            )));
        }
        Ok(Self {
            response,
            declared,
            received: 0,
            limit,
            what: what.to_string(),
            shown,
        })
    }

    /// The length the source declared (`Content-Length`), if it did.
    pub(crate) fn declared(&self) -> Option<u64> {
        self.declared
    }

    /// Bytes received so far.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// The next piece as it arrived; `None` at the end, once the count matches the declared
    /// length. More bytes than declared (or than the cap), fewer than declared, or a broken
    /// connection are [`RegistryError::Source`].
    pub(crate) async fn next_piece(&mut self) -> Result<Option<Bytes>, RegistryError> {
        match self.response.chunk().await {
            Ok(Some(piece)) => {
                self.received = self.received.saturating_add(piece.len() as u64);
                let most = self.declared.unwrap_or(self.limit).min(self.limit);
                if self.received > most {
                    return Err(RegistryError::Source(format!(
                        "{}: GET {} sent more than {most} bytes",
                        self.what, self.shown
                    )));
                }
                Ok(Some(piece))
            }
            Ok(None) => match self.declared {
                Some(n) if n != self.received => Err(RegistryError::Source(format!(
                    "{}: GET {} declared {n} bytes but sent {}",
                    self.what, self.shown, self.received
                ))),
                _ => Ok(None),
            },
            Err(e) => Err(RegistryError::Source(format!(
                "{}: the download from {} broke off after {} bytes: {}",
                self.what,
                self.shown,
                self.received,
                describe_transport(e)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-shot source on loopback answering `head` (status line and headers) and `body`.
    async fn source(head: String, body: Vec<u8>) -> String {
        let mut answer = format!("{head}\r\nconnection: close\r\n\r\n").into_bytes();
        answer.extend_from_slice(&body);
        let base = crate::http::loopback::serve(answer, 1).await;
        format!("{base}/w.json?expires=1&signature=s3cr3t-sig")
    }

    async fn read_all(d: &mut Download) -> Result<Vec<u8>, RegistryError> {
        let mut out = Vec::new();
        while let Some(piece) = d.next_piece().await? {
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }

    #[test]
    fn one_rule_for_a_spent_url() {
        for spent in [401, 403, 404, 410] {
            assert!(is_spent(StatusCode::from_u16(spent).unwrap()), "{spent}");
        }
        for other in [200, 400, 408, 429, 500, 502, 503] {
            assert!(!is_spent(StatusCode::from_u16(other).unwrap()), "{other}");
        }
    }

    /// The rule that changed for the OCI target (it treated 401 as a plain download failure):
    /// a 401 from the signed URL is a spent URL, like a 403.
    #[tokio::test]
    async fn a_refused_signature_is_a_spent_url() {
        let client = client().unwrap();
        for status in ["401 Unauthorized", "403 Forbidden", "410 Gone"] {
            let url = source(format!("HTTP/1.1 {status}\r\ncontent-length: 0"), vec![]).await;
            let Err(e) = Download::start(&client, &url, "pushing w.json").await else {
                panic!("{status} started a download");
            };
            assert!(matches!(e, RegistryError::SourceExpired(_)), "{e:?}");
            let text = e.to_string();
            assert!(text.contains(&status[..3]), "{text}");
            assert!(
                text.contains("/w.json?…") && !text.contains("s3cr3t"),
                "{text}"
            );
        }
        let url = source("HTTP/1.1 503 No".into(), vec![]).await;
        let Err(e) = Download::start(&client, &url, "x").await else {
            panic!("a 503 started a download");
        };
        assert!(matches!(e, RegistryError::Source(_)), "{e:?}");
    }

    #[tokio::test]
    async fn the_count_is_checked_against_the_declared_length_and_the_cap() {
        let client = client().unwrap();
        let url = source(
            "HTTP/1.1 200 OK\r\ncontent-length: 5".into(),
            b"hello".to_vec(),
        )
        .await;
        let mut d = Download::start(&client, &url, "x").await.unwrap();
        assert_eq!(d.declared(), Some(5));
        assert_eq!(read_all(&mut d).await.unwrap(), b"hello");
        assert_eq!(d.received(), 5);

        let url = source(
            "HTTP/1.1 200 OK\r\ncontent-length: 9".into(),
            b"hello".to_vec(),
        )
        .await;
        let mut d = Download::start(&client, &url, "x").await.unwrap();
        // Short: the connection ends before the declared length (hyper notices first).
        let e = read_all(&mut d).await.unwrap_err();
        assert!(matches!(e, RegistryError::Source(_)), "{e:?}");
        assert!(e.to_string().contains("after 5 bytes"), "{e}");

        // Declared beyond the cap: refused before anything is read.
        let url = source(
            "HTTP/1.1 200 OK\r\ncontent-length: 5".into(),
            b"hello".to_vec(),
        )
        .await;
        let Err(e) = Download::start_capped(&client, &url, "x", 4).await else {
            panic!("a declared size over the cap started a download");
        };
        assert!(matches!(e, RegistryError::Source(_)), "{e:?}");
        // Undeclared and endless: stopped at the cap.
        let url = source("HTTP/1.1 200 OK".into(), b"hello".to_vec()).await;
        let mut d = Download::start_capped(&client, &url, "x", 4).await.unwrap();
        let e = read_all(&mut d).await.unwrap_err();
        assert!(e.to_string().contains("sent more than 4 bytes"), "{e}");
    }
}
