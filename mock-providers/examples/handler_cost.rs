//! In-process cost of one non-streaming chat completion through the mock's router (no
//! sockets, no hyper): CPU time per request over `N` `oneshot` calls on one thread, with the
//! throughput benchmark's config and body. Run:
//! `handler_cost [config.toml] [requests]` (defaults: mock-providers/bench/perf.toml, 200000).

use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use mock_providers::{app, MockConfig, MockState};
use tower::ServiceExt;

const BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the load generator, please."}],"max_tokens":16}"#;

fn cpu_seconds() -> f64 {
    // utime + stime of this process, from /proc (Linux only; 0 elsewhere).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields after the command: state is index 0, utime index 11, stime index 12.
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "mock-providers/bench/perf.toml".to_owned());
    let n: u64 = args.next().map_or(Ok(200_000), |v| v.parse())?;
    let state = MockState::new(MockConfig::from_file(path.as_ref())?)?;
    state.warm_up();
    let router = app(state);
    let call = || {
        let request = Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .header("authorization", "Bearer sk-bench")
            .body(Body::from(BODY))
            .map_err(|e| e.to_string());
        let router = router.clone();
        async move {
            let response = router.oneshot(request?).await.map_err(|e| e.to_string())?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, bytes.len()))
        }
    };
    for _ in 0..(n / 10).max(1) {
        call().await?;
    }
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    let mut bytes = 0;
    for _ in 0..n {
        let (status, len) = call().await?;
        if !status.is_success() {
            return Err(format!("status {status}").into());
        }
        bytes += len;
    }
    let (cpu, wall) = (cpu_seconds() - cpu0, wall0.elapsed().as_secs_f64());
    println!(
        "{n} requests: {:.2} us CPU/request, {:.2} us wall/request, {} bytes/response",
        cpu / n as f64 * 1e6,
        wall / n as f64 * 1e6,
        bytes / n as usize
    );
    Ok(())
}
