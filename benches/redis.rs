//! Redis limiter throughput and latency over loopback: `try_acquire` admissions per
//! second from one process with 32 concurrent tasks, p50 and p99 latency, against a plain
//! Redis `INCR` measured in the same run on the same kind of connection (the ratio is the
//! figure that travels between machines). Concurrent attempts on one key share a script
//! call, so each line also shows attempts per call. The last two lines compare leased
//! capacity (`LeasedLimiter` over the Redis limiter, share 0.05, lifetime 1 s) with one
//! round trip per admission, on the same limit.
//!
//! Run: `cargo bench --bench redis` (starts its own redis-server; prints SKIP without one).

#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_hub::clock::SystemClock;
use connector_hub::limiter::lease::{LeaseSettings, LeasedLimiter};
use connector_hub::limiter::redis::{RedisLimiter, RedisSettings};
use connector_hub::limiter::{Cost, LimitKey, LimiterConfig, RateLimiter};
use hdrhistogram::Histogram;
use redis_server::RedisServer;

const TASKS: usize = 32;
const WARM_UP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(4);

/// Calls/s, p50 µs, p99 µs.
struct Figures {
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
}

/// Runs `op` from `TASKS` tasks, first for the warm-up, then measured.
async fn measure<F, Fut>(op: F) -> Figures
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let run = |d: Duration, record: bool| {
        let op = op.clone();
        async move {
            let end = Instant::now() + d;
            let mut tasks = Vec::new();
            for i in 0..TASKS {
                let op = op.clone();
                tasks.push(tokio::spawn(async move {
                    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
                    let mut n = 0u64;
                    while Instant::now() < end {
                        let t = Instant::now();
                        op(i).await;
                        if record {
                            // A stall beyond the 60 s bound (a loaded machine) counts as 60 s.
                            h.saturating_record(t.elapsed().as_nanos().max(1) as u64);
                        }
                        n += 1;
                    }
                    (n, h)
                }));
            }
            let mut total = 0;
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
            for t in tasks {
                let (n, h) = t.await.unwrap();
                total += n;
                hist.add(h).unwrap();
            }
            (total, hist)
        }
    };
    run(WARM_UP, false).await;
    let started = Instant::now();
    let (total, hist) = run(MEASURE, true).await;
    Figures {
        per_second: total as f64 / started.elapsed().as_secs_f64(),
        p50_us: hist.value_at_quantile(0.5) as f64 / 1000.0,
        p99_us: hist.value_at_quantile(0.99) as f64 / 1000.0,
    }
}

/// redis-server CPU µs per call of `commands` together since the last reset (INFO
/// commandstats), then resets the counters.
async fn server_us(url: &str, commands: &[&str]) -> f64 {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut con)
        .await
        .unwrap();
    let field = |line: &str, name: &str| -> f64 {
        line.split([':', ','])
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let (mut usec, mut calls) = (0.0, 0.0);
    for command in commands {
        if let Some(line) = stats
            .lines()
            .find(|l| l.starts_with(&format!("cmdstat_{command}:")))
        {
            usec += field(line, "usec");
            calls += field(line, "calls");
        }
    }
    if calls > 0.0 {
        usec / calls
    } else {
        f64::NAN
    }
}

/// Calls of `commands` together since the last reset (INFO commandstats); resets them.
async fn server_calls(url: &str, commands: &[&str]) -> f64 {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut con)
        .await
        .unwrap();
    commands
        .iter()
        .filter_map(|c| {
            let line = stats
                .lines()
                .find(|l| l.starts_with(&format!("cmdstat_{c}:")))?;
            line.split([':', ','])
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse::<f64>()
                .ok()
        })
        .sum()
}

