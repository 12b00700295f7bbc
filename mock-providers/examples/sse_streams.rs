//! Memory measurement: holds N concurrent SSE streams open against a running mock and
//! reports the server's resident memory (from `/proc/PID/status`) idle and with all N open.
//!
//! Run the mock with a latency model so streams stay open (bench/streams.toml), then:
//! `sse_streams PID 127.0.0.1:PORT [N=2000]`. Loopback only; at most 10 000 streams; gives
//! up after 120 s.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Stream a long answer."}],"stream":true,"stream_options":{"include_usage":true}}"#;

/// What happened to one stream.
#[derive(Debug)]
enum Event {
    FirstChunk,
    Done(bool),
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn stream(addr: SocketAddr, events: mpsc::UnboundedSender<Event>) {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        let _ = events.send(Event::Done(false));
        return;
    };
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer sk-bench\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    if s.write_all(request.as_bytes()).await.is_err() {
        let _ = events.send(Event::Done(false));
        return;
    }
    let mut seen = Vec::with_capacity(8192);
    let mut buf = [0u8; 4096];
    let mut first = false;
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                seen.extend_from_slice(&buf[..n]);
                if !first && seen.windows(6).any(|w| w == b"data: ") {
                    first = true;
                    let _ = events.send(Event::FirstChunk);
                }
                // Keep only a tail: enough to find the final marker.
                if seen.len() > 4096 {
                    seen.drain(..seen.len() - 64);
                }
            }
        }
    }
    let done = seen.windows(12).any(|w| w == b"data: [DONE]");
    let _ = events.send(Event::Done(done));
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: sse_streams PID 127.0.0.1:PORT [N]");
        std::process::exit(2);
    }
    let pid: u32 = args[1].parse().expect("PID");
    let addr: SocketAddr = args[2].parse().expect("address");
    assert!(addr.ip().is_loopback(), "loopback addresses only");
    let n: usize = args.get(3).map_or(2000, |v| v.parse().expect("N"));
    assert!(n <= 10_000, "at most 10 000 streams");

    let (idle_rss, _) = rss_kib(pid);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        tasks.push(tokio::spawn(stream(addr, tx.clone())));
    }
    drop(tx);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let (mut open, mut finished, mut complete, mut peak_open_rss) = (0usize, 0usize, 0usize, 0u64);
    let mut all_open_at = None;
    while finished < n {
        let event = tokio::time::timeout_at(deadline, rx.recv()).await;
        match event {
            Ok(Some(Event::FirstChunk)) => {
                open += 1;
                if open - finished == n {
                    all_open_at = Some(tokio::time::Instant::now());
                }
            }
            Ok(Some(Event::Done(ok))) => {
                if open - finished == n {
                    peak_open_rss = peak_open_rss.max(rss_kib(pid).0);
                }
                finished += 1;
                complete += usize::from(ok);
            }
            Ok(None) => break,
            Err(_) => {
                eprintln!("gave up after 120 s");
                break;
            }
        }
        if open - finished == n {
            peak_open_rss = peak_open_rss.max(rss_kib(pid).0);
        }
    }
    for t in tasks {
        t.abort();
    }
    let (_, hwm) = rss_kib(pid);
    println!(
        "streams {n}: all open at once: {}; completed with [DONE]: {complete}",
        all_open_at.is_some()
    );
    println!(
        "server RSS idle {:.1} MiB, with all {n} open {:.1} MiB, peak (VmHWM) {:.1} MiB, per stream {:.1} KiB",
        idle_rss as f64 / 1024.0,
        peak_open_rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        (peak_open_rss.saturating_sub(idle_rss)) as f64 / n as f64
    );
}
