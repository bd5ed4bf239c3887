//! End-to-end harness: a real `portico-proxy` process, real HTTP backends and a client, all on
//! 127.0.0.1 with ephemeral ports.
//!
//! ```text
//!  test ──Client──> Proxy (child process, --manifests <tempdir>) ──HTTP_PROXY──> Backend (in-process)
//!                     │ ready file -> listen/admin ports                           records every request
//!                     └ stdout (access log) / stderr (logs) -> files, dumped when a test panics
//! ```
//!
//! Entry points: [`Proxy::start`] (and [`ProxyBuilder`]), [`Backend::start`], [`Client`],
//! [`raw_exchange`] for byte-exact requests, [`run_to_exit`] for startups that must fail.
//!
//! Helpers panic with context instead of returning errors: a panicking test is what makes
//! [`Proxy`]'s `Drop` dump the proxy's stdout and stderr next to the assertion message.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a proxy may take to write its ready file (the machine is small and shared; this
/// only bounds how long a broken start takes to fail).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for any single request made by a test.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Locating (and if needed building) the proxy binary
// ---------------------------------------------------------------------------------------------

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives inside the workspace")
        .to_path_buf()
}

fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                newest = newest.max(Some(m));
            }
        }
    }
    newest
}

/// The `portico-proxy` binary under test.
///
/// `PORTICO_PROXY_BIN` wins. Otherwise `<target>/debug/portico-proxy`, built once per test
/// process with `cargo build -p portico-proxy` when it is missing or older than the sources it
/// is built from (a stale binary would silently test old code).
pub fn proxy_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("PORTICO_PROXY_BIN") {
            return PathBuf::from(p);
        }
        let root = workspace_root();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let bin = target.join("debug").join("portico-proxy");
        let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
        let sources = ["proxy", "crds", "config"]
            .iter()
            .filter_map(|d| newest_mtime(&root.join(d).join("src")))
            .chain(newest_mtime(&root.join("Cargo.lock")))
            .max();
        let stale = match (built, sources) {
            (None, _) => true,
            (Some(b), Some(s)) => s > b,
            (Some(_), None) => false,
        };
        if stale {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "portico-proxy"])
                .current_dir(&root)
                .status()
                .expect("run cargo build -p portico-proxy");
            assert!(status.success(), "cargo build -p portico-proxy failed");
        }
        assert!(bin.exists(), "{} does not exist", bin.display());
        bin
    })
}

// ---------------------------------------------------------------------------------------------
// The proxy process
// ---------------------------------------------------------------------------------------------

/// Options for starting a proxy; [`Proxy::start`] covers the common case.
#[derive(Default)]
pub struct ProxyBuilder {
    manifests: Vec<(String, String)>,
    args: Vec<String>,
    manifests_from: Option<PathBuf>,
}

impl ProxyBuilder {
    /// Adds a manifest file (name inside the manifests dir, content).
    pub fn manifest(mut self, name: &str, content: &str) -> Self {
        self.manifests.push((name.to_string(), content.to_string()));
        self
    }

    /// Extra command-line arguments (e.g. `--shutdown-grace-seconds 20`).
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Copies every file of `dir` into the manifests dir, passing each through `rewrite`.
    pub fn manifests_from(mut self, dir: &Path) -> Self {
        self.manifests_from = Some(dir.to_path_buf());
        self
    }

    fn prepare(&self, rewrite: &dyn Fn(&str) -> String) -> (tempfile::TempDir, tempfile::TempDir) {
        let manifests = tempfile::Builder::new()
            .prefix("portico-manifests-")
            .tempdir()
            .expect("create manifests dir");
        let work = tempfile::Builder::new()
            .prefix("portico-e2e-")
            .tempdir()
            .expect("create work dir");
        if let Some(src) = &self.manifests_from {
            for e in std::fs::read_dir(src).expect("read example dir").flatten() {
                let p = e.path();
                if p.is_file() {
                    let text = std::fs::read_to_string(&p).expect("read example manifest");
                    std::fs::write(manifests.path().join(e.file_name()), rewrite(&text))
                        .expect("copy example manifest");
                }
            }
        }
        for (name, content) in &self.manifests {
            std::fs::write(manifests.path().join(name), content).expect("write manifest");
        }
        (manifests, work)
    }

