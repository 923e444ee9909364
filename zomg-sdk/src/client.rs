//! The HTTP client for the zomg server API (SPEC §11).
//!
//! Every method maps a non-2xx answer to [`Error::Api`] (the server's typed body, or a
//! sensible stand-in when the body is not JSON), a refused or failed connection to
//! [`Error::Unreachable`] naming the URL, and an unexpected 2xx body to [`Error::Protocol`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use url::{Host, Url};

use crate::env::process_env;
use crate::error::{ApiError, Error, Result};
use crate::names::{BoxName, ProjectName};
use crate::setup::SetupConfig;
use crate::target::{Target, TargetFlags, resolve_target};
use crate::tls::{TlsTrust, tls_config};
use crate::types::{
    BaseList, BoxInfo, BoxList, CreateBox, DeleteState, DeleteStatus, ErrorBody, UpdateBox,
    VersionInfo,
};
use crate::wait::poll_until;

/// How long to wait for a TCP (and TLS) connection before calling the server unreachable.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The projects a list covers: one, or all of them (`-` in the API path).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProjectScope {
    /// A single project.
    One(ProjectName),
    /// Every project (`zomg list --all`).
    All,
}

impl ProjectScope {
    /// The path segment: the project name, or `-`.
    pub fn as_str(&self) -> &str {
        match self {
            ProjectScope::One(p) => p.as_str(),
            ProjectScope::All => "-",
        }
    }
}

impl fmt::Display for ProjectScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ProjectName> for ProjectScope {
    fn from(p: ProjectName) -> Self {
        ProjectScope::One(p)
    }
}

impl From<&ProjectName> for ProjectScope {
    fn from(p: &ProjectName) -> Self {
        ProjectScope::One(p.clone())
    }
}

/// Filters and paging for [`Client::list_boxes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only boxes whose name starts with this.
    pub prefix: Option<String>,
    /// Only boxes carrying every one of these tags; sent as repeated `tag=key=value`.
    pub tags: BTreeMap<String, String>,
    /// At most this many boxes per page (the server has its own cap).
    pub max_results: Option<u32>,
    /// Where to continue: `next_continuation_token` of the previous page.
    pub continuation_token: Option<String>,
}

