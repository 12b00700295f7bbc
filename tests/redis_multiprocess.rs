//! One quota shared by four processes through Redis: this test binary re-runs itself four
//! times as a worker (env `HUB_REDIS_WORKER`), each worker with 8 tasks hammering one key
//! of `60 RPM + 10 000 TPM` for 10 s. The merged admission log, stamped with Redis's
//! clock, must never exceed the limit in any interval, and the total must be within 2 %
//! of the ideal.
//!
//! The same run goes once against one redis-server and once against a three-primary
//! Redis Cluster (`RedisSettings::cluster`).
//!
//! Two keys run side by side in every worker: `tb` (token bucket, the providers' own
//! continuously refilling quota: the limit of an interval `t` is `burst + rate · t`) and
//! `log` (sliding-window log: at most the limit in every 60 s window).

#[path = "support/redis_checks.rs"]
mod redis_checks;
#[path = "support/redis_cluster.rs"]
mod redis_cluster;
#[path = "support/redis_server.rs"]
mod redis_server;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use connector_hub::clock::SystemClock;
use connector_hub::limiter::redis::{RedisLimiter, RedisSettings};
use connector_hub::limiter::{Cost, LimitKey, LimiterConfig, RateLimiter, ResponseMeta};
use redis_checks::{arrival_curve_violation, window_violation, Admission};
use redis_cluster::RedisCluster;
use redis_server::RedisServer;

const WORKER_ENV: &str = "HUB_REDIS_WORKER";
const PROCESSES: usize = 4;
const TASKS: usize = 8;
const RUN: Duration = Duration::from_secs(10);
const TOKENS: u64 = 200;
const TEST_NAME: &str = "four_processes_share_one_quota_through_redis";
const CLUSTER_TEST_NAME: &str = "four_processes_share_one_quota_through_a_redis_cluster";

const CONFIG: &str = r#"
[[key]]
provider = "shared"
model = "tb"
limit = { strategy = "token_bucket", limits = { rpm = 60, tpm = 10000 } }
[[key]]
provider = "shared"
model = "log"
limit = { strategy = "sliding_log", limits = { rpm = 60, tpm = 10000 } }
"#;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A worker: `url prefix start_unix_ms out_path cluster(0|1)`. Runs `TASKS` tasks per key until the run
/// ends and writes one line `model redis_µs tokens` per admission.
fn worker(spec: &str) {
    let parts: Vec<&str> = spec.split(' ').collect();
    let (url, prefix, start_ms, out, cluster) = (
        parts[0],
        parts[1],
        parts[2].parse::<u64>().unwrap(),
        parts[3],
        parts[4] == "1",
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let lines = rt.block_on(async {
        let mut settings = RedisSettings::new(url).with_key_prefix(prefix);
        settings.cluster = cluster;
        let limiter = Arc::new(
            RedisLimiter::connect(
                LimiterConfig::from_toml(CONFIG).unwrap(),
                settings,
                Arc::new(SystemClock::new()),
            )
            .await
            .unwrap(),
        );
        let wait = start_ms.saturating_sub(unix_ms());
        tokio::time::sleep(Duration::from_millis(wait)).await;
        // Run half a second past the checked 10 s so the whole window is covered.
        let end = tokio::time::Instant::now() + RUN + Duration::from_millis(500);
        let mut tasks = Vec::new();
        for model in ["tb", "log"] {
            for i in 0..TASKS {
                let limiter = limiter.clone();
                tasks.push(tokio::spawn(async move {
                    let key = LimitKey::new("shared", model);
                    let mut log = Vec::new();
                    while tokio::time::Instant::now() < end {
                        // Six tasks queue in acquire; two poll with try_acquire and sleep
                        // for the returned wait.
                        let admitted = if i < 6 {
                            match tokio::time::timeout_at(
                                end,
                                limiter.acquire_stamped(&key, Cost::request(TOKENS)),
                            )
                            .await
                            {
                                Ok(r) => Some(r.expect("acquire")),
                                Err(_) => None,
                            }
                        } else {
                            let d = limiter.decide(&key, Cost::request(TOKENS)).await;
                            match d.outcome {
                                Ok(p) => Some((p, d.server_time_us)),
                                Err(denial) => {
                                    let wait = denial.retry_after().expect("a wait");
                                    let _ = tokio::time::timeout_at(end, tokio::time::sleep(wait))
                                        .await;
                                    None
                                }
                            }
                        };
                        if let Some((permit, at)) = admitted {
                            log.push(format!("{model} {} {TOKENS}", at.expect("redis decided")));
                            limiter
                                .record_usage(
                                    permit,
                                    Cost::request(TOKENS),
                                    &ResponseMeta::default(),
                                )
                                .await
                                .unwrap();
                        }
                    }
                    log
                }));
            }
        }
        let mut lines = Vec::new();
        for t in tasks {
            lines.extend(t.await.unwrap());
        }
        lines
    });
    std::fs::write(out, lines.join("\n")).unwrap();
}

#[test]
fn four_processes_share_one_quota_through_redis() {
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        worker(&spec);
        return;
    }
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    share_one_quota(&server.url(), false, server.dir(), TEST_NAME);
}

