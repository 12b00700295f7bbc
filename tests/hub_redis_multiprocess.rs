//! Two `Hub`s in two OS processes share one quota through one redis-server
//! (`limits.backend = "redis"`), in front of one embedded mock whose model allows
//! `Q` = 20 requests per minute in a hard sliding 60-s window. The hubs' shared limit is
//! that quota (sliding log, 20 RPM, `max_wait = "2s"`). Each process sends 20 requests at
//! once, so 40 try for 20 places; this test binary re-runs itself as each worker (env
//! `HUB_REDIS_HUB_WORKER`), building its hub with the synchronous `Hub::from_toml_str`
//! outside any runtime.
//!
//! Both windows are 60 s long and the test takes a few seconds, so nothing comes back
//! within it: with the quota shared, the mock admits exactly `Q` and answers no 429 (zero
//! tolerance), the processes' successes add up to `Q` (two unshared limiters would send
//! `2Q`), and every other request fails at once in the limiter (`max_wait`), not at the
//! mock.

#[path = "support/redis_server.rs"]
mod redis_server;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use connector_hub::hub::Hub;
use connector_hub::limiter::{LimitError, LimitKey};
use connector_hub::middleware::{MiddlewareError, PipelineError};
use connector_hub::provider::{CompletionRequest, Message};
use mock_providers::config::ModelConfig;
use mock_providers::quota::Replenish;
use mock_providers::{MockConfig, MockServer};
use redis_server::RedisServer;
use serde_json::Value;

const WORKER_ENV: &str = "HUB_REDIS_HUB_WORKER";
const TEST_NAME: &str = "two_hub_processes_share_one_mock_quota_through_redis";
const MODEL: &str = "gpt-4o-mini";
/// The mock's quota and the hubs' shared limit, requests per minute.
const Q: u64 = 20;
const PROCESSES: usize = 2;
const PER_PROCESS: usize = 20;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// The hub config every worker loads: one provider on the mock, the limiter in Redis.
fn hub_config(mock_url: &str, redis_url: &str, prefix: &str) -> String {
    format!(
        r#"
middleware = ["rate_limit"]

[[provider]]
id = "shared"
kind = "openai"
config = {{ api_key = "sk-test", base_url = "{mock_url}/v1", timeout_secs = 10 }}

[limits]
backend = "redis"

[limits.redis]
url = "{redis_url}"
key_prefix = "{prefix}"
timeout = "2s"

[[limits.key]]
provider = "shared"
limit = {{ strategy = "sliding_log", limits = {{ rpm = {Q} }}, max_wait = "2s" }}
"#
    )
}

/// A worker: `mock_url redis_url prefix start_unix_ms out_path`. Sends `PER_PROCESS`
/// requests at once at the start time and writes `ok limited other` counts (and each
/// other error's text on the lines after).
fn worker(spec: &str) {
    let parts: Vec<&str> = spec.split(' ').collect();
    let [mock_url, redis_url, prefix, start_ms, out] = parts[..] else {
        panic!("bad worker spec {spec:?}");
    };
    let start_ms: u64 = start_ms.parse().expect("start time");
    // Synchronous construction, before any runtime exists: Redis is reached on first use.
    let hub = Hub::from_toml_str(&hub_config(mock_url, redis_url, prefix))
        .expect("a hub with the redis backend");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (ok, limited, other) = rt.block_on(async {
        // Connected (and the script loaded) before the start, so both bursts race evenly.
        let key = LimitKey::new("shared", MODEL);
        let stats = hub
            .limiter()
            .usage_stats(&key)
            .await
            .expect("redis reachable");
        assert_eq!(stats.admitted, 0, "nothing admitted before the start");
        tokio::time::sleep(Duration::from_millis(start_ms.saturating_sub(unix_ms()))).await;
        let calls = (0..PER_PROCESS).map(|i| {
            let request = CompletionRequest::new(MODEL, vec![Message::user(format!("Say {i}."))])
                .with_max_tokens(8);
            hub.complete(request)
        });
        let results = futures::future::join_all(calls).await;
        let (mut ok, mut limited, mut other) = (0, 0, Vec::new());
        for r in results {
            match r {
                Ok(_) => ok += 1,
                Err(PipelineError::Middleware(MiddlewareError::Limit(LimitError::Timeout {
                    ..
                }))) => limited += 1,
                Err(e) => other.push(e.to_string()),
            }
        }
        (ok, limited, other)
    });
    let mut text = format!("{ok} {limited} {}\n", other.len());
    for e in &other {
        text.push_str(e);
        text.push('\n');
    }
    std::fs::write(out, text).expect("write the worker's result");
}

