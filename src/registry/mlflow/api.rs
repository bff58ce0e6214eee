//! Talking to an MLflow tracking server: one JSON call ([`Api`], the credentials, MLflow's
//! refusals as [`CallError`] and their classification), the tracking URI and a run's artifact
//! root on the artifact proxy. Imports `crate::http` and the registry's shared types.

use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{Value, json};

use super::wire::ErrorAnswer;
use super::{Mlflow, MlflowTarget};
use crate::http::{
    CALL_TIMEOUT, MAX_DETAIL_CHARS, MAX_ERROR_BODY, MAX_JSON_BODY, describe_transport,
};
use crate::registry::{RegistryAuth, RegistryError, read_answer, redact_url};
use crate::text::truncate_chars;

impl Mlflow {
    pub(super) async fn get(
        &self,
        api: &Api<'_>,
        method: &str,
        query: &[(&str, &str)],
    ) -> Result<Value, CallError> {
        let url = api.endpoint(&format!("api/2.0/mlflow/{method}"));
        self.call(api, Method::GET, url, query, None).await
    }

    pub(super) async fn post(
        &self,
        api: &Api<'_>,
        method: &str,
        body: &Value,
    ) -> Result<Value, CallError> {
        let url = api.endpoint(&format!("api/2.0/mlflow/{method}"));
        self.call(api, Method::POST, url, &[], Some(body)).await
    }

    /// One JSON call: the answer's JSON, or the refusal with MLflow's error code.
    pub(super) async fn call(
        &self,
        api: &Api<'_>,
        method: Method,
        url: Url,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        let mut url = url;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self
            .api
            .request(method, url.clone())
            .timeout(CALL_TIMEOUT)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let shown = redact_url(url.as_str());
        let response = api.authorize(request).send().await.map_err(|e| {
            CallError::Other(RegistryError::Unreachable(format!(
                "{shown}: {}",
                describe_transport(e)
            )))
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(api.refusal(response, &shown).await);
        }
        let bytes = read_answer(response, MAX_JSON_BODY, &shown)
            .await
            .map_err(CallError::Other)?;
        if bytes.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            CallError::Other(RegistryError::Rejected(format!(
                "{shown}: the answer is not JSON ({e}); is the tracking URI an MLflow server?"
            )))
        })
    }
}

/// The tracking server's base URL and the credentials for it.
pub(super) struct Api<'a> {
    pub(super) base: Url,
    pub(super) auth: &'a RegistryAuth,
}

impl<'a> Api<'a> {
    pub(super) fn new(tracking_uri: &str, auth: &'a RegistryAuth) -> Result<Self, RegistryError> {
        Ok(Self {
            base: api_base(tracking_uri)?,
            auth,
        })
    }

    /// `<base>/<path>`, keeping the base's path prefix.
    pub(super) fn endpoint(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let prefix = self.base.path().trim_end_matches('/');
        url.set_path(&format!("{prefix}/{path}"));
        url
    }

    pub(super) fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.auth {
            RegistryAuth::Anonymous => request,
            RegistryAuth::Basic { username, password } => {
                request.basic_auth(username, Some(password))
            }
            RegistryAuth::Bearer { token } => request.bearer_auth(token),
        }
    }

    /// The secrets that must never appear in a message.
    pub(super) fn secrets(&self) -> Vec<&str> {
        match self.auth {
            RegistryAuth::Anonymous => vec![],
            RegistryAuth::Basic { password, .. } => vec![password.as_str()],
            RegistryAuth::Bearer { token } => vec![token.as_str()],
        }
    }

    pub(super) async fn refusal(&self, response: reqwest::Response, shown: &str) -> CallError {
        let status = response.status();
        let body = read_answer(response, MAX_ERROR_BODY, shown)
            .await
            .unwrap_or_default();
        let (code, message) = match serde_json::from_slice::<ErrorAnswer>(&body) {
            Ok(e) => (e.error_code, e.message),
            Err(_) => {
                let text = String::from_utf8_lossy(&body).into_owned();
                let html = text.trim_start().get(..5).is_some_and(|s| {
                    s.eq_ignore_ascii_case("<!doc") || s.eq_ignore_ascii_case("<html")
                });
                if html {
                    // Not MLflow's JSON: a proxy's or another server's page.
                    let hint = "an HTML page, not an MLflow answer (is the tracking URI right, \
                                path prefix included?)";
                    (String::new(), hint.to_string())
                } else {
                    (String::new(), text)
                }
            }
        };
        let mut message = truncate_chars(message.trim(), MAX_DETAIL_CHARS);
        for secret in self.secrets() {
            if !secret.is_empty() {
                message = message.replace(secret, "<redacted>");
            }
        }
        CallError::Status {
            status,
            code,
            message,
            shown: shown.to_string(),
        }
    }

    pub(super) async fn expect_success(
        &self,
        response: reqwest::Response,
        url: &Url,
        what: &str,
    ) -> Result<(), RegistryError> {
        if response.status().is_success() {
            // Drain the (small) answer so the connection can be reused.
            let _ = read_answer(response, MAX_ERROR_BODY, "").await;
            return Ok(());
        }
        Err(self
            .refusal(response, &redact_url(url.as_str()))
            .await
            .classify(what))
    }
}

/// Where a run's artifacts live on the artifact proxy.
#[derive(Debug, PartialEq)]
pub(super) struct ArtifactRoot {
    /// `<base>/api/2.0/mlflow-artifacts/artifacts/<root path>`.
    pub(super) url: Url,
    /// The run's artifact path under the proxy's root (`<experiment>/<run>/artifacts`).
    pub(super) path: String,
}

