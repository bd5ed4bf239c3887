//! bench/ws.sh's WebSocket load client and echo backend (one binary, one thread each).
//!
//! ```text
//! ws-bench echo  --listen 127.0.0.1:18186
//! ws-bench check --url ws://127.0.0.1:18183/ws --message '{"ok":true}'
//! ws-bench load  --url ws://127.0.0.1:18183/ws --message '{"ok":true}' \
//!                --connections 32 --duration 5 [--pids 123,456]
//! ```
//!
//! `load` opens every connection first, then each one sends the text message, waits for the
//! answer (which must be the same text) and sends again (ping-pong, closed loop), until the
//! duration is over; then it closes them. The utime + stime of `--pids` (from
//! `/proc/PID/stat`) is read right after the last connection is open and right after the
//! last answer, so the gateway's CPU covers the messages only, not the handshakes. It prints
//! one line:
//!
//! `RESULT messages=N duration_us=D errors=E p50_us=P p99_us=Q cpu_ticks=T`
//!
//! errors: answers that were not the message (AWS's error frames), and connections that
//! failed or closed during the run.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn usage() -> ! {
    eprintln!(
        "usage: ws-bench echo --listen ADDR\n       ws-bench check --url URL --message TEXT\n       ws-bench load --url URL --message TEXT --connections N --duration SECS [--pids P,P]"
    );
    std::process::exit(2)
}

struct Args {
    cmd: String,
    listen: String,
    url: String,
    message: String,
    connections: usize,
    duration: f64,
    pids: Vec<u32>,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let cmd = it.next().unwrap_or_else(|| usage());
    let mut a = Args {
        cmd,
        listen: String::new(),
        url: String::new(),
        message: String::new(),
        connections: 32,
        duration: 5.0,
        pids: Vec::new(),
    };
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--listen" => a.listen = v,
            "--url" => a.url = v,
            "--message" => a.message = v,
            "--connections" => a.connections = v.parse().unwrap_or_else(|_| usage()),
            "--duration" => a.duration = v.parse().unwrap_or_else(|_| usage()),
            "--pids" => {
                a.pids = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().unwrap_or_else(|_| usage()))
                    .collect()
            }
            _ => usage(),
        }
    }
    a
}

/// utime + stime of the processes, in clock ticks (all threads: /proc/PID/stat).
fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|s| {
            // Field 2 (comm) may hold spaces: fields 14 and 15 counted after the last ')'.
            let rest = &s[s.rfind(')').map_or(0, |i| i + 2)..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0)
        })
        .sum()
}

async fn open(url: &str) -> Result<Ws, String> {
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    Ok(ws)
}

/// The next text or binary frame's payload as text (pings and pongs skipped).
async fn answer(ws: &mut Ws) -> Result<String, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Message::Binary(b))) => return Ok(String::from_utf8_lossy(&b).into_owned()),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(f))) => return Err(format!("closed: {f:?}")),
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("the connection ended".into()),
        }
    }
}

async fn echo(listen: &str) {
    let listener = TcpListener::bind(listen).await.expect("bind");
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            while let Some(Ok(m)) = ws.next().await {
                match m {
                    Message::Text(_) | Message::Binary(_) => {
                        if ws.send(m).await.is_err() {
                            return;
                        }
                    }
                    Message::Close(_) => return,
                    _ => {}
                }
            }
        });
    }
}

struct Tally {
    messages: u64,
    errors: u64,
    latencies_us: Vec<u32>,
}

/// One connection's closed loop until `deadline`; gives the socket back to be closed.
async fn ping_pong(mut ws: Ws, message: String, deadline: Instant) -> (Tally, Option<Ws>) {
    let mut t = Tally {
        messages: 0,
        errors: 0,
        latencies_us: Vec::with_capacity(1 << 16),
    };
    while Instant::now() < deadline {
        let sent = Instant::now();
        if ws.send(Message::text(message.clone())).await.is_err() {
            t.errors += 1;
            return (t, None);
        }
        match answer(&mut ws).await {
            Ok(a) if a == message => {
                t.messages += 1;
                let us = sent.elapsed().as_micros();
                t.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Ok(a) => {
                t.errors += 1;
                if t.errors == 1 {
                    eprintln!("unexpected answer: {}", &a[..a.len().min(200)]);
                }
            }
            Err(e) => {
                eprintln!("connection failed: {e}");
                t.errors += 1;
                return (t, None);
            }
        }
    }
    (t, Some(ws))
}

async fn load(a: &Args) {
    let mut sockets = Vec::with_capacity(a.connections);
    for _ in 0..a.connections {
        match open(&a.url).await {
            Ok(ws) => sockets.push(ws),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
    }
    let ticks_before = cpu_ticks(&a.pids);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.duration);
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|ws| tokio::spawn(ping_pong(ws, a.message.clone(), deadline)))
        .collect();
    let mut total = Tally {
        messages: 0,
        errors: 0,
        latencies_us: Vec::new(),
    };
    let mut open_sockets = Vec::new();
    for task in tasks {
        let (t, ws) = task.await.expect("a connection task");
        total.messages += t.messages;
        total.errors += t.errors;
        total.latencies_us.extend(t.latencies_us);
        open_sockets.extend(ws);
    }
    let elapsed = start.elapsed();
    let ticks_after = cpu_ticks(&a.pids);
    // Close outside the measured window (a close frame each, the answer awaited briefly).
    let closes: Vec<_> = open_sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let _ = ws.close(None).await;
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
            })
        })
        .collect();
    for c in closes {
        let _ = c.await;
    }
    let l = &mut total.latencies_us;
    l.sort_unstable();
    let pct = |p: f64| -> u32 {
        if l.is_empty() {
            0
        } else {
            l[((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1]
        }
    };
    println!(
        "RESULT messages={} duration_us={} errors={} p50_us={} p99_us={} cpu_ticks={}",
        total.messages,
        elapsed.as_micros(),
        total.errors,
        pct(0.50),
        pct(0.99),
        ticks_after - ticks_before
    );
}

async fn check(a: &Args) {
    let result = async {
        let mut ws = open(&a.url).await?;
        ws.send(Message::text(a.message.clone()))
            .await
            .map_err(|e| e.to_string())?;
        let got = tokio::time::timeout(Duration::from_secs(5), answer(&mut ws))
            .await
            .map_err(|_| "no answer within 5 s".to_string())??;
        let _ = ws.close(None).await;
        Ok::<_, String>(got)
    }
    .await;
    match result {
        Ok(got) if got == a.message => println!("{got}"),
        Ok(got) => {
            eprintln!("answered '{}' instead of '{}'", got, a.message);
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match a.cmd.as_str() {
        "echo" if !a.listen.is_empty() => rt.block_on(echo(&a.listen)),
        "check" if !a.url.is_empty() => rt.block_on(check(&a)),
        "load" if !a.url.is_empty() => rt.block_on(load(&a)),
        _ => usage(),
    }
}