/// The mock: `Q` requests per minute for MODEL in a hard sliding window, tokens plenty.
fn mock_config() -> MockConfig {
    let mut c = MockConfig::default();
    for m in c.models.iter_mut().filter(|m| m.id == MODEL) {
        *m = ModelConfig::chat(MODEL, m.encoding, Q, 1_000_000);
        m.replenish = Replenish::Sliding;
    }
    c
}

#[test]
fn two_hub_processes_share_one_mock_quota_through_redis() {
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        worker(&spec);
        return;
    }
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mock = rt
        .block_on(MockServer::start(mock_config()))
        .expect("mock starts");
    let began = Instant::now();
    let exe = std::env::current_exe().expect("test binary");
    // Both workers are up and waiting by then; they start their bursts together.
    let start = unix_ms() + 1500;
    let mut children = Vec::new();
    for n in 0..PROCESSES {
        let out = server.dir().join(format!("hub{n}.out"));
        let spec = format!(
            "{} {} hubmp {start} {}",
            mock.base_url(),
            server.url(),
            out.display()
        );
        let child = Command::new(&exe)
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads", "1"])
            .env(WORKER_ENV, spec)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn a worker");
        children.push((child, out));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut ok, mut limited) = (0u64, 0u64);
    for (n, (mut child, out)) in children.into_iter().enumerate() {
        let status = loop {
            if let Some(s) = child.try_wait().expect("worker status") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("worker {n} hung");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "worker {n} failed: {status}");
        let text = std::fs::read_to_string(&out).expect("worker result");
        let counts: Vec<u64> = text
            .lines()
            .next()
            .unwrap_or_default()
            .split(' ')
            .map(|x| x.parse().expect("a count"))
            .collect();
        println!(
            "process {n}: {} admitted, {} refused by the limiter, {} other errors",
            counts[0], counts[1], counts[2]
        );
        assert_eq!(counts[2], 0, "worker {n}: unexpected errors:\n{text}");
        ok += counts[0];
        limited += counts[1];
    }
    let stats: Value = rt.block_on(async {
        reqwest::get(format!("{}/_mock/stats", mock.base_url()))
            .await
            .expect("stats reachable")
            .json()
            .await
            .expect("stats json")
    });
    let key = &stats["keys"][format!("openai/org-mock/{MODEL}")];
    println!("mock: {key}");
    assert_eq!(
        key["throttled"]["requests"], 0,
        "the mock answered 429 (requests): {stats}"
    );
    assert_eq!(
        key["throttled"]["tokens"], 0,
        "the mock answered 429 (tokens): {stats}"
    );
    assert_eq!(
        key["admitted"], Q,
        "the mock admitted exactly the quota: {stats}"
    );
    assert_eq!(
        stats["requests_total"], Q,
        "only the quota reached the mock: {stats}"
    );
    assert_eq!(ok, Q, "both processes together were admitted Q, not 2Q");
    assert_eq!(limited, (PROCESSES * PER_PROCESS) as u64 - Q);
    let took = began.elapsed();
    assert!(took < Duration::from_secs(15), "took {took:?}");
    rt.block_on(mock.shutdown());
}
