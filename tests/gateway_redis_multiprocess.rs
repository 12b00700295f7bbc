//! Three `hub serve` processes share one quota through one redis-server, in front of one
//! mock Azure deployment whose quota is `Q` = 100 requests per second, enforced as 1000
//! in every 10-s sliding window (6000 RPM). The gateways' pasted limit is a token bucket
//! of 96 requests per second with a burst of 30 (`requests = "480/5s"`,
//! `burst = 0.0625`): any window of 10.1 s admits at most 1000, so scheduling delays
//! between a gateway's admission and the mock's arrival (this machine is shared) cannot
//! make the mock see 1001, and the burst absorbs the dispatchers' lateness. The test
//! drives 3 × Q (100 requests per second to each gateway, open loop, for a bounded time;
//! `HUB_GATEWAY_MP_SECS` lengthens it, default 6 s). Shared, the gateways let through
//! about Q: the mock throttles at most 0.1 % of what reached it and its goodput —
//! measured from the 1st second to the last of the load, while the queues are full — is
//! at least 95 % of Q; the excess waits in the gateways' queues and gets the gateways'
//! own 429s. Three unshared limiters would send 3 × 96 per second: past 1000 in the
//! first 3.5 s, throttled by the mock.

#[path = "support/redis_server.rs"]
mod redis_server;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mock_providers::config::DeploymentConfig;
use mock_providers::{MockConfig, MockServer};
use redis_server::RedisServer;
use serde_json::{json, Value};

const GATEWAYS: usize = 3;
/// The mock's quota, requests per second.
const Q: f64 = 100.0;

/// A `hub serve` child, killed when dropped.
struct Gateway {
    child: Child,
    base: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn config(mock: &str, redis: &str, prefix: &str) -> String {
    format!(
        r#"
[gateway]
grace = "1s"
[[gateway.tenant]]
name = "load"
key_env = "HUB_TEST_GW_KEY"
max_wait = "2s"

[[upstream]]
id = "az"
kind = "azure"
url = "{mock}"
api_key_env = "HUB_TEST_UP_KEY"
models = ["dep"]
limiter = "shared"

[[limiter]]
name = "shared"
strategy = "token_bucket"
limits = {{ requests = "480/5s" }}
burst = 0.0625
accounting = "estimate"

[retry]
max_retries = 0

[limits]
backend = "redis"
[limits.redis]
url = "{redis}"
key_prefix = "{prefix}"
timeout = "1s"
"#
    )
}

async fn start_gateway(dir: &std::path::Path, i: usize, text: &str) -> Gateway {
    let path = dir.join(format!("gateway-{i}.toml"));
    std::fs::write(&path, text).expect("write the config");
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_hub"))
        .args(["serve", "--config"])
        .arg(&path)
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .env("HUB_TEST_GW_KEY", "gw-load")
        .env("HUB_TEST_UP_KEY", "az-key")
        .env("HUB_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("hub serve starts");
    let gw = Gateway {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    // Ready when /readyz answers 200 (Redis reached); bounded.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{}/readyz", gw.base)).send().await {
            if r.status() == 200 {
                return gw;
            }
        }
        assert!(
            Instant::now() < deadline,
            "gateway {i} did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_share_one_quota_through_redis() {
    let Some(redis) = RedisServer::start_or_skip() else {
        return;
    };
    let secs: u64 = std::env::var("HUB_GATEWAY_MP_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut c = MockConfig::default();
    let mut dep = DeploymentConfig::new("dep", "gpt-4o-mini", 10_000_000);
    dep.rpm = Some(6000);
    dep.rpm_window = Duration::from_secs(10);
    c.deployments.push(dep);
    let mock = MockServer::start(c).await.expect("mock");
    let dir = std::env::temp_dir().join(format!("hub-gw-mp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let text = config(
        &mock.base_url(),
        &redis.url(),
        &format!("gwmp{}", std::process::id()),
    );
    let mut gateways = Vec::new();
    for i in 0..GATEWAYS {
        gateways.push(start_gateway(&dir, i, &text).await);
    }

    // Open loop: every 10 ms one request to each gateway (3 × Q in all).
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1});
    let stats_url = format!("{}/_mock/stats", mock.base_url());
    let admitted_now = |http: reqwest::Client, url: String| async move {
        let v: Value = http
            .get(url)
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("json");
        v["keys"]["azure/dep"]["admitted"].as_u64().unwrap_or(0)
    };
    let start = tokio::time::Instant::now();
    let ticks = secs * 100;
    let mut sent = Vec::new();
    let mut samples = Vec::new();
    for tick in 0..=ticks {
        tokio::time::sleep_until(start + Duration::from_millis(10 * tick)).await;
        if tick == 100 || tick == ticks {
            samples.push((
                start.elapsed(),
                admitted_now(http.clone(), stats_url.clone()).await,
            ));
        }
        if tick == ticks {
            break;
        }
        for g in &gateways {
            let r = http
                .post(format!(
                    "{}/openai/deployments/dep/chat/completions?api-version=2024-10-21",
                    g.base
                ))
                .header("api-key", "gw-load")
                .json(&body)
                .send();
            sent.push(tokio::spawn(async move {
                r.await.map(|r| r.status().as_u16()).unwrap_or(0)
            }));
        }
    }
    let mut by_status = std::collections::BTreeMap::<u16, u32>::new();
    for s in sent {
        *by_status.entry(s.await.expect("task")).or_default() += 1;
    }
    let stats: Value = reqwest::get(&stats_url)
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    let k = &stats["keys"]["azure/dep"];
    let admitted = k["admitted"].as_u64().unwrap_or(0) as f64;
    let throttled = k["throttled"]["requests"].as_u64().unwrap_or(0) as f64;
    let [(t1, a1), (t2, a2)] = samples[..] else {
        panic!("two samples");
    };
    let goodput = (a2 - a1) as f64 / (t2 - t1).as_secs_f64();
    eprintln!(
        "statuses {by_status:?}; mock admitted {admitted}, throttled {throttled}; \
         goodput {goodput:.2}/s from {t1:?} to {t2:?} against Q = {Q}/s"
    );
    assert!(
        throttled <= 0.001 * (admitted + throttled),
        "the mock throttled {throttled} of {}",
        admitted + throttled
    );
    assert!(
        goodput >= 0.95 * Q,
        "goodput {goodput:.2}/s < 95 % of {Q}/s"
    );
    assert!(
        by_status.get(&429).copied().unwrap_or(0) > 0,
        "the excess got the gateways' 429s"
    );
    drop(gateways);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hub_serve_with_a_bad_config_exits_2_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("hub-gw-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        config("http://127.0.0.1:1", "redis://127.0.0.1:1", "p"),
    )
    .expect("write");
    // HUB_TEST_GW_KEY is not set: the tenant's key cannot be read.
    let out = Command::new(env!("CARGO_BIN_EXE_hub"))
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("HUB_TEST_GW_KEY")
        .output()
        .expect("hub runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gateway.tenant[0].key_env") && err.contains("HUB_TEST_GW_KEY"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
