//! One call's conversation with an OCI registry ([`Session`]): requests with the credentials
//! that work (sent only to the registry's own origin), `Location` handling, blob existence and
//! in-memory uploads, manifests read and written, the referrers API and its fallback, the answer
//! to a `401` challenge (token service included), and the registry's refusals classified. Imports `crate::http`, the registry's shared types and the
//! sibling reference and manifest modules.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use super::auth::{
    Challenge, basic_header, bearer_header, parse_challenge, token_of, token_request,
};
use super::manifest::{Descriptor, fallback_tag, merge_fallback_index};
use super::reference::{OciTarget, sha256_hex};
use super::{OCI_INDEX_MEDIA_TYPE, OciRegistry};
use crate::http::{
    CALL_TIMEOUT, CHUNK_TIMEOUT, MAX_DETAIL_CHARS, MAX_ERROR_BODY, MAX_JSON_BODY, MAX_TOKEN_BODY,
    describe_transport, read_prefix,
};
use crate::registry::{RegistryAuth, RegistryError, read_answer, redact_url};
use crate::text::truncate_chars;

/// A manifest as fetched: bytes, their digest and media type.
pub(super) struct Fetched {
    pub(super) bytes: Bytes,
    pub(super) digest: String,
    pub(super) media_type: String,
}

/// The outcome of a manifest PUT.
pub(super) struct PutManifest {
    pub(super) digest: String,
    /// The `OCI-Subject` header: the registry processed the manifest's subject (referrers API).
    pub(super) oci_subject: Option<String>,
}

/// One call's conversation with a registry: the credentials, and the `Authorization` header
/// found to work (kept for the call only).
pub(super) struct Session<'a> {
    pub(super) reg: &'a OciRegistry,
    pub(super) target: &'a OciTarget,
    pub(super) auth: &'a RegistryAuth,
    pub(super) base: Url,
    /// `pull` or `pull,push`: the scope asked of a token service.
    pub(super) actions: &'static str,
    pub(super) authorization: Option<HeaderValue>,
}

impl<'a> Session<'a> {
    pub(super) fn new(
        reg: &'a OciRegistry,
        target: &'a OciTarget,
        auth: &'a RegistryAuth,
        actions: &'static str,
    ) -> Result<Self, RegistryError> {
        let base = target.base_url()?;
        // Basic credentials and bearer tokens are offered up front; a challenge may replace
        // them (a token service).
        let authorization = match auth {
            RegistryAuth::Anonymous => None,
            RegistryAuth::Basic { username, password } => Some(basic_header(username, password)?),
            RegistryAuth::Bearer { token } => Some(bearer_header(token)?),
        };
        Ok(Self {
            reg,
            target,
            auth,
            base,
            actions,
            authorization,
        })
    }

    /// `/v2/<repository>/<rest>` on the registry.
    pub(super) fn url(&self, rest: &str) -> Result<Url, RegistryError> {
        self.base
            .join(&format!("v2/{}/{rest}", self.target.repository))
            .map_err(|e| RegistryError::Rejected(format!("cannot build a registry URL: {e}")))
    }

