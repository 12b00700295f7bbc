//! A scenario run live on the Redis backend: `backend = "redis"` in a `[[limiter]]` makes the
//! harness share the limit through a real, private redis-server, and the run behaves as the
//! in-memory one does (no 429s under a quota the limiter is set from).

#[path = "support/redis_server.rs"]
mod redis_server;

use std::process::Command;

use redis_server::RedisServer;
use serde_json::Value;

#[test]
fn a_scenario_runs_on_the_redis_backend() {
    let Some(server) = RedisServer::start_or_skip() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("hub-redis-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = format!(
        r#"
name = "redis-e2e"
seed = 5
[provider]
kind = "openai"
target = "mock"
model = "gpt-4o-mini"
quota = {{ rpm = 30, tpm = 100000 }}
[[phase]]
duration = "2s"
arrival = {{ process = "constant", rate = "15/s" }}
[workload]
prompt_tokens = {{ dist = "uniform", min = 20, max = 60 }}
max_tokens = 16
output_tokens = {{ dist = "uniform", min = 4, max = 16 }}
[[limiter]]
name = "gcra-redis"
strategy = "gcra"
limits = {{ rpm = 30, tpm = 100000 }}
headroom = 0.9
max_wait = "500ms"
backend = "redis"
redis_url = "{}"
[retry]
max_retries = 0
"#,
        server.url()
    );
    let path = dir.join("redis.toml");
    std::fs::write(&path, scenario).unwrap();
    let out = dir.join("report");
    let o = Command::new(env!("CARGO_BIN_EXE_hub"))
        .args([
            "run",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--drain",
            "1s",
        ])
        .output()
        .expect("hub runs");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let l = &summary["limiters"][0];
    assert_eq!(l["throttled"], 0, "{l}");
    // 27 (the 0.9-headroom bucket) plus what refills in 2 s; the rest wait past max_wait.
    let completed = l["completed"].as_u64().unwrap();
    assert!((27..=29).contains(&completed), "completed {completed}");
    assert_eq!(l["requests"], 30);
}