/// A typed async client for one zomg server.
///
/// Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    target: Target,
    tls: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds a client for `target`: bearer token, TLS trust (OS roots, or any certificate
    /// when `insecure`) and the `ip` override, which replaces DNS for the URL's host while
    /// TLS and SNI keep using the host name.
    pub fn new(target: &Target) -> Result<Self> {
        let trust = match (target.url.scheme(), target.insecure) {
            (_, true) => TlsTrust::Insecure,
            ("https", false) => TlsTrust::NativeRoots,
            _ => TlsTrust::None,
        };
        let tls = tls_config(trust)?;
        let mut headers = HeaderMap::new();
        if let Some(token) = &target.token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                Error::Config("the token contains characters not allowed in an HTTP header".into())
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .user_agent(concat!("zomg-sdk/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT);
        if let (Some(ip), Some(Host::Domain(host))) = (target.ip, target.url.host()) {
            // Port 0: reqwest uses the URL's port.
            builder = builder.resolve(host, SocketAddr::new(ip, 0));
        }
        let http = builder
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            target: target.clone(),
            tls,
        })
    }

    /// Builds a client the way the CLI does without flags: the process environment, the
    /// setup config found from the current directory, the precedence of
    /// [`crate::resolve_target`]. (The CLI's fallback to the local server's token file is
    /// not applied.)
    pub fn from_env() -> Result<Self> {
        let cwd =
            std::env::current_dir().map_err(|e| Error::io("reading the current directory", e))?;
        let config = SetupConfig::discover(process_env, &cwd)?;
        let resolved = resolve_target(&TargetFlags::default(), process_env, config.as_ref())?;
        Self::new(&resolved.target)
    }

    /// The target this client talks to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The rustls configuration in use, for WebSocket connections to the same server
    /// (`tokio_tungstenite::Connector::Rustls(client.tls_config())`).
    pub fn tls_config(&self) -> Arc<rustls::ClientConfig> {
        self.tls.clone()
    }

    /// The server URL for display: without a lone trailing `/`, plus the IP override if any.
    pub(crate) fn display_url(&self) -> String {
        let url = self.target.url.as_str();
        let url = if self.target.url.path() == "/" {
            url.trim_end_matches('/')
        } else {
            url
        };
        match self.target.ip {
            Some(ip) => format!("{url} (at {ip})"),
            None => url.to_owned(),
        }
    }

    /// The URL of an API route: the base URL's path followed by `segments`, each
    /// percent-encoded.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.target.url.clone();
        url.path_segments_mut()
            .expect("target URLs are http(s) URLs, which have a path")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// A request to a route, with the client's token and TLS settings; for routes that have
    /// no typed method yet. Send it with [`Client::send`].
    pub fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        self.http.request(method, self.url(segments))
    }

    /// A request to a full URL (one built with [`Client::url`] plus a query), with the
    /// client's token and TLS settings.
    pub(crate) fn request_url(&self, method: Method, url: Url) -> RequestBuilder {
        self.http.request(method, url)
    }

    /// Sends a request and maps failures to [`Error`]: non-2xx → [`Error::Api`], connection
    /// failure → [`Error::Unreachable`].
    pub async fn send(&self, request: RequestBuilder) -> Result<Response> {
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(api_error(response).await.into())
        }
    }

    /// Sends a request and decodes the JSON answer.
    pub(crate) async fn call<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T> {
        let response = self.send(request).await?;
        decode(response, |e| self.transport_error(e)).await
    }

    pub(crate) fn transport_error(&self, e: reqwest::Error) -> Error {
        if e.is_connect() {
            Error::Unreachable {
                url: self.display_url(),
                reason: root_cause(&e),
            }
        } else {
            let url = e
                .url()
                .map(Url::to_string)
                .unwrap_or_else(|| self.display_url());
            Error::Http { url, source: e }
        }
    }

    pub(crate) fn box_segments<'a>(
        project: &'a str,
        name: &'a str,
        rest: &[&'a str],
    ) -> Vec<&'a str> {
        let mut s = vec!["v1", "projects", project, "boxes", name];
        s.extend_from_slice(rest);
        s
    }

    /// `GET /version`.
    pub async fn version(&self) -> Result<VersionInfo> {
        self.call(self.request(Method::GET, &["version"])).await
    }

    /// `GET /healthz`: `Ok(())` when the server answers 2xx.
    pub async fn health(&self) -> Result<()> {
        self.send(self.request(Method::GET, &["healthz"]))
            .await
            .map(drop)
    }

    /// `GET /v1/bases`.
    pub async fn list_bases(&self) -> Result<BaseList> {
        self.call(self.request(Method::GET, &["v1", "bases"])).await
    }

    /// `GET /v1/projects/{project}/boxes`: one page.
    pub async fn list_boxes(
        &self,
        scope: impl Into<ProjectScope>,
        options: &ListOptions,
    ) -> Result<BoxList> {
        let scope = scope.into();
        let mut url = self.url(&["v1", "projects", scope.as_str(), "boxes"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(p) = &options.prefix {
                q.append_pair("prefix", p);
            }
            for (k, v) in &options.tags {
                q.append_pair("tag", &format!("{k}={v}"));
            }
            if let Some(n) = options.max_results {
                q.append_pair("max_results", &n.to_string());
            }
            if let Some(t) = &options.continuation_token {
                q.append_pair("continuation_token", t);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        self.call(self.http.get(url)).await
    }

    /// Every box matching `options`, following `next_continuation_token` across pages
    /// (starting from `options.continuation_token`, if set).
    pub async fn list_all_boxes(
        &self,
        scope: impl Into<ProjectScope>,
        options: &ListOptions,
    ) -> Result<Vec<BoxInfo>> {
        let scope = scope.into();
        let mut options = options.clone();
        let mut boxes = Vec::new();
        loop {
            let page = self.list_boxes(scope.clone(), &options).await?;
            boxes.extend(page.boxes);
            if !page.has_more {
                return Ok(boxes);
            }
            match page.next_continuation_token {
                Some(next) if options.continuation_token.as_ref() != Some(&next) => {
                    options.continuation_token = Some(next);
                }
                Some(_) => {
                    return Err(Error::Protocol(
                        "the server repeated a continuation token while listing boxes".into(),
                    ));
                }
                None => {
                    return Err(Error::Protocol(
                        "the server said more boxes follow but sent no continuation token".into(),
                    ));
                }
            }
        }
    }

    /// `POST /v1/projects/{project}/boxes`.
    pub async fn create_box(&self, project: &ProjectName, request: &CreateBox) -> Result<BoxInfo> {
        let req = self
            .request(Method::POST, &["v1", "projects", project.as_str(), "boxes"])
            .json(request);
        self.call(req).await
    }

    /// `GET /v1/projects/{project}/boxes/{name}`.
    pub async fn get_box(&self, project: &ProjectName, name: &BoxName) -> Result<BoxInfo> {
        let segs = Self::box_segments(project.as_str(), name.as_str(), &[]);
        self.call(self.request(Method::GET, &segs)).await
    }

    /// `PUT /v1/projects/{project}/boxes/{name}`: the server applies its allowlist (SPEC §3).
    pub async fn update_box(
        &self,
        project: &ProjectName,
        name: &BoxName,
        update: &UpdateBox,
    ) -> Result<BoxInfo> {
        let segs = Self::box_segments(project.as_str(), name.as_str(), &[]);
        self.call(self.request(Method::PUT, &segs).json(update))
            .await
    }

    /// `DELETE /v1/projects/{project}/boxes/{name}[?force=true]`: `deleted` when finished
    /// (200), `deleting` while cleanup continues in the background (202).
    pub async fn delete_box(
        &self,
        project: &ProjectName,
        name: &BoxName,
        force: bool,
    ) -> Result<DeleteStatus> {
        let segs = Self::box_segments(project.as_str(), name.as_str(), &[]);
        let mut req = self.request(Method::DELETE, &segs);
        if force {
            req = req.query(&[("force", "true")]);
        }
        let response = self.send(req).await?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        if body.iter().all(u8::is_ascii_whitespace) {
            // A body-less success still says how far the delete got.
            let state = if status == StatusCode::ACCEPTED {
                DeleteState::Deleting
            } else {
                DeleteState::Deleted
            };
            return Ok(DeleteStatus {
                name: name.to_string(),
                status: state,
                message: None,
            });
        }
        parse_body(&body)
    }

    /// `GET /v1/projects/{project}/boxes/{name}/delete-status`.
    pub async fn delete_status(
        &self,
        project: &ProjectName,
        name: &BoxName,
    ) -> Result<DeleteStatus> {
        let segs = Self::box_segments(project.as_str(), name.as_str(), &["delete-status"]);
        self.call(self.request(Method::GET, &segs)).await
    }

    /// `POST /v1/projects/{project}/boxes/{name}/stop`.
    pub async fn stop_box(&self, project: &ProjectName, name: &BoxName) -> Result<BoxInfo> {
        let segs = Self::box_segments(project.as_str(), name.as_str(), &["stop"]);
        self.call(self.request(Method::POST, &segs)).await
    }

    /// `POST /v1/projects/{project}/boxes/{name}/resume`.
    pub async fn resume_box(&self, project: &ProjectName, name: &BoxName) -> Result<BoxInfo> {
        let segs = Self::box_segments(project.as_str(), name.as_str(), &["resume"]);
        self.call(self.request(Method::POST, &segs)).await
    }

    /// Polls delete-status until `deleted` or `failed` (both returned as `Ok`), or
    /// [`Error::Timeout`] after `timeout`.
    pub async fn wait_deleted(
        &self,
        project: &ProjectName,
        name: &BoxName,
        timeout: Duration,
    ) -> Result<DeleteStatus> {
        let what = format!("box {project}:{name} to be deleted");
        poll_until(&what, timeout, || async {
            let s = self.delete_status(project, name).await?;
            Ok(matches!(s.status, DeleteState::Deleted | DeleteState::Failed).then_some(s))
        })
        .await
    }

    /// Polls the box until `condition` holds (e.g. `|b| b.status == BoxStatus::Running`), or
    /// [`Error::Timeout`] after `timeout`.
    pub async fn wait_for_box(
        &self,
        project: &ProjectName,
        name: &BoxName,
        timeout: Duration,
        condition: impl Fn(&BoxInfo) -> bool,
    ) -> Result<BoxInfo> {
        let what = format!("box {project}:{name}");
        poll_until(&what, timeout, || async {
            let b = self.get_box(project, name).await?;
            Ok(condition(&b).then_some(b))
        })
        .await
    }
}

/// Reads and decodes a 2xx JSON body.
async fn decode<T: DeserializeOwned>(
    response: Response,
    transport_error: impl Fn(reqwest::Error) -> Error,
) -> Result<T> {
    let body = response.bytes().await.map_err(transport_error)?;
    parse_body(&body)
}

pub(crate) fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        Error::Protocol(format!(
            "unexpected answer from the server ({e}): {}",
            excerpt(&String::from_utf8_lossy(body))
        ))
    })
}

