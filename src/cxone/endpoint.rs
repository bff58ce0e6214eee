//! Where a job's CXone API lives ([`Endpoint`]): the API base URL and the token URL, from a region
//! name or explicit URLs, checked; API paths joined onto the base. Pure; imports only
//! `super::model` (the token path).

use reqwest::Url;

use super::model::paths;

/// Where a job's API lives: the API base URL and the token URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    base: Url,
    token_url: Url,
}

impl Endpoint {
    /// `https://api.<region>.cxone.com`.
    pub fn for_region(region: &str) -> Result<Self, String> {
        let valid = !region.is_empty()
            && region.len() <= 63
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(format!(
                "region {region:?} is not a CXone region name such as \"us2-01\""
            ));
        }
        Self::new(&format!("https://api.{region}.cxone.com"), None)
    }

    /// An explicit base URL, and optionally a token URL (default `<base>/oauth/token`).
    pub fn new(base_url: &str, token_url: Option<&str>) -> Result<Self, String> {
        let base = parse_http_url("baseUrl", base_url)?;
        let token_url = match token_url {
            Some(t) => parse_http_url("tokenUrl", t)?,
            None => join(&base, paths::TOKEN)?,
        };
        Ok(Self { base, token_url })
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    pub fn token_url(&self) -> &Url {
        &self.token_url
    }
}

fn parse_http_url(field: &str, s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("{field} {s:?} is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{field} {s:?} must use https (or http for a local simulator)"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{field} {s:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{field} must not contain credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{field} {s:?} must not have a query or fragment"));
    }
    Ok(url)
}

/// Appends an absolute API path to a base URL, keeping any path prefix of the base.
pub(crate) fn join(base: &Url, path: &str) -> Result<Url, String> {
    let mut url = base.clone();
    let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    Ok(url)
}