fn main() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = redis::Client::open(server.url()).unwrap();
        let con = redis::aio::ConnectionManager::new(client).await.unwrap();
        server_us(&server.url(), &["incr"]).await;
        let incr = measure(move |i| {
            let mut con = con.clone();
            async move {
                let key = format!("bench:incr:{}", i % 4);
                let _: i64 = redis::cmd("INCR")
                    .arg(key)
                    .query_async(&mut con)
                    .await
                    .unwrap();
            }
        })
        .await;
        println!(
            "load average at start: {}",
            std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
        );
        println!(
            "redis INCR (baseline)              {:>9.0} calls/s  p50 {:>6.1} µs  p99 {:>6.1} µs  server {:.1} µs/call",
            incr.per_second, incr.p50_us, incr.p99_us, server_us(&server.url(), &["incr"]).await
        );
        // A minimal one-round-trip Lua limiter for reference (EVALSHA: TIME, HMGET, HSET,
        // PEXPIRE); the limiter itself needs TIME, GET and SET (FCALL) plus its own work.
        let floor = redis::Script::new(
            "local t = redis.call('TIME') redis.call('HMGET', KEYS[1], 'a', 'b') \
             redis.call('HSET', KEYS[1], 'a', t[1], 'b', t[2]) \
             redis.call('PEXPIRE', KEYS[1], 60000) return 1",
        );
        let client = redis::Client::open(server.url()).unwrap();
        let con = redis::aio::ConnectionManager::new(client).await.unwrap();
        let minimal = measure(move |i| {
            let (mut con, floor) = (con.clone(), floor.clone());
            async move {
                let key = format!("bench:min:{}", i % 4);
                let _: i64 = floor.key(key).invoke_async(&mut con).await.unwrap();
            }
        })
        .await;
        println!(
            "minimal Lua script (floor)         {:>9.0} calls/s  p50 {:>6.1} µs  p99 {:>6.1} µs  ratio to INCR {:.2}  server {:.1} µs/call",
            minimal.per_second,
            minimal.p50_us,
            minimal.p99_us,
            minimal.per_second / incr.per_second,
            server_us(&server.url(), &["evalsha"]).await
        );
        // Every line calls the script as a function (FCALL, Redis >= 7) but the one marked
        // EVALSHA, which shows the fallback for servers without functions.
        for (name, strategy, limits, functions) in [
            (
                "try_acquire token_bucket rpm",
                "token_bucket",
                "rpm = 1000000000",
                true,
            ),
            (
                "  same, EVALSHA (no functions)",
                "token_bucket",
                "rpm = 1000000000",
                false,
            ),
            ("try_acquire gcra rpm", "gcra", "rpm = 1000000000", true),
            (
                "try_acquire token_bucket rpm+tpm",
                "token_bucket",
                "rpm = 1000000000, tpm = 1000000000",
                true,
            ),
            (
                "try_acquire sliding_counter rpm+tpm",
                "sliding_counter",
                "rpm = 1000000000, tpm = 1000000000",
                true,
            ),
            (
                "try_acquire sliding_log rps",
                "sliding_log",
                "rps = 1000000",
                true,
            ),
        ] {
            let config = LimiterConfig::from_toml(&format!(
                "[default]\nstrategy = \"{strategy}\"\nlimits = {{ {limits} }}"
            ))
            .unwrap();
            let mut settings =
                RedisSettings::new(server.url()).with_key_prefix(format!("bench:{strategy}"));
            settings.functions = functions;
            // Throughput, not failure handling: a machine shared with builds can stall a
            // call past the default 250 ms, which would end the run.
            settings.timeout = Duration::from_secs(5);
            let limiter = Arc::new(
                RedisLimiter::connect(config, settings, Arc::new(SystemClock::new()))
                    .await
                    .unwrap(),
            );
            let l = limiter.clone();
            let f = measure(move |i| {
                let l = l.clone();
                async move {
                    let key = LimitKey::new("bench", if i % 4 == 0 { "a" } else { "b" });
                    l.try_acquire(&key, Cost::request(100))
                        .await
                        .expect("admitted");
                }
            })
            .await;
            let (calls, attempts) = limiter.admission_calls();
            println!(
                "{name:<36} {:>9.0} admits/s  p50 {:>6.1} µs  p99 {:>6.1} µs  ratio to INCR {:.2}  server {:.1} µs/call  {:.1} attempts/call",
                f.per_second,
                f.p50_us,
                f.p99_us,
                f.per_second / incr.per_second,
                server_us(&server.url(), &["evalsha", "fcall"]).await,
                attempts as f64 / calls.max(1) as f64
            );
        }
        // Leased capacity against one round trip per admission (each attempt waits for
        // one script call, shared with the attempts coalesced into it), same limit (1 M
        // requests a second, more than one process reaches either way: nothing is refused).
        let config = LimiterConfig::from_toml(
            "[default]\nstrategy = \"token_bucket\"\nlimits = { rpm = 60000000 }",
        )
        .unwrap();
        let mut settings = RedisSettings::new(server.url()).with_key_prefix("bench:lease");
        settings.timeout = Duration::from_secs(5);
        let clock = Arc::new(SystemClock::new());
        let redis: Arc<dyn RateLimiter> = Arc::new(
            RedisLimiter::connect(config.clone(), settings, clock.clone())
                .await
                .unwrap(),
        );
        let lease = LeaseSettings {
            share: 0.05,
            lifetime: Duration::from_secs(1),
        };
        let leased: Arc<dyn RateLimiter> =
            Arc::new(LeasedLimiter::new(redis.clone(), config, lease, clock).unwrap());
        for (name, limiter) in [
            ("one round trip per admit (rpm 60M)", redis),
            ("leased, share 0.05, lifetime 1 s", leased),
        ] {
            let f = measure(move |i| {
                let l = limiter.clone();
                async move {
                    let key = LimitKey::new("bench", if i % 4 == 0 { "a" } else { "b" });
                    l.try_acquire(&key, Cost::request(100))
                        .await
                        .expect("admitted");
                }
            })
            .await;
            println!(
                "{name:<36} {:>9.0} admits/s  p50 {:>6.1} µs  p99 {:>6.1} µs  ratio to INCR {:.2}  server calls {:.0}/s",
                f.per_second,
                f.p50_us,
                f.p99_us,
                f.per_second / incr.per_second,
                server_calls(&server.url(), &["evalsha", "fcall"]).await / (WARM_UP + MEASURE).as_secs_f64()
            );
        }
    });
    drop(server);
}