    /// A `Location` header resolved against the registry (it may be relative).
    pub(super) fn location(
        &self,
        resp: &reqwest::Response,
        what: &str,
    ) -> Result<Url, RegistryError> {
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                RegistryError::Rejected(format!(
                    "{what}: the registry answered {} without a usable Location header",
                    resp.status()
                ))
            })?;
        let url = self.base.join(location).map_err(|e| {
            RegistryError::Rejected(format!(
                "{what}: the registry's Location header is not a URL: {e}"
            ))
        })?;
        // Model data goes where the registry says, but never from HTTPS down to plain HTTP
        // (credentials are only sent to the registry's own origin, see `send`).
        let scheme_ok =
            url.scheme() == "https" || (url.scheme() == "http" && self.target.plain_http);
        if !scheme_ok {
            return Err(RegistryError::Rejected(format!(
                "{what}: the registry's Location {} is not HTTPS",
                redact_url(url.as_str())
            )));
        }
        Ok(url)
    }

    pub(super) fn same_origin(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }

    /// Sends a request (credentials attached when it goes to the registry itself), answering a
    /// `401` challenge once. Returns the response whatever its status; transport failures are
    /// `Unreachable`.
    pub(super) async fn send(
        &mut self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<Bytes>,
        timeout: Duration,
        what: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut challenged = false;
        loop {
            let mut req = self
                .reg
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone())
                .timeout(timeout);
            if let Some(auth) = &self.authorization
                && self.same_origin(&url)
            {
                req = req.header(header::AUTHORIZATION, auth.clone());
            }
            req = match &body {
                Some(b) => req.body(b.clone()),
                None if method == Method::PUT
                    || method == Method::POST
                    || method == Method::PATCH =>
                {
                    req.header(header::CONTENT_LENGTH, "0")
                }
                None => req,
            };
            let resp = req.send().await.map_err(|e| {
                RegistryError::Unreachable(format!("{what}: {}", describe_transport(e)))
            })?;
            if resp.status() != StatusCode::UNAUTHORIZED || challenged || !self.same_origin(&url) {
                return Ok(resp);
            }
            challenged = true;
            self.answer_challenge(&resp, what).await?;
        }
    }

    /// Sets [`Self::authorization`] from a 401's `WWW-Authenticate` challenge.
    pub(super) async fn answer_challenge(
        &mut self,
        resp: &reqwest::Response,
        what: &str,
    ) -> Result<(), RegistryError> {
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(parse_challenge)
            .collect();
        let bearer = challenges.iter().find_map(|c| match c {
            Challenge::Bearer { realm, service } => Some((realm.clone(), service.clone())),
            Challenge::Basic => None,
        });
        if let Some((realm, service)) = bearer {
            let token = self.fetch_token(&realm, service.as_deref(), what).await?;
            self.authorization = Some(bearer_header(&token)?);
            return Ok(());
        }
        let basic = challenges.iter().any(|c| matches!(c, Challenge::Basic));
        match (basic, self.auth) {
            // Basic credentials were already sent with the refused request.
            (true, RegistryAuth::Basic { username, .. }) => Err(RegistryError::Auth(format!(
                "{what}: the registry refused the password of user {:?} (HTTP 401)",
                truncate_chars(username, 64)
            ))),
            (true, RegistryAuth::Anonymous) => Err(RegistryError::Auth(format!(
                "{what}: the registry requires a user name and password (HTTP 401), and none were given"
            ))),
            (true, RegistryAuth::Bearer { .. }) => Err(RegistryError::Auth(format!(
                "{what}: the registry refused the bearer token and asks for a user name and password (HTTP 401)"
            ))),
            (false, _) => Err(RegistryError::Auth(format!(
                "{what}: the registry answered HTTP 401 without a Basic or Bearer challenge"
            ))),
        }
    }

    /// The token flow of a `Bearer realm=…,service=…` challenge: GET the realm (with Basic
    /// credentials when configured), or exchange an identity token (OAuth2 refresh_token grant).
    pub(super) async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        what: &str,
    ) -> Result<String, RegistryError> {
        let scope = format!("repository:{}:{}", self.target.repository, self.actions);
        let shown = redact_url(realm);
        let request = token_request(
            &self.reg.http,
            self.target,
            self.auth,
            realm,
            service,
            &scope,
            what,
        )?;
        let resp = request.timeout(CALL_TIMEOUT).send().await.map_err(|e| {
            RegistryError::Unreachable(format!(
                "{what}: token service {shown}: {}",
                describe_transport(e)
            ))
        })?;
        let status = resp.status();
        if !status.is_success() {
            let detail = error_detail(resp).await;
            return Err(classify(
                status,
                &format!("{what}: the token service {shown} refused to issue a token for {scope}"),
                &detail,
            ));
        }
        let body = read_answer(resp, MAX_TOKEN_BODY, what).await?;
        token_of(&body).map_err(|why| {
            RegistryError::Rejected(format!("{what}: the token service {shown} answered {why}"))
        })
    }

    /// Fails with the registry's answer classified, unless its status is `expected`.
    pub(super) async fn expect(
        &self,
        resp: reqwest::Response,
        expected: &[StatusCode],
        what: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        if expected.contains(&resp.status()) {
            return Ok(resp);
        }
        let status = resp.status();
        let detail = error_detail(resp).await;
        Err(classify(status, what, &detail))
    }

    /// HEAD a blob: true when the registry has it.
    pub(super) async fn has_blob(
        &mut self,
        digest: &str,
        what: &str,
    ) -> Result<bool, RegistryError> {
        let url = self.url(&format!("blobs/{digest}"))?;
        let resp = self
            .send(
                Method::HEAD,
                url,
                HeaderMap::new(),
                None,
                CALL_TIMEOUT,
                what,
            )
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => self.expect(resp, &[], what).await.map(|_| false),
        }
    }

    /// `POST /v2/<repo>/blobs/uploads/` → the upload's location.
    pub(super) async fn start_upload(&mut self, what: &str) -> Result<Url, RegistryError> {
        let url = self.url("blobs/uploads/")?;
        let resp = self
            .send(
                Method::POST,
                url,
                HeaderMap::new(),
                None,
                CALL_TIMEOUT,
                what,
            )
            .await?;
        let resp = self.expect(resp, &[StatusCode::ACCEPTED], what).await?;
        self.location(&resp, what)
    }

    /// `PUT <location>?digest=…` with the last bytes (possibly none): completes an upload.
    pub(super) async fn finish_upload(
        &mut self,
        location: Url,
        digest: &str,
        body: Option<Bytes>,
        what: &str,
    ) -> Result<(), RegistryError> {
        let mut url = location;
        url.query_pairs_mut().append_pair("digest", digest);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let accepted = [StatusCode::CREATED, StatusCode::NO_CONTENT, StatusCode::OK];
        let stored = Stored {
            kind: "blob",
            digest,
            accepted: &accepted,
        };
        self.put_stored(url, headers, body, CHUNK_TIMEOUT, stored, what)
            .await?;
        Ok(())
    }

    /// A `PUT` whose answer must be one of `stored.accepted` and name `stored.digest` (when the
    /// registry names one).
    async fn put_stored(
        &mut self,
        url: Url,
        headers: HeaderMap,
        body: Option<Bytes>,
        timeout: Duration,
        stored: Stored<'_>,
        what: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let resp = self
            .send(Method::PUT, url, headers, body, timeout, what)
            .await?;
        let resp = self.expect(resp, stored.accepted, what).await?;
        stored_as(&resp, stored.digest, stored.kind, what)?;
        Ok(resp)
    }

    /// Uploads a blob held in memory, unless the registry has it already.
    pub(super) async fn put_blob(&mut self, data: &[u8], what: &str) -> Result<(), RegistryError> {
        let digest = sha256_hex(data);
        if self.has_blob(&digest, what).await? {
            return Ok(());
        }
        let location = self.start_upload(what).await?;
        self.finish_upload(location, &digest, Some(Bytes::copy_from_slice(data)), what)
            .await
    }

    /// GET a manifest by tag or digest; `None` when it does not exist. Reads at most 4 MiB and
    /// checks the content against a requested digest.
    pub(super) async fn get_manifest(
        &mut self,
        reference: &str,
    ) -> Result<Option<Fetched>, RegistryError> {
        let separator = if reference.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        let what = format!(
            "fetching {}/{}{separator}{reference}",
            self.target.registry, self.target.repository
        );
        let url = self.url(&format!("manifests/{reference}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
            ),
        );
        let resp = self
            .send(Method::GET, url, headers, None, CALL_TIMEOUT, &what)
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.expect(resp, &[StatusCode::OK], &what).await?;
        let content_type = header_str(&resp, "content-type").map(str::to_string);
        let bytes = read_answer(resp, MAX_JSON_BODY, &what).await?;
        let digest = sha256_hex(&bytes);
        if reference.starts_with("sha256:") && digest != reference {
            return Err(RegistryError::Rejected(format!(
                "{what}: the registry answered content of digest {digest}"
            )));
        }
        // The manifest's own mediaType wins over the Content-Type header.
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct MediaType {
            media_type: Option<String>,
        }
        let media_type = serde_json::from_slice::<MediaType>(&bytes)
            .ok()
            .and_then(|m| m.media_type)
            .or(content_type)
            .unwrap_or_default();
        Ok(Some(Fetched {
            bytes,
            digest,
            media_type,
        }))
    }

    /// `PUT /v2/<repo>/manifests/<reference>`; checks `Docker-Content-Digest` against our hash.
    pub(super) async fn put_manifest(
        &mut self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
        what: &str,
    ) -> Result<PutManifest, RegistryError> {
        let digest = sha256_hex(bytes);
        let url = self.url(&format!("manifests/{reference}"))?;
        let mut headers = HeaderMap::new();
        let content_type = HeaderValue::from_str(media_type).map_err(|_| {
            RegistryError::Rejected(format!(
                "{what}: media type {media_type:?} is not a header value"
            ))
        })?;
        headers.insert(header::CONTENT_TYPE, content_type);
        let accepted = [StatusCode::CREATED, StatusCode::OK, StatusCode::ACCEPTED];
        let stored = Stored {
            kind: "manifest",
            digest: &digest,
            accepted: &accepted,
        };
        let body = Some(Bytes::copy_from_slice(bytes));
        let resp = self
            .put_stored(url, headers, body, CALL_TIMEOUT, stored, what)
            .await?;
        Ok(PutManifest {
            digest,
            oci_subject: header_str(&resp, "oci-subject").map(str::to_string),
        })
    }

    /// Whether `GET /v2/<repo>/referrers/<digest>` exists (404: no referrers API).
    pub(super) async fn referrers_api(&mut self, digest: &str) -> Result<bool, RegistryError> {
        let what = &format!(
            "checking {}/{} for the referrers API",
            self.target.registry, self.target.repository
        );
        let url = self.url(&format!("referrers/{digest}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(OCI_INDEX_MEDIA_TYPE),
        );
        let resp = self
            .send(Method::GET, url, headers, None, CALL_TIMEOUT, what)
            .await?;
        match resp.status() {
            StatusCode::OK => {
                let is_index = header_str(&resp, "content-type")
                    .is_some_and(|t| t.starts_with(OCI_INDEX_MEDIA_TYPE));
                Ok(is_index)
            }
            StatusCode::NOT_FOUND => Ok(false),
            _ => self.expect(resp, &[], what).await.map(|_| false),
        }
    }

    /// The referrers tag-schema fallback: `referrer` listed in the index under `sha256-<hex>`.
    pub(super) async fn update_fallback_index(
        &mut self,
        subject_digest: &str,
        referrer: &Descriptor,
    ) -> Result<(), RegistryError> {
        let tag = fallback_tag(subject_digest);
        let existing = self.get_manifest(&tag).await?;
        let merged = merge_fallback_index(existing.as_ref().map(|f| &f.bytes[..]), referrer)
            .map_err(|e| {
                RegistryError::Rejected(format!("{}:{tag}: {e}", self.target.repository))
            })?;
        if let Some(index) = merged {
            self.put_manifest(
                &tag,
                OCI_INDEX_MEDIA_TYPE,
                &index,
                &format!(
                    "pushing the referrers fallback index {}:{tag}",
                    self.target.repository
                ),
            )
            .await?;
        }
        Ok(())
    }
}

