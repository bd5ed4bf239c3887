//! Access log: one line per request for stages with an access log format, and one in the
//! gateway's own format ([`GATEWAY_FORMAT`]) for requests no stage took (unknown hosts and
//! paths, a missing `Host`, heads that could not be parsed), written to stdout by a dedicated
//! thread so the request path never blocks on I/O.
//!
//! ```text
//!  respond::finish --try_send(RequestCtx)--> bounded channel --> writer thread
//!        (full: drop + portico_access_log_dropped_total)          render + BufWriter(stdout)
//! ```
//!
//! The writer renders (`Template::render`, values JSON-escaped) off the request path. It
//! drains without being woken while busy (sleeping briefly when idle) so that senders rarely
//! pay for a wake-up; after a second of silence it blocks on the channel.

use crate::pipeline::RequestCtx;
use crate::template::Mode;
use prometheus::IntCounter;
use std::io::Write;
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

const CAPACITY: usize = 4096;
const IDLE_SLEEP: Duration = Duration::from_millis(5);
const IDLE_TICKS_BEFORE_BLOCKING: u32 = 200;

enum Msg {
    Line(Box<RequestCtx>),
    Flush(mpsc::Sender<()>),
}

/// Handle to the writer thread.
pub struct AccessLog {
    tx: SyncSender<Msg>,
    dropped: IntCounter,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl AccessLog {
    /// Starts a writer to stdout.
    pub fn stdout(dropped: IntCounter) -> Self {
        Self::start(std::io::stdout(), dropped)
    }

    /// Starts a writer to `out`.
    pub fn start<W: Write + Send + 'static>(out: W, dropped: IntCounter) -> Self {
        let (tx, rx) = mpsc::sync_channel(CAPACITY);
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer_loop(rx, out))
            .expect("spawning the access log thread");
        AccessLog {
            tx,
            dropped,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Queues the line for `ctx`; never blocks (drops and counts when the queue is full).
    pub fn log(&self, ctx: RequestCtx) {
        match self.tx.try_send(Msg::Line(Box::new(ctx))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    /// Waits (up to `timeout`) until every queued line is written and flushed.
    pub fn flush(&self, timeout: Duration) {
        let (done_tx, done_rx) = mpsc::channel();
        if self.tx.send(Msg::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv_timeout(timeout);
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush(Duration::from_secs(2));
        // The thread ends when the channel closes; do not wait on it beyond the flush.
        drop(self.thread.lock().map(|mut t| t.take()));
    }
}

/// The line of a request no stage took.
pub const GATEWAY_FORMAT: &str = concat!(
    r#"{"requestId":"$context.requestId","ip":"$context.identity.sourceIp","#,
    r#""requestTime":"$context.requestTime","httpMethod":"$context.httpMethod","#,
    r#""path":"$context.path","protocol":"$context.protocol","status":"$context.status","#,
    r#""responseLength":"$context.responseLength","errorType":"$context.error.responseType","#,
    r#""errorMessage":"$context.error.message"}"#
);

static GATEWAY_TEMPLATE: std::sync::LazyLock<crate::template::Template> =
    std::sync::LazyLock::new(|| crate::template::Template::parse(GATEWAY_FORMAT));

/// Whether `ctx` gets a line: its stage has a format, or no stage took it.
pub fn wants_line(ctx: &RequestCtx) -> bool {
    ctx.stage().is_none_or(|s| s.access_log.is_some())
}

/// Renders the line for `ctx` under its stage's format, or the gateway's when no stage took
/// it (nothing when its stage has no format).
pub fn render_line(ctx: &RequestCtx, out: &mut String) -> bool {
    let template = match ctx.stage() {
        Some(s) => s.access_log.as_ref(),
        None => Some(&*GATEWAY_TEMPLATE),
    };
    match template {
        Some(t) => {
            t.render(ctx, Mode::AccessLog, out);
            out.push('\n');
            true
        }
        None => false,
    }
}

fn writer_loop<W: Write>(rx: Receiver<Msg>, out: W) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut line = String::with_capacity(512);
    let mut idle = 0u32;
    let mut pending = false;
    loop {
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                if pending {
                    let _ = out.flush();
                    pending = false;
                }
                if idle < IDLE_TICKS_BEFORE_BLOCKING {
                    idle += 1;
                    std::thread::sleep(IDLE_SLEEP);
                    continue;
                }
                match rx.recv_timeout(Duration::from_secs(3600)) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        idle = 0;
        match msg {
            Msg::Line(ctx) => {
                line.clear();
                if render_line(&ctx, &mut line) {
                    let _ = out.write_all(line.as_bytes());
                    pending = true;
                }
            }
            Msg::Flush(done) => {
                let _ = out.flush();
                pending = false;
                let _ = done.send(());
            }
        }
    }
    let _ = out.flush();
}
