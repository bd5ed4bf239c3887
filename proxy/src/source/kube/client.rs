//! A minimal Kubernetes API client for ConfigMaps: list (with a `metadata.name` field
//! selector, or the shards' label selector) and watch (newline-delimited JSON events over a
//! chunked response); and a get of the credentials Secret next to it.
//!
//! ```text
//!  GET /api/v1/namespaces/NS/configmaps?fieldSelector=metadata.name%3DNAME
//!      -> {"metadata":{"resourceVersion":RV},"items":[ConfigMap?]}
//!  GET /api/v1/namespaces/NS/configmaps?labelSelector=portico.dev%2Fconfig-of%3DNAME
//!      -> {"metadata":{"resourceVersion":RV},"items":[shard ConfigMap...]}
//!  GET ...&watch=true&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=290
//!      -> {"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}\n ...
//!  GET /api/v1/namespaces/NS/secrets/NAME-credentials      -> Secret | 404
//! ```
//!
//! hyper-util's pooled client over hyper-rustls (ring); `http://` servers are allowed (tests).
//! Entry points: [`Client::list`], [`Client::watch`], [`Client::get_secret`], [`decode_event`].

use super::Target;
use super::config::{Auth, ConfigError, Settings};
use super::configmap::ConfigMap;
use super::credentials::Secret;
use crate::tls;
use bytes::{Buf as _, Bytes, BytesMut};
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use std::time::Duration;

/// Server-side watch timeout (the server ends the stream; the client re-watches).
pub const WATCH_TIMEOUT_SECONDS: u64 = 290;
/// Longest wait for a response head, and for a whole list response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A watch that delivers nothing for this long is presumed dead (half-open connection).
pub const WATCH_IDLE_TIMEOUT: Duration = Duration::from_secs(WATCH_TIMEOUT_SECONDS + 30);
/// Longest watch event line accepted (a ConfigMap holds at most 1 MiB).
pub const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Credentials could not be read (token file).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Connecting or sending failed.
    #[error("request failed: {0}")]
    Request(String),
    /// The response body broke off.
    #[error("reading the response: {0}")]
    Body(#[from] hyper::Error),
    /// The server answered with an error status.
    #[error("API server answered {code}: {message}")]
    Status {
        /// HTTP status (or the `code` of a watch ERROR event).
        code: u16,
        /// The Status message.
        message: String,
    },
    /// The resourceVersion is too old (410 Gone): list again.
    #[error("resourceVersion expired (410 Gone)")]
    Gone,
    /// The response could not be decoded.
    #[error("cannot decode the response: {0}")]
    Decode(String),
    /// No answer in time.
    #[error("{0} timed out")]
    Timeout(&'static str),
}

/// The API client.
#[derive(Clone, Debug)]
pub struct Client {
    http: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    server: String,
    auth: Auth,
}

/// A list response: the ConfigMap, if it exists, and the collection's resourceVersion.
#[derive(Debug, Default, Deserialize)]
pub struct List {
    /// List metadata.
    #[serde(default)]
    pub metadata: ListMeta,
    /// Zero or one ConfigMap (field selector on the name).
    #[serde(default)]
    pub items: Vec<ConfigMap>,
}

/// List metadata.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    /// Where a watch starts.
    #[serde(default)]
    pub resource_version: String,
}

/// One watch event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// The ConfigMap was created (or is replayed at watch start).
    Added(ConfigMap),
    /// The ConfigMap changed.
    Modified(ConfigMap),
    /// The ConfigMap was deleted.
    Deleted(ConfigMap),
    /// Progress marker: resume from this resourceVersion.
    Bookmark(String),
    /// The server reports an error (410: expired resourceVersion).
    Error(Status),
}

/// A `Status` object (watch ERROR events, error responses).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// HTTP-like code.
    #[serde(default)]
    pub code: u16,
    /// Machine-readable reason (e.g. `Expired`).
    #[serde(default)]
    pub reason: String,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    object: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BookmarkObject {
    #[serde(default)]
    metadata: ListMeta,
}