impl ArtifactRoot {
    /// Maps a run's `mlflow-artifacts:` URI onto the tracking server's artifact proxy the way
    /// MLflow's own client does: `<tracking URI path>/api/2.0/mlflow-artifacts/artifacts/` +
    /// the URI's path, with runs of `/` collapsed. A URI naming another host is refused (the
    /// credentials would go there), and so is a path outside a conservative alphabet.
    pub(super) fn parse(base: &Url, artifact_uri: &str) -> Result<Self, RegistryError> {
        let reject = |why: &str| {
            RegistryError::Rejected(format!(
                "the run's artifact URI {:?} {why}",
                truncate_chars(artifact_uri, 200)
            ))
        };
        let Some(rest) = artifact_uri.strip_prefix("mlflow-artifacts:") else {
            return Err(reject(
                "is not served by the tracking server: start it with --serve-artifacts (and no \
                 --default-artifact-root), or use an experiment whose artifact location is \
                 mlflow-artifacts:/",
            ));
        };
        let path = match rest.strip_prefix("//") {
            Some(authority_and_path) => {
                let (authority, path) = authority_and_path
                    .split_once('/')
                    .unwrap_or((authority_and_path, ""));
                let ours = match (base.host_str(), base.port_or_known_default()) {
                    (Some(host), Some(port)) => {
                        authority == host || authority == format!("{host}:{port}")
                    }
                    (Some(host), None) => authority == host,
                    _ => false,
                };
                if !authority.is_empty() && !ours {
                    return Err(reject("names another host than the tracking server"));
                }
                path
            }
            None => rest,
        };
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if segments.is_empty() {
            return Err(reject("has no path"));
        }
        let safe = |s: &str| {
            s != "."
                && s != ".."
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !segments.iter().all(|s| safe(s)) {
            return Err(reject(
                "has a path outside letters, digits, '-', '_' and '.'",
            ));
        }
        let path = segments.join("/");
        let mut url = base.clone();
        let prefix = base.path().trim_end_matches('/');
        url.set_path(&format!(
            "{prefix}/api/2.0/mlflow-artifacts/artifacts/{path}"
        ));
        Ok(Self { url, path })
    }

    /// The proxy URL of a file (`path` relative to the run's artifact root).
    pub(super) fn file_url(&self, path: &str) -> Url {
        let mut url = self.url.clone();
        let joined = format!("{}/{}", url.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        url
    }

    /// The `path` parameter that lists a directory (relative to the run's artifact root).
    pub(super) fn listing_path(&self, dir: &str) -> String {
        if dir.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{dir}", self.path)
        }
    }
}

/// The tracking URI as a base URL: http or https, no query or fragment, no trailing `/`.
pub(super) fn api_base(tracking_uri: &str) -> Result<Url, RegistryError> {
    let reject = |why: &str| {
        RegistryError::Rejected(format!(
            "the MLflow tracking URI {} {why}",
            redact_url(tracking_uri)
        ))
    };
    let mut url = Url::parse(tracking_uri.trim()).map_err(|_| reject("is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(reject("must use http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(reject("has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(reject("must not have a query or fragment"));
    }
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    Ok(url)
}

pub(super) fn check_target(target: &MlflowTarget) -> Result<(), RegistryError> {
    if target.model_name.trim().is_empty() {
        return Err(RegistryError::Rejected("the model name is empty".into()));
    }
    if target.experiment_name.trim().is_empty() {
        return Err(RegistryError::Rejected(
            "the experiment name is empty".into(),
        ));
    }
    Ok(())
}

// ---- errors ---------------------------------------------------------------------------------

/// A failed call: refused with an HTTP status (and MLflow's error code, if it sent one), or
/// already classified.
#[derive(Debug)]
pub(super) enum CallError {
    Status {
        status: StatusCode,
        code: String,
        message: String,
        /// The redacted URL.
        shown: String,
    },
    Other(RegistryError),
}

impl CallError {
    pub(super) fn is_code(&self, code: &str) -> bool {
        matches!(self, Self::Status { code: c, .. } if c == code)
    }

    /// The registry error for a failed attempt to do `what`.
    pub(super) fn classify(self, what: &str) -> RegistryError {
        let (status, code, message, shown) = match self {
            Self::Other(e) => return e,
            Self::Status {
                status,
                code,
                message,
                shown,
            } => (status, code, message, shown),
        };
        let code = if code.is_empty() {
            String::new()
        } else {
            format!(" {code}")
        };
        let text = format!(
            "{what} ({shown}): HTTP {}{code}: {message}",
            status.as_u16()
        );
        match status.as_u16() {
            401 | 403 => RegistryError::Auth(text),
            429 | 500..=599 => RegistryError::Unreachable(text),
            300..=399 => RegistryError::Rejected(format!(
                "{text} (redirected: set the tracking URI to the server's final address)"
            )),
            _ => RegistryError::Rejected(text),
        }
    }
}

pub(super) fn parse<T: for<'de> Deserialize<'de>>(
    value: Value,
    what: &str,
) -> Result<T, RegistryError> {
    serde_json::from_value(value).map_err(|e| {
        RegistryError::Rejected(format!(
            "unexpected answer from {what}: {}",
            truncate_chars(&e.to_string(), MAX_DETAIL_CHARS)
        ))
    })
}
