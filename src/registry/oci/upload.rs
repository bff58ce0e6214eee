//! Streaming a file from a signed URL into an OCI blob: a chunked upload fed by
//! [`crate::registry::source::Download`], one chunk sent while the next is read, sha256 and size
//! on the way. Imports `crate::http`, the registry's shared types and [`super::session`].

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use sha2::{Digest as _, Sha256};

use super::manifest::Descriptor;
use super::session::Session;
use crate::http::{ABANDON_TIMEOUT, CHUNK_TIMEOUT};
use crate::registry::RegistryError;
use crate::registry::source::Download;

impl Session<'_> {
    /// Streams a file from a signed URL into a blob: chunked upload, sha256 and byte count on the
    /// way, size checked against the source's Content-Length. Returns the blob's descriptor
    /// (media type `application/octet-stream`, to be replaced by the caller).
    pub(super) async fn copy_from_source(
        &mut self,
        url: &str,
        what: &str,
    ) -> Result<Descriptor, RegistryError> {
        // The registry first: refused credentials or a registry that is down are found before
        // anything is downloaded.
        let location = self.start_upload(what).await?;
        let mut last_location = location.clone();
        let result = self
            .stream_source(url, location, &mut last_location, what)
            .await;
        if result.is_err() {
            // Best effort: the registry would expire the abandoned upload anyway.
            let headers = self.auth_headers_for(&last_location);
            let _ = self
                .reg
                .http
                .delete(last_location)
                .headers(headers)
                .timeout(ABANDON_TIMEOUT)
                .send()
                .await;
        }
        result
    }

    /// The `Authorization` header of this session for `url` (none for another origin), for a
    /// request that bypasses [`Self::send`].
    pub(super) fn auth_headers_for(&self, url: &Url) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(auth) = &self.authorization
            && self.same_origin(url)
        {
            headers.insert(header::AUTHORIZATION, auth.clone());
        }
        headers
    }

    /// Downloads `url` and uploads it at `location` chunk by chunk; `last_location` follows the
    /// upload (to cancel it on failure).
    async fn stream_source(
        &mut self,
        url: &str,
        mut location: Url,
        last_location: &mut Url,
        what: &str,
    ) -> Result<Descriptor, RegistryError> {
        let mut reader = SourceReader {
            download: Download::start(&self.reg.source, url, what).await?,
            pending: Bytes::new(),
            hasher: Sha256::new(),
        };
        let chunk_bytes = self.reg.chunk_bytes;
        let mut offset: u64 = 0;
        let mut current = reader.next_chunk(chunk_bytes).await?;
        while !current.is_empty() {
            // Send this chunk while reading the next one.
            let len = current.len() as u64;
            *last_location = location.clone();
            let patch = self.patch_chunk(location, current, offset, what);
            let (patched, next) = tokio::join!(patch, reader.next_chunk(chunk_bytes));
            location = patched?;
            current = next?;
            offset += len;
        }
        *last_location = location.clone();
        let digest = format!("sha256:{}", hex::encode(reader.hasher.finalize()));
        self.finish_upload(location, &digest, None, what).await?;
        Ok(Descriptor {
            media_type: "application/octet-stream".into(),
            digest,
            size: offset,
            artifact_type: None,
            annotations: BTreeMap::new(),
        })
    }

    /// One `PATCH` of a chunked upload; returns the location for the next request.
    pub(super) async fn patch_chunk(
        &mut self,
        location: Url,
        chunk: Bytes,
        offset: u64,
        what: &str,
    ) -> Result<Url, RegistryError> {
        let end = offset + chunk.len() as u64 - 1;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        // `Content-Range: <start>-<end>` (inclusive, without a unit), as the distribution API
        // has it.
        let range = HeaderValue::from_str(&format!("{offset}-{end}"))
            .map_err(|e| RegistryError::Rejected(format!("{what}: {e}")))?;
        headers.insert(header::CONTENT_RANGE, range);
        let resp = self
            .send(
                Method::PATCH,
                location,
                headers,
                Some(chunk),
                CHUNK_TIMEOUT,
                what,
            )
            .await?;
        let resp = self.expect(resp, &[StatusCode::ACCEPTED], what).await?;
        self.location(&resp, what)
    }
}

/// A download handed out in chunks of a given size, hashed on the way.
pub(super) struct SourceReader {
    download: Download,
    /// Bytes downloaded and not yet handed out.
    pending: Bytes,
    hasher: Sha256,
}

impl SourceReader {
    /// The next `max` bytes (fewer at the end; empty when the file is done).
    pub(super) async fn next_chunk(&mut self, max: usize) -> Result<Bytes, RegistryError> {
        let mut buf = BytesMut::with_capacity(max);
        loop {
            if !self.pending.is_empty() {
                let take = self.pending.len().min(max - buf.len());
                buf.extend_from_slice(&self.pending.split_to(take));
                if buf.len() == max {
                    break;
                }
            }
            match self.download.next_piece().await? {
                Some(piece) => {
                    self.hasher.update(&piece);
                    self.pending = piece;
                }
                None => break,
            }
        }
        Ok(buf.freeze())
    }
}