    fn spawn(&self, manifests: &Path, work: &Path, ready: Option<&Path>) -> Child {
        let stdout = std::fs::File::create(work.join("stdout.log")).expect("create stdout.log");
        let stderr = std::fs::File::create(work.join("stderr.log")).expect("create stderr.log");
        let mut cmd = Command::new(proxy_bin());
        cmd.arg("--manifests").arg(manifests).args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ]);
        if let Some(ready) = ready {
            cmd.arg("--ready-file").arg(ready);
        }
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        cmd.spawn().expect("spawn portico-proxy")
    }

    /// Starts the proxy and waits (bounded) for its ready file.
    pub async fn start(self) -> Proxy {
        self.start_rewriting(&|s| s.to_string()).await
    }

    /// Like [`ProxyBuilder::start`], rewriting files copied by [`ProxyBuilder::manifests_from`].
    pub async fn start_rewriting(self, rewrite: &dyn Fn(&str) -> String) -> Proxy {
        let (manifests, work) = self.prepare(rewrite);
        let ready = work.path().join("ready.json");
        let child = self.spawn(manifests.path(), work.path(), Some(&ready));
        let mut proxy = Proxy {
            child: Some(child),
            manifests,
            work,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            exit: None,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = proxy.try_wait() {
                panic!(
                    "portico-proxy exited before it was ready: {status}\n{}",
                    proxy.logs()
                );
            }
            if let Some((listen, admin)) = read_ready_file(&ready) {
                proxy.listen = listen;
                proxy.admin = admin;
                return proxy;
            }
            if Instant::now() > deadline {
                panic!(
                    "portico-proxy wrote no ready file within {READY_TIMEOUT:?}\n{}",
                    proxy.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn read_ready_file(path: &Path) -> Option<(SocketAddr, SocketAddr)> {
    // The file may be seen half-written: anything that does not parse is "not yet".
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let listen = v.get("listen")?.as_str()?.parse().ok()?;
    let admin = v.get("admin")?.as_str()?.parse().ok()?;
    Some((listen, admin))
}

/// A running `portico-proxy`; killed on drop. Logs are dumped when dropped during a panic.
pub struct Proxy {
    child: Option<Child>,
    manifests: tempfile::TempDir,
    work: tempfile::TempDir,
    /// Public listener.
    pub listen: SocketAddr,
    /// Admin listener (`/metrics`, `/healthz`, `/readyz`).
    pub admin: SocketAddr,
    exit: Option<ExitStatus>,
}

impl Proxy {
    /// A builder with one manifest file per `(name, content)`.
    pub fn builder() -> ProxyBuilder {
        ProxyBuilder::default()
    }

    /// Starts a proxy serving the given manifest files.
    pub async fn start(manifests: &[(&str, &str)]) -> Proxy {
        let mut b = ProxyBuilder::default();
        for (name, content) in manifests {
            b = b.manifest(name, content);
        }
        b.start().await
    }

    /// `http://<listen><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.listen, path)
    }

    /// `http://<admin><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// The watched manifests directory.
    pub fn manifests_dir(&self) -> &Path {
        self.manifests.path()
    }

    /// Replaces a manifest atomically (write a hidden temp file, then rename over the target),
    /// the way Kubernetes volume updates and most editors do, so the watcher never sees a
    /// half-written file.
    pub fn write_manifest(&self, name: &str, content: &str) {
        let tmp = self.manifests.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, content).expect("write temp manifest");
        std::fs::rename(&tmp, self.manifests.path().join(name)).expect("rename manifest");
    }

    /// Everything the proxy wrote on stdout so far (the access log).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.work.path().join("stdout.log")).unwrap_or_default()
    }

    /// Everything the proxy wrote on stderr so far (its logs).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.work.path().join("stderr.log")).unwrap_or_default()
    }

    /// Both logs, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "----- proxy stdout -----\n{}\n----- proxy stderr -----\n{}\n------------------------",
            tail(&self.stdout(), 8000),
            tail(&self.stderr(), 8000)
        )
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("proxy child").id()
    }

    /// Sends SIGTERM (through `kill(1)`, which keeps the harness free of unsafe code).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// The exit status if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            let child = self.child.as_mut().expect("proxy child");
            self.exit = child.try_wait().expect("try_wait proxy");
        }
        self.exit
    }

    /// Waits (bounded) for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded) for an access log line (stdout, one JSON object per line) whose
    /// `requestId` is `request_id`.
    pub async fn access_log_line(&self, request_id: &str, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            for line in self.stdout().lines() {
                if !line.contains(request_id) {
                    continue;
                }
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                    && v.get("requestId").and_then(|x| x.as_str()) == Some(request_id)
                {
                    return v;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no access log line with requestId {request_id} within {timeout:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fetches `/metrics` from the admin listener.
    pub async fn metrics(&self, client: &Client) -> String {
        let r = client.get(&self.admin_url("/metrics")).await;
        assert_eq!(r.status, 200, "GET /metrics: {}\n{}", r.text(), self.logs());
        r.text()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Runs a proxy that is expected to exit by itself (e.g. on an invalid manifest) and returns
/// its exit status, stdout and stderr; panics if it is still running after `timeout`.
pub async fn run_to_exit(
    manifests: &[(&str, &str)],
    timeout: Duration,
) -> (ExitStatus, String, String) {
    let mut b = ProxyBuilder::default();
    for (name, content) in manifests {
        b = b.manifest(name, content);
    }
    let (dir, work) = b.prepare(&|s| s.to_string());
    let ready = work.path().join("ready.json");
    let mut child = b.spawn(dir.path(), work.path(), Some(&ready));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait proxy") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "portico-proxy still running after {timeout:?} (ready file: {:?})\nstderr:\n{}",
                std::fs::read_to_string(&ready).ok(),
                std::fs::read_to_string(work.path().join("stderr.log")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let out = std::fs::read_to_string(work.path().join("stdout.log")).unwrap_or_default();
    let err = std::fs::read_to_string(work.path().join("stderr.log")).unwrap_or_default();
    (status, out, err)
}

// ---------------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------------

/// One request as a [`Backend`] received it.
#[derive(Clone, Debug)]
pub struct Received {
    /// Method.
    pub method: String,
    /// Path, exactly as on the request line (not decoded).
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Received {
    /// A header value as a string ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

#[derive(Default)]
struct BackendState {
    name: String,
    started: AtomicUsize,
    received: Mutex<Vec<Received>>,
    delay_ms: AtomicU64,
    held: AtomicBool,
    released: tokio::sync::Notify,
}

/// An in-process HTTP/1.1 backend on 127.0.0.1:0.
///
/// It records every request and answers `200` with `x-backend: <name>` and a JSON body
/// `{"backend","method","path","query","bodyLength"}`. Request headers steer it:
/// `x-echo-status: N` changes the status, `x-echo-header: name=value` adds a response header,
/// `x-echo-bytes: N` answers N bytes of [`pattern`] instead of the JSON, and `x-sleep-ms: N`
/// (or [`Backend::set_delay`]) makes it sleep before answering. [`Backend::hold`] makes it
/// keep every request unanswered until [`Backend::release`], for tests that need a request
/// in flight for as long as they take, however slow the machine.
pub struct Backend {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<BackendState>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// Starts a backend named `name` (the name is echoed in `x-backend` and the body).
    pub async fn start(name: &str) -> Backend {
        let state = Arc::new(BackendState {
            name: name.to_string(),
            ..Default::default()
        });
        let st = state.clone();
        let (addr, task) = serve_connections(move |stream| {
            let st = st.clone();
            async move {
                let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            }
        })
        .await;
        Backend { addr, state, task }
    }

    /// `127.0.0.1:PORT`, as used in stage variables.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// Makes every following request sleep this long before the response.
    pub fn set_delay(&self, d: Duration) {
        self.state
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Holds every request (after reading it, before answering) until [`Backend::release`].
    pub fn hold(&self) {
        self.state.held.store(true, Ordering::SeqCst);
    }

    /// Answers the held requests, and the next ones at once.
    pub fn release(&self) {
        self.state.held.store(false, Ordering::SeqCst);
        self.state.released.notify_waiters();
    }

    /// Requests whose headers arrived (counted before the body is read).
    pub fn started(&self) -> usize {
        self.state.started.load(Ordering::SeqCst)
    }

    /// Requests received in full, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("backend lock").clone()
    }

    /// Waits (bounded) until at least `n` requests have started.
    pub async fn wait_started(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.started() < n {
            assert!(
                Instant::now() < deadline,
                "backend {} saw {} requests, expected {n} within {timeout:?}",
                self.state.name,
                self.started()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `n` bytes of a recognisable, non-repeating-per-KiB pattern (`i % 251`).
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

async fn handle(
    st: Arc<BackendState>,
    req: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, hyper::Error> {
    st.started.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let rec = Received {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers.clone(),
        body: body.clone(),
    };
    st.received.lock().expect("backend lock").push(rec.clone());
    loop {
        // Registered before the flag is read, so a release in between is not missed.
        let released = st.released.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        if !st.held.load(Ordering::SeqCst) {
            break;
        }
        released.await;
    }
    let delay = rec
        .header("x-sleep-ms")
        .parse::<u64>()
        .unwrap_or_else(|_| st.delay_ms.load(Ordering::SeqCst));
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = rec.header("x-echo-status").parse::<u16>().unwrap_or(200);
    let (content_type, body) = match rec.header("x-echo-bytes").parse::<usize>() {
        Ok(n) => ("application/octet-stream", Bytes::from(pattern(n))),
        Err(_) => {
            let json = serde_json::json!({
                "backend": st.name,
                "method": rec.method,
                "path": rec.path,
                "query": rec.query,
                "bodyLength": rec.body.len(),
            });
            ("application/json", Bytes::from(json.to_string()))
        }
    };
    let mut resp = http::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-backend", st.name.as_str());
    if let Some((k, v)) = rec.header("x-echo-header").split_once('=') {
        resp = resp.header(k, v);
    }
    Ok(resp.body(Full::new(body)).expect("valid response"))
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// A response read in full.
#[derive(Debug)]
pub struct Response {
    /// HTTP version of the status line.
    pub version: http::Version,
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Response {
    /// Body as UTF-8 (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    /// A header value ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The `x-amzn-RequestId` header; panics when absent or empty.
    pub fn request_id(&self) -> String {
        // REST APIs: x-amzn-RequestId; HTTP APIs: apigw-requestid.
        let id = match self.header("x-amzn-requestid") {
            "" => self.header("apigw-requestid"),
            id => id,
        };
        assert!(
            !id.is_empty(),
            "response {} has no x-amzn-RequestId header: {:?}",
            self.status,
            self.headers
        );
        id.to_string()
    }
}

/// A keep-alive HTTP/1.1 client with a per-request timeout.
#[derive(Clone)]
pub struct Client {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    /// A new client with its own connection pool.
    pub fn new() -> Self {
        Client {
            inner: HyperClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// GET `url`; panics on transport errors and timeouts.
    pub async fn get(&self, url: &str) -> Response {
        self.send(Method::GET, url, &[], Bytes::new()).await
    }

    /// Sends a request; panics on transport errors and timeouts.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Response {
        self.try_send(method.clone(), url, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e:#}"))
    }

    /// Sends a request; transport errors and timeouts are returned.
    pub async fn try_send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<Response> {
        let mut req = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into()))?;
        let fut = async {
            let resp = self.inner.request(req).await?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            anyhow::Ok(Response {
                version: parts.version,
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, fut)
            .await
            .map_err(|_| anyhow::anyhow!("timed out after {REQUEST_TIMEOUT:?}"))?
    }
}

/// Sends `request` byte for byte on a fresh connection (send `Connection: close`), reads until
/// the server closes, and parses the response (chunked bodies are decoded).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Response {
    let fut = async {
        let mut s = TcpStream::connect(addr).await?;
        // One write: small requests arrive in one segment, so a server answering before it has
        // read the body has nothing unread in its socket (no RST racing our read).
        s.write_all(request).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("raw exchange with {addr} timed out"))
        .unwrap_or_else(|e| panic!("raw exchange with {addr}: {e:#}"));
    parse_raw_response(&buf)
        .unwrap_or_else(|| panic!("unparseable response: {:?}", String::from_utf8_lossy(&buf)))
}

fn parse_raw_response(buf: &[u8]) -> Option<Response> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let version = match status_line.split_whitespace().next()? {
        "HTTP/1.0" => http::Version::HTTP_10,
        "HTTP/1.1" => http::Version::HTTP_11,
        _ => return None,
    };
    let code: u16 = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let (k, v) = line.split_once(':')?;
        headers.append(
            http::HeaderName::from_bytes(k.trim().as_bytes()).ok()?,
            http::HeaderValue::from_str(v.trim()).ok()?,
        );
    }
    let mut body = buf[end + 4..].to_vec();
    let chunked = headers
        .get("transfer-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    } else if let Some(len) = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    Some(Response {
        version,
        status: StatusCode::from_u16(code).ok()?,
        headers,
        body: Bytes::from(body),
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = data.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&data[..nl]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        data = &data[nl + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics and polling helpers
// ---------------------------------------------------------------------------------------------

/// Sums the samples of `metric` (exact name, e.g. `portico_count`) whose labels include every
/// `name="value"` pair in `labels`. `None` when no sample matches.
pub fn metric_sum(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let (label_part, value) = if let Some(r) = rest.strip_prefix('{') {
            // The last brace: a label value may hold one (`resource="/items/{id}"`).
            let Some((l, v)) = r.rsplit_once('}') else {
                continue;
            };
            (l, v)
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue; // another metric with this prefix (e.g. `_bucket`)
        };
        let ok = labels
            .iter()
            .all(|(k, v)| label_part.contains(&format!("{k}=\"{v}\"")));
        if !ok {
            continue;
        }
        if let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// A test server: binds an ephemeral 127.0.0.1 port and runs `handle` on every connection it
/// accepts, each on its own task. Returns the address and the accept loop's task (abort it to
/// stop accepting).
pub async fn serve_connections<F, Fut>(handle: F) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(stream));
        }
    });
    (addr, task)
}

/// A 127.0.0.1 port free right now, for programs that must be told their port (redis-server,
/// the example's backend.py) rather than report an ephemeral one.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Polls `check` every 50 ms until it returns `Some`, panicking with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The example's own backend
// ---------------------------------------------------------------------------------------------

/// `examples/mobile-backend/backend.py` (content, comments and the example identity
/// provider) on a free 127.0.0.1 port; stopped on drop.
pub struct ExampleBackend {
    child: Child,
    port: u16,
}

impl ExampleBackend {
    /// Starts `python3 backend.py PORT env` and waits until it answers.
    pub async fn start(env: &str) -> ExampleBackend {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mobile-backend/backend.py");
        let port = free_port();
        let child = Command::new("python3")
            .arg(&script)
            .args([&port.to_string(), env])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start python3 {} ({e})", script.display()));
        let mut backend = ExampleBackend { child, port };
        let url = format!("http://127.0.0.1:{port}/.well-known/jwks.json");
        let client = Client::new();
        // Bounded (60 s) only to fail a broken start; an exited backend.py fails at once
        // (port 0 from free_port() taken meanwhile, a syntax error), rather than this test
        // talking to whatever holds the port.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = backend.child.try_wait().expect("try_wait backend.py") {
                panic!("backend.py {env} on port {port} exited: {status}");
            }
            let answered = client
                .try_send(Method::GET, &url, &[], Bytes::new())
                .await
                .is_ok_and(|r| r.status == StatusCode::OK);
            if answered && backend.child.try_wait().ok().flatten().is_none() {
                return backend;
            }
            assert!(
                Instant::now() < deadline,
                "backend.py {env} did not answer on port {port} within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for ExampleBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_responses_with_chunked_bodies_are_decoded() {
        let raw = b"HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        let r = parse_raw_response(raw).unwrap();
        assert_eq!(r.status, 413);
        assert_eq!(r.text(), "hello world");
    }

    #[test]
    fn metric_sum_matches_labels_and_skips_suffixed_series() {
        let text = "# HELP portico_count x\nportico_count{api=\"a\",stage=\"dev\",resource=\"/p\",method=\"GET\"} 3\nportico_count{api=\"a\",stage=\"prod\",resource=\"/p\",method=\"GET\"} 1\nportico_count_total 9\nportico_config_reload_success 1\n";
        assert_eq!(
            metric_sum(text, "portico_count", &[("stage", "dev")]),
            Some(3.0)
        );
        assert_eq!(metric_sum(text, "portico_count", &[]), Some(4.0));
        assert_eq!(
            metric_sum(text, "portico_config_reload_success", &[]),
            Some(1.0)
        );
        assert_eq!(metric_sum(text, "portico_5xx_error", &[]), None);
    }
}

// ---------------------------------------------------------------------------------------------
// Manifest snippets (shapes from docs/manifest-spec.md)
// ---------------------------------------------------------------------------------------------

/// Building blocks for manifests written inline by the tests.
pub mod yaml {
    /// A `Stage` named `name` serving RestApi `api`; `extra` is more `spec:` lines, each
    /// indented by two spaces (e.g. `"  basePath: /v1\n"`).
    pub fn stage(name: &str, api: &str, extra: &str) -> String {
        format!(
            "apiVersion: portico.dev/v1alpha1\nkind: Stage\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  restApiRef: {{name: {api}}}\n{extra}"
        )
    }

    /// A `RestApi` named `name`; `spec` is the body of `spec:`, indented by two spaces.
    pub fn rest_api(name: &str, spec: &str) -> String {
        format!(
            "apiVersion: portico.dev/v1alpha1\nkind: RestApi\nmetadata: {{name: {name}, namespace: default}}\nspec:\n{spec}"
        )
    }

    /// An inline MOCK integration answering 200 with a `text/plain` `body`.
    pub fn mock(body: &str) -> String {
        format!(
            "{{type: MOCK, mockResponse: {{statusCode: 200, headers: {{content-type: text/plain}}, body: \"{body}\"}}}}"
        )
    }

    /// An inline HTTP_PROXY integration to `uri`.
    pub fn http_proxy(uri: &str) -> String {
        format!("{{type: HTTP_PROXY, uri: \"{uri}\"}}")
    }
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

/// A `redis-server` of this test alone, on a free port; killed on drop. Panics with a clear
/// message when `redis-server` is not installed (the test command installs it).
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Starts one and waits until it answers `PING`.
    pub async fn start() -> RedisServer {
        // redis-server needs an explicit port: take a free one from the OS first.
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}); install it (apt-get install -y redis-server): \
                     scripts/test.sh does"
                )
            });
        let mut server = RedisServer { child, port };
        // Bounded only to fail a broken start (the machine may be busy).
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = server.child.try_wait().expect("try_wait redis-server") {
                panic!("redis-server on port {port} exited: {status}");
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await {
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").await.is_ok()
                    && s.read_exact(&mut buf).await.is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    return server;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not answer PING within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads from `s` until `buf` holds a whole response with a `Content-Length` body; returns
/// its status line and body (the bytes after it stay in `buf`). Panics at end of stream.
pub async fn read_response_with_length(
    s: &mut (impl tokio::io::AsyncRead + Unpin),
    buf: &mut Vec<u8>,
) -> (String, String) {
    match try_read_response(s, buf).await {
        Ok((status, body)) => (status, String::from_utf8_lossy(&body).into_owned()),
        Err(e) => panic!("{e}; so far: {:?}", String::from_utf8_lossy(buf)),
    }
}

/// Reads from `s` until `buf` holds a whole response with a `Content-Length` body; returns
/// its status line and body bytes (the bytes after it stay in `buf`), or why not: the stream
/// ended or failed first, or no read completed within [`REQUEST_TIMEOUT`].
pub async fn try_read_response(
    s: &mut (impl tokio::io::AsyncRead + Unpin),
    buf: &mut Vec<u8>,
) -> Result<(String, Vec<u8>), String> {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                buf.drain(..end + 4 + len);
                let status = head.lines().next().unwrap_or_default().to_string();
                return Ok((status, body));
            }
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, s.read(&mut chunk)).await {
            Err(_) => return Err(format!("no bytes within {REQUEST_TIMEOUT:?}")),
            Ok(Ok(0)) => return Err("end of stream".into()),
            Ok(Err(e)) => return Err(format!("reading the answer: {e}")),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
