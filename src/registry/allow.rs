//! Where a job may send its model and registry credentials (`--allowed-registries`), whether a
//! registry may be spoken to over plain HTTP, and the credentials read from a job's Secret.
//!
//! Patterns are `host[:port][/path]`, optionally prefixed by `https://` or `http://`; the host may
//! contain `*` for one DNS label. An OCI repository `host[:port]/path` matches when host and port
//! match and the repository path is the pattern's path or under it; an MLflow tracking URI
//! matches the same way and its scheme must be the pattern's (`https` when the pattern has none).
//! A pattern with `http://` is accepted only for loopback hosts, or for any host when the operator
//! runs with `--allow-plain-http-registries`; OCI registries matched by such a pattern are spoken
//! to over plain HTTP.

use std::collections::BTreeMap;

use super::RegistryAuth;
use super::mlflow::MlflowTarget;
use super::oci::OciTarget;

/// Registries jobs may use. Empty: no job may use `spec.registry`.
#[derive(Clone, Debug, Default)]
pub struct RegistryAllowlist {
    patterns: Vec<Pattern>,
}

#[derive(Clone, Debug)]
struct Pattern {
    plain_http: bool,
    host_labels: Vec<String>,
    port: Option<u16>,
    path: String,
    text: String,
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `host[:port]` split, the port checked.
fn split_host_port(hostport: &str) -> Result<(String, Option<u16>), String> {
    if hostport.starts_with('[') {
        let end = hostport.find(']').ok_or("an unclosed [ in the host")?;
        let host = &hostport[..=end];
        let rest = &hostport[end + 1..];
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?),
            None if rest.is_empty() => None,
            None => return Err(format!("unexpected {rest:?} after the host")),
        };
        return Ok((host.to_ascii_lowercase(), port));
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => {
            let port = p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?;
            Ok((h.to_ascii_lowercase(), Some(port)))
        }
        None => Ok((hostport.to_ascii_lowercase(), None)),
    }
}