/// Decodes one line of a watch stream.
pub fn decode_event(line: &[u8]) -> Result<WatchEvent, String> {
    let raw: RawEvent = serde_json::from_slice(line).map_err(|e| format!("watch event: {e}"))?;
    let cm = |v: serde_json::Value| {
        serde_json::from_value::<ConfigMap>(v).map_err(|e| format!("{} object: {e}", raw.kind))
    };
    Ok(match raw.kind.as_str() {
        "ADDED" => WatchEvent::Added(cm(raw.object)?),
        "MODIFIED" => WatchEvent::Modified(cm(raw.object)?),
        "DELETED" => WatchEvent::Deleted(cm(raw.object)?),
        "BOOKMARK" => {
            let b: BookmarkObject =
                serde_json::from_value(raw.object).map_err(|e| format!("BOOKMARK object: {e}"))?;
            WatchEvent::Bookmark(b.metadata.resource_version)
        }
        "ERROR" => WatchEvent::Error(
            serde_json::from_value(raw.object).map_err(|e| format!("ERROR object: {e}"))?,
        ),
        other => return Err(format!("unknown watch event type {other:?}")),
    })
}

impl Client {
    /// A client for `settings` (builds the TLS config now).
    pub fn new(settings: Settings) -> Result<Self, ConfigError> {
        // No ALPN here: the connector sets it (http/1.1) and refuses a preset list.
        let tls = tls::client_config(settings.tls)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        // Detects a vanished API server on an idle watch long before WATCH_IDLE_TIMEOUT.
        http.set_keepalive(Some(Duration::from_secs(30)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Client {
            http: HyperClient::builder(TokioExecutor::new()).build(https),
            server: settings.server,
            auth: settings.auth,
        })
    }

    /// The API server URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    async fn get(&self, path_and_query: &str) -> Result<http::Response<Incoming>, ClientError> {
        let mut req = Request::get(format!("{}{path_and_query}", self.server))
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("portico-proxy/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(auth) = self.auth.header()? {
            req = req.header(header::AUTHORIZATION, auth);
        }
        let req = req
            .body(Empty::new())
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(req))
            .await
            .map_err(|_| ClientError::Timeout("request"))?
            .map_err(|e| ClientError::Request(error_chain(&e)))?;
        if resp.status() == StatusCode::OK {
            return Ok(resp);
        }
        let code = resp.status().as_u16();
        let body = tokio::time::timeout(REQUEST_TIMEOUT, resp.into_body().collect())
            .await
            .ok()
            .and_then(|r| r.ok())
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if code == 410 {
            return Err(ClientError::Gone);
        }
        let message = serde_json::from_slice::<Status>(&body)
            .map(|s| s.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(512)]).into());
        Err(ClientError::Status { code, message })
    }

    /// Lists the ConfigMap (0 or 1 items) and the resourceVersion to watch from.
    pub async fn list(&self, target: &Target) -> Result<List, ClientError> {
        self.list_at(&target.list_path()).await
    }

    /// Lists the ConfigMaps at `path_and_query` (a list path with its selector).
    pub async fn list_at(&self, path_and_query: &str) -> Result<List, ClientError> {
        let resp = self.get(path_and_query).await?;
        let body = tokio::time::timeout(REQUEST_TIMEOUT, resp.into_body().collect())
            .await
            .map_err(|_| ClientError::Timeout("list"))??
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode(format!("list: {e}")))
    }

    /// Reads Secret `namespace/name`; `Ok(None)` when it does not exist (404).
    pub async fn get_secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Secret>, ClientError> {
        let resp = match self
            .get(&format!("/api/v1/namespaces/{namespace}/secrets/{name}"))
            .await
        {
            Ok(r) => r,
            Err(ClientError::Status { code: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let body = tokio::time::timeout(REQUEST_TIMEOUT, resp.into_body().collect())
            .await
            .map_err(|_| ClientError::Timeout("get"))??
            .to_bytes();
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| ClientError::Decode(format!("Secret: {e}")))
    }

    /// Starts a watch from `resource_version`.
    pub async fn watch(
        &self,
        target: &Target,
        resource_version: &str,
    ) -> Result<WatchStream, ClientError> {
        self.watch_at(&target.watch_path(resource_version)).await
    }

    /// Starts a watch at `path_and_query` (a watch path with its selector and resourceVersion).
    pub async fn watch_at(&self, path_and_query: &str) -> Result<WatchStream, ClientError> {
        let resp = self.get(path_and_query).await?;
        Ok(WatchStream {
            body: resp.into_body(),
            buf: BytesMut::new(),
        })
    }
}

/// "error: cause: cause" (hyper-util's errors hide the interesting part in `source`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// An open watch: yields events until the server ends the stream.
#[derive(Debug)]
pub struct WatchStream {
    body: Incoming,
    buf: BytesMut,
}

impl WatchStream {
    /// The next event; `Ok(None)` when the server ended the stream cleanly.
    pub async fn next(&mut self) -> Result<Option<WatchEvent>, ClientError> {
        loop {
            if let Some(line) = take_line(&mut self.buf) {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return decode_event(&line).map(Some).map_err(ClientError::Decode);
            }
            if self.buf.len() > MAX_LINE_BYTES {
                return Err(ClientError::Decode(format!(
                    "watch event longer than {MAX_LINE_BYTES} bytes"
                )));
            }
            let frame = tokio::time::timeout(WATCH_IDLE_TIMEOUT, self.body.frame())
                .await
                .map_err(|_| ClientError::Timeout("watch (no data)"))?;
            match frame {
                None => {
                    // A last event without a trailing newline still counts.
                    if self.buf.iter().all(u8::is_ascii_whitespace) {
                        return Ok(None);
                    }
                    let line = std::mem::take(&mut self.buf);
                    return decode_event(&line).map(Some).map_err(ClientError::Decode);
                }
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// Removes and returns the first complete line (without its `\n`).
fn take_line(buf: &mut BytesMut) -> Option<BytesMut> {
    let pos = buf.iter().position(|b| *b == b'\n')?;
    let line = buf.split_to(pos);
    buf.advance(1);
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_event_lines_decode() {
        let cm = r#"{"kind":"ConfigMap","metadata":{"name":"gw","resourceVersion":"5"},"data":{"a":"b"}}"#;
        let e = decode_event(format!(r#"{{"type":"ADDED","object":{cm}}}"#).as_bytes()).unwrap();
        let WatchEvent::Added(got) = e else {
            panic!("{e:?}")
        };
        assert_eq!(got.metadata.resource_version, "5");
        assert_eq!(got.data["a"], "b");
        assert!(matches!(
            decode_event(format!(r#"{{"type":"MODIFIED","object":{cm}}}"#).as_bytes()),
            Ok(WatchEvent::Modified(_))
        ));
        assert!(matches!(
            decode_event(format!(r#"{{"type":"DELETED","object":{cm}}}"#).as_bytes()),
            Ok(WatchEvent::Deleted(_))
        ));
        assert_eq!(
            decode_event(br#"{"type":"BOOKMARK","object":{"kind":"ConfigMap","metadata":{"resourceVersion":"99"}}}"#),
            Ok(WatchEvent::Bookmark("99".into()))
        );
        assert_eq!(
            decode_event(br#"{"type":"ERROR","object":{"kind":"Status","status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}}"#),
            Ok(WatchEvent::Error(Status {
                code: 410,
                reason: "Expired".into(),
                message: "too old resource version: 1 (5)".into()
            }))
        );
        for bad in [
            &b"not json"[..],
            br#"{"type":"EXPLODED","object":{}}"#,
            br#"{"type":"ADDED","object":{"data":7}}"#,
        ] {
            assert!(decode_event(bad).is_err());
        }
    }

    #[test]
    fn lines_are_split_across_and_within_chunks() {
        let mut buf = BytesMut::from(&b"{\"a\":1}\n{\"b\""[..]);
        assert_eq!(take_line(&mut buf).as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(take_line(&mut buf), None);
        buf.extend_from_slice(b":2}\n\n");
        assert_eq!(take_line(&mut buf).as_deref(), Some(&b"{\"b\":2}"[..]));
        assert_eq!(take_line(&mut buf).as_deref(), Some(&b""[..]));
        assert!(buf.is_empty());
    }

    #[test]
    fn list_responses_decode() {
        let l: List = serde_json::from_str(
            r#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"12"},"items":[]}"#,
        )
        .unwrap();
        assert_eq!(l.metadata.resource_version, "12");
        assert!(l.items.is_empty());
    }
}
