//! Moving files into a run's artifacts through the tracking server's artifact proxy: a file
//! streamed from a signed URL (via [`crate::registry::source::Download`]) with a stall limit, the
//! documents uploaded from memory, and the sizes the server stored checked. Imports
//! `crate::http`, the registry's shared types and the sibling client, keys and wire modules.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use reqwest::Method;
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use super::Mlflow;
use super::api::{Api, ArtifactRoot, parse};
use super::keys::file_size;
use super::wire::Listing;
use crate::http::{CALL_TIMEOUT, READ_TIMEOUT, describe_transport};
use crate::registry::source::Download;
use crate::registry::{RegistryError, redact_url};

impl Mlflow {
    /// Streams one file from a signed URL into an artifact root; returns its size and the hex
    /// sha256 of what was sent.
    pub(super) async fn copy_from_source(
        &self,
        api: &Api<'_>,
        root: &ArtifactRoot,
        path: &str,
        url: &str,
    ) -> Result<(u64, String), RegistryError> {
        let what = format!("copying {path} into the model's artifacts");
        let download = Download::start(&self.source, url, &what).await?;
        let declared = download.declared();
        let progress = Arc::new(Progress::new());
        let failure = Arc::new(Mutex::new(None));
        let hasher = Arc::new(Mutex::new(Sha256::new()));
        let body = metered(download, progress.clone(), failure.clone(), hasher.clone());
        let target = root.file_url(path);
        let mut request = self
            .api
            .put(target.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(reqwest::Body::wrap_stream(body));
        // The server takes a chunked body too; the declared length lets any proxy in front of
        // it (and the server's own limits) see the size up front.
        if let Some(len) = declared {
            request = request.header(reqwest::header::CONTENT_LENGTH, len);
        }
        let request = api.authorize(request);
        let sent = stall_limited(request.send(), &progress, READ_TIMEOUT).await;
        // A broken download is reported as such, whatever the upload made of it.
        if let Some(e) = failure.lock().ok().and_then(|mut f| f.take()) {
            return Err(e);
        }
        let response = match sent {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                return Err(RegistryError::Unreachable(format!(
                    "upload {}: {}",
                    redact_url(target.as_str()),
                    describe_transport(e)
                )));
            }
            None => {
                return Err(RegistryError::Unreachable(format!(
                    "upload {}: no progress for {} s",
                    redact_url(target.as_str()),
                    READ_TIMEOUT.as_secs()
                )));
            }
        };
        api.expect_success(response, &target, "upload an artifact")
            .await?;
        let digest = match hasher.lock() {
            Ok(mut h) => hex::encode(std::mem::take(&mut *h).finalize()),
            Err(_) => {
                return Err(RegistryError::Source(
                    "the download's digest was lost (a panic while hashing)".into(),
                ));
            }
        };
        Ok((progress.bytes.load(Ordering::Relaxed), digest))
    }

    pub(super) async fn upload(
        &self,
        api: &Api<'_>,
        root: &ArtifactRoot,
        path: &str,
        bytes: &[u8],
        content_type: &str,
    ) -> Result<(), RegistryError> {
        let target = root.file_url(path);
        let request = api.authorize(
            self.api
                .put(target.clone())
                .timeout(CALL_TIMEOUT)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes.to_vec()),
        );
        let response = request.send().await.map_err(|e| {
            RegistryError::Unreachable(format!(
                "upload {}: {}",
                redact_url(target.as_str()),
                describe_transport(e)
            ))
        })?;
        api.expect_success(response, &target, "upload an artifact")
            .await
    }

    /// Compares the sizes the server stored with the bytes sent (a server that dropped a
    /// body would otherwise go unnoticed).
    pub(super) async fn check_sizes(
        &self,
        api: &Api<'_>,
        root: &ArtifactRoot,
        expected: &BTreeMap<String, u64>,
    ) -> Result<(), RegistryError> {
        let mut stored: BTreeMap<String, Option<u64>> = BTreeMap::new();
        let dirs: HashSet<&str> = expected
            .keys()
            .map(|p| p.rsplit_once('/').map_or("", |(d, _)| d))
            .collect();
        let mut dirs: Vec<&str> = dirs.into_iter().collect();
        dirs.sort_unstable();
        for dir in dirs {
            let listing_path = root.listing_path(dir);
            let url = api.endpoint("api/2.0/mlflow-artifacts/artifacts");
            let listing: Listing = self
                .call(api, Method::GET, url, &[("path", &listing_path)], None)
                .await
                .map_err(|e| e.classify("list the uploaded artifacts"))
                .and_then(|v| parse(v, "mlflow-artifacts/artifacts"))?;
            for f in listing.files {
                let name = f.path.rsplit('/').next().unwrap_or_default().to_string();
                let key = if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                };
                stored.insert(key, file_size(&f.file_size));
            }
        }
        for (path, size) in expected {
            match stored.get(path) {
                Some(Some(s)) if s == size => {}
                Some(Some(s)) => {
                    return Err(RegistryError::Unreachable(format!(
                        "the server stored {s} bytes of {path}, {size} were sent; try again"
                    )));
                }
                Some(None) => {}
                None => {
                    return Err(RegistryError::Unreachable(format!(
                        "the server does not list {path} after its upload; try again"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// When an upload last made progress, and how many bytes it passed on.
pub(super) struct Progress {
    start: Instant,
    last_ms: AtomicU64,
    bytes: AtomicU64,
}

impl Progress {
    pub(super) fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    pub(super) fn touch(&self, bytes: u64) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
    }

    pub(super) fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Runs `fut` while it keeps making progress: `None` once nothing moved for `limit`.
pub(super) async fn stall_limited<F: std::future::Future>(
    fut: F,
    progress: &Progress,
    limit: Duration,
) -> Option<F::Output> {
    tokio::pin!(fut);
    let check = (limit / 4).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            out = &mut fut => return Some(out),
            _ = tokio::time::sleep(check) => {
                if progress.idle() > limit {
                    return None;
                }
            }
        }
    }
}

/// The download's pieces as an upload body, with progress recorded. A failure of the download
/// ends the body and is kept in `failure` for the caller (the upload itself only sees "the body
/// failed").
pub(super) fn metered(
    download: Download,
    progress: Arc<Progress>,
    failure: Arc<Mutex<Option<RegistryError>>>,
    hasher: Arc<Mutex<Sha256>>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold(Some(download), move |state| {
        let progress = progress.clone();
        let failure = failure.clone();
        let hasher = hasher.clone();
        async move {
            let mut download = state?;
            match download.next_piece().await {
                Ok(Some(piece)) => {
                    if let Ok(mut h) = hasher.lock() {
                        h.update(&piece);
                    }
                    progress.touch(download.received());
                    Some((Ok(piece), Some(download)))
                }
                Ok(None) => None,
                Err(e) => {
                    let message = e.to_string();
                    if let Ok(mut slot) = failure.lock() {
                        slot.get_or_insert(e);
                    }
                    Some((Err(std::io::Error::other(message)), None))
                }
            }
        }
    })
}