impl RegistryAllowlist {
    /// Parses the operator's patterns; `allow_plain_http` permits `http://` for any host.
    pub fn parse(patterns: &[String], allow_plain_http: bool) -> Result<Self, String> {
        let mut out = Vec::new();
        for raw in patterns.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            let (plain_http, rest) = if let Some(r) = raw.strip_prefix("http://") {
                (true, r)
            } else if let Some(r) = raw.strip_prefix("https://") {
                (false, r)
            } else if raw.contains("://") {
                return Err(format!(
                    "allowed registry {raw:?}: only https:// or http:// (or no scheme) is supported"
                ));
            } else {
                (false, raw)
            };
            let (hostport, path) = match rest.split_once('/') {
                Some((h, p)) => (h, format!("/{}", p.trim_end_matches('/'))),
                None => (rest, String::new()),
            };
            let (host, port) =
                split_host_port(hostport).map_err(|e| format!("allowed registry {raw:?}: {e}"))?;
            if host.is_empty() || host.split('.').any(str::is_empty) {
                return Err(format!("allowed registry {raw:?} has no usable host"));
            }
            if plain_http && !allow_plain_http && !is_loopback(&host) {
                return Err(format!(
                    "allowed registry {raw:?} uses plain HTTP for a host that is not loopback; \
                     use https, or start the operator with --allow-plain-http-registries"
                ));
            }
            out.push(Pattern {
                plain_http,
                host_labels: host.split('.').map(str::to_string).collect(),
                port,
                path: if path == "/" { String::new() } else { path },
                text: raw.to_string(),
            });
        }
        Ok(Self { patterns: out })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn describe(&self) -> String {
        if self.patterns.is_empty() {
            return "none".to_string();
        }
        self.patterns
            .iter()
            .map(|p| p.text.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn find(
        &self,
        plain_http: Option<bool>,
        host: &str,
        port: Option<u16>,
        path: &str,
    ) -> Option<&Pattern> {
        let host = host.to_ascii_lowercase();
        let labels: Vec<&str> = host.split('.').collect();
        let path = path.trim_end_matches('/');
        self.patterns.iter().find(|p| {
            plain_http.is_none_or(|plain| plain == p.plain_http)
                && p.port == port
                && p.host_labels.len() == labels.len()
                && p.host_labels
                    .iter()
                    .zip(&labels)
                    .all(|(pat, l)| (pat == "*" && !l.is_empty()) || pat == l)
                && (p.path.is_empty()
                    || path == p.path
                    || path.starts_with(&format!("{}/", p.path)))
        })
    }

    /// The OCI repository of `spec.registry.oci.repository`, if allowed.
    pub fn oci(&self, repository: &str) -> Result<OciTarget, String> {
        let (hostport, path) = repository.split_once('/').ok_or_else(|| {
            format!("spec.registry.oci.repository {repository:?} needs a registry host and a path")
        })?;
        let (host, port) = split_host_port(hostport)
            .map_err(|e| format!("spec.registry.oci.repository {repository:?}: {e}"))?;
        let pattern = self.find(None, &host, port, &format!("/{path}")).ok_or_else(|| {
            format!(
                "spec.registry.oci.repository {repository} is not an allowed registry (allowed: {}); ask the operator's administrators to allow it",
                self.describe()
            )
        })?;
        OciTarget::parse(repository, pattern.plain_http)
            .map_err(|e| format!("spec.registry.oci.repository: {e}"))
    }

    /// The MLflow tracking server of `spec.registry.mlflow`, if allowed.
    pub fn mlflow(&self, tracking_uri: &str) -> Result<(), String> {
        let url = reqwest::Url::parse(tracking_uri)
            .map_err(|e| format!("spec.registry.mlflow.trackingUri is not a URL: {e}"))?;
        let plain = match url.scheme() {
            "https" => false,
            "http" => true,
            other => {
                return Err(format!(
                    "spec.registry.mlflow.trackingUri: scheme {other:?} is not http or https"
                ));
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err("spec.registry.mlflow.trackingUri must not carry credentials; use credentialsSecretRef".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(
                "spec.registry.mlflow.trackingUri must not have a query or fragment".into(),
            );
        }
        let host = url.host_str().unwrap_or_default();
        if self
            .find(Some(plain), host, url.port(), url.path())
            .is_none()
        {
            return Err(format!(
                "spec.registry.mlflow.trackingUri {} is not an allowed registry (allowed: {}); ask the operator's administrators to allow it",
                super::redact_url(tracking_uri),
                self.describe()
            ));
        }
        Ok(())
    }

    /// Every target of a registry spec, checked; the first problem otherwise.
    pub fn check(
        &self,
        spec: &crate::crd::RegistrySpec,
        namespace: &str,
        name: &str,
    ) -> Result<Targets, String> {
        let oci = spec
            .oci
            .as_ref()
            .map(|o| self.oci(&o.repository))
            .transpose()?;
        let mlflow = match &spec.mlflow {
            Some(m) => {
                self.mlflow(&m.tracking_uri)?;
                Some(MlflowTarget {
                    tracking_uri: m.tracking_uri.clone(),
                    model_name: m.model_name.clone(),
                    experiment_name: m
                        .experiment_name
                        .clone()
                        .unwrap_or_else(|| format!("cxone/{namespace}/{name}")),
                })
            }
            None => None,
        };
        Ok(Targets { oci, mlflow })
    }
}

/// The allowed targets of a job's `spec.registry`.
#[derive(Clone, Debug, PartialEq)]
pub struct Targets {
    pub oci: Option<OciTarget>,
    pub mlflow: Option<MlflowTarget>,
}

/// Registry credentials from a Secret's type and data, for `host` (an OCI registry's
/// `host[:port]`; ignored for basic-auth and token Secrets). The error says what is missing,
/// never a value.
pub fn credentials(
    secret_type: Option<&str>,
    data: &BTreeMap<String, Vec<u8>>,
    host: &str,
) -> Result<RegistryAuth, String> {
    let text = |key: &str| -> Result<Option<String>, String> {
        data.get(key)
            .map(|v| String::from_utf8(v.clone()).map_err(|_| format!("key {key:?} is not UTF-8")))
            .transpose()
    };
    if secret_type == Some("kubernetes.io/dockerconfigjson")
        || data.contains_key(".dockerconfigjson")
    {
        let raw = data
            .get(".dockerconfigjson")
            .ok_or("a dockerconfigjson Secret needs the key .dockerconfigjson")?;
        return docker_config(raw, host);
    }
    if let Some(token) = text("token")? {
        return Ok(RegistryAuth::Bearer {
            token: token.trim().to_string(),
        });
    }
    match (text("username")?, text("password")?) {
        (Some(username), Some(password)) => Ok(RegistryAuth::Basic { username, password }),
        _ => Err("the Secret needs username and password (kubernetes.io/basic-auth), a token key, or .dockerconfigjson".into()),
    }
}

fn docker_config(raw: &[u8], host: &str) -> Result<RegistryAuth, String> {
    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(default)]
        auths: BTreeMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        auth: Option<String>,
        username: Option<String>,
        password: Option<String>,
        identitytoken: Option<String>,
    }
    let config: Config = serde_json::from_slice(raw).map_err(|e| {
        format!(
            ".dockerconfigjson is not a Docker config: {}",
            e.classify_text()
        )
    })?;
    let key_host = |k: &str| {
        k.trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    let entry = config
        .auths
        .iter()
        .find(|(k, _)| key_host(k) == host.to_ascii_lowercase())
        .map(|(_, e)| e)
        .ok_or_else(|| format!(".dockerconfigjson has no entry for {host}"))?;
    if let Some(token) = &entry.identitytoken {
        return Ok(RegistryAuth::Bearer {
            token: token.clone(),
        });
    }
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        return Ok(RegistryAuth::Basic {
            username: u.clone(),
            password: p.clone(),
        });
    }
    let auth = entry
        .auth
        .as_deref()
        .ok_or_else(|| format!("the .dockerconfigjson entry for {host} has no auth"))?;
    let decoded = crate::text::base64_decode(auth.trim())
        .ok_or_else(|| format!("the .dockerconfigjson entry for {host}: auth is not base64"))?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| format!("the .dockerconfigjson entry for {host}: auth is not UTF-8"))?;
    let (username, password) = decoded.split_once(':').ok_or_else(|| {
        format!("the .dockerconfigjson entry for {host}: auth is not user:password")
    })?;
    Ok(RegistryAuth::Basic {
        username: username.to_string(),
        password: password.to_string(),
    })
}

/// A serde error's category, without the input it quotes (it may hold a secret).
trait ClassifyText {
    fn classify_text(&self) -> String;
}

impl ClassifyText for serde_json::Error {
    fn classify_text(&self) -> String {
        format!(
            "{:?} error at line {} column {}",
            self.classify(),
            self.line(),
            self.column()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(p: &[&str]) -> RegistryAllowlist {
        RegistryAllowlist::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>(), false)
            .unwrap()
    }

    #[test]
    fn oci_repositories_match_host_port_and_path_prefix() {
        let l = list(&[
            "registry.example.com/cxone",
            "*.corp.example",
            "http://127.0.0.1:5000",
        ]);
        let t = l.oci("registry.example.com/cxone/billing").unwrap();
        assert!(!t.plain_http);
        assert!(l.oci("registry.example.com/cxonex/billing").is_err());
        assert!(l.oci("registry.example.com/other/billing").is_err());
        assert!(l.oci("registry.example.com:444/cxone/billing").is_err());
        assert!(l.oci("harbor.corp.example/a/b").is_ok());
        assert!(l.oci("a.b.corp.example/a").is_err());
        let local = l.oci("127.0.0.1:5000/team/model").unwrap();
        assert!(local.plain_http);
        assert!(l.oci("127.0.0.1:5001/team/model").is_err());
        let err = l.oci("evil.example/x").unwrap_err();
        assert!(err.contains("not an allowed registry"), "{err}");
    }

    #[test]
    fn mlflow_uris_need_the_pattern_scheme() {
        let l = list(&["https://mlflow.example.com", "http://127.0.0.1:5001/prefix"]);
        assert!(l.mlflow("https://mlflow.example.com").is_ok());
        assert!(l.mlflow("https://mlflow.example.com/sub").is_ok());
        assert!(l.mlflow("http://mlflow.example.com").is_err());
        assert!(l.mlflow("http://127.0.0.1:5001/prefix").is_ok());
        assert!(l.mlflow("http://127.0.0.1:5001/other").is_err());
        assert!(l.mlflow("https://u:p@mlflow.example.com").is_err());
        assert!(l.mlflow("ftp://mlflow.example.com").is_err());
    }

    #[test]
    fn plain_http_needs_loopback_or_the_flag() {
        let p = vec!["http://registry.internal:5000".to_string()];
        assert!(RegistryAllowlist::parse(&p, false).is_err());
        assert!(RegistryAllowlist::parse(&p, true).is_ok());
        assert!(RegistryAllowlist::parse(&["http://localhost:5000".into()], false).is_ok());
        assert!(RegistryAllowlist::parse(&["ftp://x".into()], false).is_err());
        assert!(RegistryAllowlist::default().oci("r.example/x").is_err());
    }

    #[test]
    fn credentials_come_from_each_secret_shape() {
        let b = |s: &str| s.as_bytes().to_vec();
        let basic = BTreeMap::from([("username".into(), b("ci")), ("password".into(), b("pw"))]);
        assert_eq!(
            credentials(Some("kubernetes.io/basic-auth"), &basic, "h").unwrap(),
            RegistryAuth::Basic {
                username: "ci".into(),
                password: "pw".into()
            }
        );
        let token = BTreeMap::from([("token".into(), b("t0k\n"))]);
        assert_eq!(
            credentials(None, &token, "h").unwrap(),
            RegistryAuth::Bearer {
                token: "t0k".into()
            }
        );
        let auth = "Ym9iOnMzY3JldA=="; // bob:s3cret
        let cfg = format!(r#"{{"auths":{{"https://reg.example:5000":{{"auth":"{auth}"}}}}}}"#);
        let docker = BTreeMap::from([(".dockerconfigjson".into(), b(&cfg))]);
        assert_eq!(
            credentials(
                Some("kubernetes.io/dockerconfigjson"),
                &docker,
                "reg.example:5000"
            )
            .unwrap(),
            RegistryAuth::Basic {
                username: "bob".into(),
                password: "s3cret".into()
            }
        );
        let missing =
            credentials(Some("kubernetes.io/dockerconfigjson"), &docker, "other:1").unwrap_err();
        assert!(missing.contains("no entry for other:1"));
        let broken = BTreeMap::from([(".dockerconfigjson".into(), b("{\"auths\": s3cret"))]);
        let e = credentials(None, &broken, "h").unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(credentials(None, &BTreeMap::new(), "h").is_err());
    }
}