#[test]
fn four_processes_share_one_quota_through_a_redis_cluster() {
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        worker(&spec);
        return;
    }
    let Some(cluster) = RedisCluster::start_or_skip() else {
        return;
    };
    share_one_quota(&cluster.url(), true, cluster.dir(), CLUSTER_TEST_NAME);
}

/// Runs `PROCESSES` workers (this binary re-run as `test_name`) against `url` and checks
/// the merged admission log.
fn share_one_quota(url: &str, cluster: bool, dir: &std::path::Path, test_name: &str) {
    let exe = std::env::current_exe().unwrap();
    let start = unix_ms() + 1500; // every worker connected and waiting by then
    let mut children = Vec::new();
    for n in 0..PROCESSES {
        let out = dir.join(format!("worker{n}.log"));
        let spec = format!("{url} mp {start} {} {}", out.display(), u8::from(cluster));
        let child = Command::new(&exe)
            .args(["--exact", test_name, "--nocapture", "--test-threads", "1"])
            .env(WORKER_ENV, spec)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        children.push((child, out));
    }
    let mut merged: Vec<(String, i64, u64)> = Vec::new();
    let deadline = std::time::Instant::now() + RUN + Duration::from_secs(20);
    for (mut child, out) in children {
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("worker hung");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "worker failed: {status}");
        let text = std::fs::read_to_string(&out).unwrap();
        println!("{}: {} admissions", out.display(), text.lines().count());
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            merged.push((
                f[0].to_owned(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            ));
        }
    }
    let minute_us = 60_000_000;
    for model in ["tb", "log"] {
        let tokens: Vec<Admission> = merged
            .iter()
            .filter(|m| m.0 == model)
            .map(|m| (m.1, m.2))
            .collect();
        let requests: Vec<Admission> = tokens.iter().map(|&(t, _)| (t, 1)).collect();
        let t0 = tokens.iter().map(|a| a.0).min().expect("admissions");
        let in_run = tokens
            .iter()
            .filter(|a| a.0 < t0 + RUN.as_micros() as i64)
            .count() as u64;
        let ideal = if model == "tb" {
            // Full buckets, then refill over the run: RPM 60 + 10, TPM (10 000 + 1 666) / 200.
            let run_s = RUN.as_secs();
            (60 + run_s).min((10_000 + 10_000 * run_s / 60) / TOKENS)
        } else {
            // One window's worth; nothing leaves the 60 s window within 10 s.
            60u64.min(10_000 / TOKENS)
        };
        println!("{model}: {in_run} admitted in the first {RUN:?} across {PROCESSES} processes (ideal {ideal})");
        if model == "tb" {
            for (log, limit) in [(&requests, 60), (&tokens, 10_000)] {
                let v = arrival_curve_violation(log, limit, limit, minute_us);
                assert!(v.is_none(), "{model}: {}", v.unwrap());
            }
        } else {
            for (log, limit) in [(&requests, 60), (&tokens, 10_000)] {
                let v = window_violation(log, limit, minute_us);
                assert!(v.is_none(), "{model}: {}", v.unwrap());
            }
        }
        assert!(in_run <= ideal, "{model}: {in_run} > ideal {ideal}");
        assert!(
            in_run as f64 >= ideal as f64 * 0.98,
            "{model}: {in_run} < 98 % of {ideal}"
        );
    }
}
