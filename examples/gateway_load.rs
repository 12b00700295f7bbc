//! A closed-loop load driver for `benches/gateway/overhead.sh`: `--conns` workers send
//! chat completions back to back to `--url` for `--secs` seconds and print one line of
//! JSON — requests per second, latency percentiles (whole response) and, with
//! `--stream`, time to the first body chunk — so the mock measured directly and through
//! the gateway can be compared in the same run.
//!
//! `cargo run --example gateway_load -- --url http://127.0.0.1:18090/v1/chat/completions
//!  --key sk-bench --conns 64 --secs 5 [--stream]`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;

const BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the load generator, please."}],"max_tokens":16"#;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url =
        arg(&args, "--url").unwrap_or_else(|| "http://127.0.0.1:18090/v1/chat/completions".into());
    let key = arg(&args, "--key").unwrap_or_else(|| "sk-bench".into());
    let conns: usize = arg(&args, "--conns")
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let secs: u64 = arg(&args, "--secs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let stream = args.iter().any(|a| a == "--stream");
    let body = if stream {
        format!("{BODY},\"stream\":true}}")
    } else {
        format!("{BODY}}}")
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conns)
        .build()
        .expect("client");
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..conns {
        let (client, url, key, body, stop) = (
            client.clone(),
            url.clone(),
            key.clone(),
            body.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new(3).expect("histogram");
            let mut first = Histogram::<u64>::new(3).expect("histogram");
            let (mut ok, mut failed) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let sent = client
                    .post(&url)
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let Ok(r) = sent else {
                    failed += 1;
                    continue;
                };
                let good = r.status().is_success();
                let mut chunks = r.bytes_stream();
                let mut seen_first = false;
                while let Some(c) = chunks.next().await {
                    if !seen_first && c.is_ok() {
                        seen_first = true;
                        let _ = first.record(t0.elapsed().as_micros() as u64);
                    }
                }
                let _ = latency.record(t0.elapsed().as_micros() as u64);
                if good {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
            (latency, first, ok, failed)
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latency = Histogram::<u64>::new(3).expect("histogram");
    let mut first = Histogram::<u64>::new(3).expect("histogram");
    let (mut ok, mut failed) = (0, 0);
    for w in workers {
        let (l, f, o, e) = w.await.expect("worker");
        latency.add(l).expect("same bounds");
        first.add(f).expect("same bounds");
        ok += o;
        failed += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{{\"rps\":{:.1},\"ok\":{ok},\"failed\":{failed},\"p50_us\":{},\"p99_us\":{},\"first_p50_us\":{},\"first_p99_us\":{}}}",
        ok as f64 / elapsed,
        latency.value_at_quantile(0.5),
        latency.value_at_quantile(0.99),
        first.value_at_quantile(0.5),
        first.value_at_quantile(0.99),
    );
}