/// The server's error body, or a stand-in built from the status when the body is not JSON
/// (a proxy's HTML page, a plain-text panic message, nothing).
async fn api_error(response: Response) -> ApiError {
    let status = response.status();
    let html = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("html"));
    let body = response.bytes().await.unwrap_or_default();
    api_error_from_parts(status, html, &body)
}

/// [`api_error`] from the parts of an answer already read (the refused WebSocket upgrade).
pub(crate) fn api_error_from_parts(status: StatusCode, html: bool, body: &[u8]) -> ApiError {
    if let Ok(b) = serde_json::from_slice::<ErrorBody>(body) {
        return ApiError::from_body(status.as_u16(), b);
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = if text.is_empty() || html || text.starts_with('<') {
        format!("server answered {status}")
    } else {
        excerpt(text)
    };
    ApiError {
        status: status.as_u16(),
        code: fallback_code(status),
        message,
    }
}

/// A machine-readable code for a status without a JSON body.
fn fallback_code(status: StatusCode) -> String {
    match status.as_u16() {
        400 => "invalid".into(),
        401 => "unauthorized".into(),
        403 => "forbidden".into(),
        404 => "not_found".into(),
        409 => "conflict".into(),
        _ => match status.canonical_reason() {
            Some(r) => r.to_ascii_lowercase().replace([' ', '-'], "_"),
            None => format!("http_{}", status.as_u16()),
        },
    }
}

/// The first line of `text`, at most 300 characters.
fn excerpt(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default().trim();
    let mut out: String = line.chars().take(300).collect();
    if out.len() < line.len() || text.trim().lines().nth(1).is_some() {
        out.push('…');
    }
    out
}

/// The innermost error message: "Connection refused (os error 111)" rather than
/// "error sending request".
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_codes() {
        let cases = [
            (400, "invalid"),
            (401, "unauthorized"),
            (403, "forbidden"),
            (404, "not_found"),
            (409, "conflict"),
            (500, "internal_server_error"),
            (502, "bad_gateway"),
            (599, "http_599"),
        ];
        for (code, want) in cases {
            assert_eq!(fallback_code(StatusCode::from_u16(code).unwrap()), want);
        }
    }

    #[test]
    fn excerpts() {
        assert_eq!(excerpt("  boom \n"), "boom");
        assert_eq!(excerpt("first\nsecond"), "first…");
        assert_eq!(excerpt(&"x".repeat(400)).chars().count(), 301);
    }

    #[test]
    fn urls_keep_the_base_path_and_encode_segments() {
        let mut t = Target::local();
        let c = Client::new(&t).unwrap();
        assert_eq!(
            c.url(&["v1", "projects", "-", "boxes"]).as_str(),
            "http://127.0.0.1:7070/v1/projects/-/boxes"
        );
        assert_eq!(c.display_url(), "http://127.0.0.1:7070");
        t.url = "https://example.com/zomg/".parse().unwrap();
        t.ip = Some("10.0.0.1".parse().unwrap());
        let c = Client::new(&t).unwrap();
        assert_eq!(
            c.url(&["version"]).as_str(),
            "https://example.com/zomg/version"
        );
        assert_eq!(
            c.url(&["a b/c"]).as_str(),
            "https://example.com/zomg/a%20b%2Fc"
        );
        assert_eq!(c.display_url(), "https://example.com/zomg/ (at 10.0.0.1)");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let c = Client::new(&Target::local().with_token("s3cret")).unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
        let e = Client::new(&Target::local().with_token("bad\ntoken")).unwrap_err();
        assert!(
            e.to_string().contains("not allowed in an HTTP header"),
            "{e}"
        );
    }
}