/// The registry stored the `kind` under the digest it was sent as (its `Docker-Content-Digest`,
/// when it answers one).
/// What a `PUT` stores: its kind (for messages), its digest, and the answers that mean stored.
struct Stored<'a> {
    kind: &'static str,
    digest: &'a str,
    accepted: &'a [StatusCode],
}

pub(super) fn stored_as(
    resp: &reqwest::Response,
    digest: &str,
    kind: &str,
    what: &str,
) -> Result<(), RegistryError> {
    match header_str(resp, "docker-content-digest") {
        Some(answered) if answered != digest => Err(RegistryError::Rejected(format!(
            "{what}: the registry stored the {kind} as {}, not {digest}",
            truncate_chars(answered, 80)
        ))),
        _ => Ok(()),
    }
}

pub(super) fn header_str<'r>(resp: &'r reqwest::Response, name: &str) -> Option<&'r str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The registry's error code and message from at most 64 KiB of an error body: the OCI error
/// envelope's `CODE: message` entries, or the start of a plain-text body.
pub(super) async fn error_detail(resp: reqwest::Response) -> String {
    detail_of(&read_prefix(resp, MAX_ERROR_BODY).await)
}

pub(super) fn detail_of(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        errors: Vec<EnvelopeError>,
    }
    #[derive(Deserialize)]
    struct EnvelopeError {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let text = match serde_json::from_slice::<Envelope>(body) {
        Ok(envelope) if !envelope.errors.is_empty() => envelope
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                _ => e.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate_chars(clean.trim(), MAX_DETAIL_CHARS)
}

/// A registry's non-success answer as a [`RegistryError`]: 401/403 `Auth`; 429 and 5xx
/// `Unreachable`; everything else `Rejected`.
pub(super) fn classify(status: StatusCode, what: &str, detail: &str) -> RegistryError {
    let message = if detail.is_empty() {
        format!("{what}: HTTP {status}")
    } else {
        format!("{what}: HTTP {status}: {detail}")
    };
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Auth(message),
        StatusCode::TOO_MANY_REQUESTS => RegistryError::Unreachable(message),
        s if s.is_server_error() => RegistryError::Unreachable(message),
        _ => RegistryError::Rejected(message),
    }
}
