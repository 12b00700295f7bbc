//! `hub batch` end to end against the in-process mock over HTTP: every request gets a
//! result line with its metadata, a failing request is recorded with its error and makes
//! the exit non-zero, and a rerun skips the ids that already succeeded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use mock_providers::{MockConfig, MockServer};
use serde_json::Value;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hub-batch-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir is writable");
    dir
}

async fn batch(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_hub"))
            .args(&args)
            .output()
            .expect("the hub binary runs")
    })
    .await
    .expect("joined")
}

fn results(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("results written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

async fn requests_total(base: &str) -> u64 {
    let stats: Value = reqwest::get(format!("{base}/_mock/stats"))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    stats["requests_total"].as_u64().expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_runs_through_the_hub_records_every_result_and_resumes() {
    let mock = MockServer::start(MockConfig::default())
        .await
        .expect("mock starts");
    let base = mock.base_url();
    let dir = scratch("e2e");
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "middleware = [\"rate_limit\", \"retry\"]\n\
             [[provider]]\nid = \"mock\"\nkind = \"openai\"\n\
             config = {{ api_key = \"k\", base_url = \"{base}/v1\", timeout_secs = 10 }}\n\
             [[limits.key]]\nprovider = \"mock\"\n\
             limit = {{ strategy = \"gcra\", limits = {{ rpm = 6000, tpm = 1000000 }} }}\n"
        ),
    )
    .unwrap();
    let chat = |content: &str, extra: &str| {
        format!(
            "{{\"model\":\"gpt-4o-mini\",\"messages\":[{{\"role\":\"user\",\"content\":\"{content}\"}}],\"max_tokens\":8{extra}}}"
        )
    };
    let lines = [
        chat("one", ",\"metadata\":{\"row\":1}"),
        chat("two", ",\"metadata\":{\"id\":\"b\",\"tag\":[1,2]}"),
        String::new(),
        format!(
            "{{\"custom_id\":\"c\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{}}}",
            chat("three", "")
        ),
        "{\"model\":\"no-such-model\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"metadata\":{\"id\":\"bad\"}}".to_owned(),
        chat("five", ",\"seed\":4"),
    ];
    let requests = dir.join("requests.jsonl");
    std::fs::write(&requests, lines.join("\n") + "\n").unwrap();
    let out = dir.join("results.jsonl");
    let args = |concurrency: &str| {
        vec![
            "batch".to_owned(),
            requests.display().to_string(),
            "--config".into(),
            config.display().to_string(),
            "--out".into(),
            out.display().to_string(),
            "--concurrency".into(),
            concurrency.into(),
        ]
    };

    let o = batch(args("2")).await;
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(3),
        "a failed request fails the batch: {stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("5 requests: 4 ok, 1 failed, 0 skipped"),
        "{stdout}"
    );
    let first = results(&out);
    assert_eq!(first.len(), 5);
    let by_id: HashMap<&str, &Value> = first
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r))
        .collect();
    assert_eq!(
        {
            let mut ids: Vec<_> = by_id.keys().copied().collect();
            ids.sort_unstable();
            ids
        },
        ["b", "bad", "c", "line-1", "line-6"]
    );
    let one = by_id["line-1"];
    assert_eq!(one["status"], "ok");
    assert_eq!(one["metadata"], serde_json::json!({"row": 1}));
    assert_eq!(one["attempts"], 1);
    assert!(
        one["response"]["choices"][0]["message"]["content"].is_string(),
        "{one}"
    );
    assert!(one["response"]["usage"]["output_tokens"].as_u64().unwrap() <= 8);
    assert!(one["ended_ms"].as_f64().unwrap() >= one["started_ms"].as_f64().unwrap());
    assert_eq!(by_id["b"]["metadata"]["tag"], serde_json::json!([1, 2]));
    assert_eq!(by_id["c"]["line"], 4);
    let bad = by_id["bad"];
    assert_eq!(bad["status"], "failed");
    assert!(bad.get("response").is_none());
    let error = bad["error"].as_str().unwrap();
    assert!(
        error.contains("no-such-model") || error.contains("404"),
        "{error}"
    );
    assert_eq!(requests_total(&base).await, 5);

    // Rerun: the four successes are skipped; only the failing request is sent again.
    let o = batch(args("8")).await;
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("5 requests: 0 ok, 1 failed, 4 skipped"),
        "{stdout}"
    );
    assert_eq!(
        requests_total(&base).await,
        6,
        "one more request, the failed one"
    );
    let second = results(&out);
    assert_eq!(second.len(), 6, "appended");
    assert_eq!(second[5]["id"], "bad");

    // With the failing line fixed, a rerun completes the batch and exits 0.
    let fixed = std::fs::read_to_string(&requests)
        .unwrap()
        .replace("no-such-model", "gpt-4o-mini");
    std::fs::write(&requests, fixed).unwrap();
    let o = batch(args("8")).await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let last = results(&out);
    assert_eq!(last.len(), 7);
    assert_eq!(
        (last[6]["id"].as_str(), last[6]["status"].as_str()),
        (Some("bad"), Some("ok"))
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn bad_request_files_are_refused_before_anything_is_sent() {
    let dir = scratch("bad");
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        "[[provider]]\nid = \"m\"\nkind = \"openai\"\nconfig = { api_key = \"k\", base_url = \"http://127.0.0.1:9/v1\" }\n",
    )
    .unwrap();
    let requests = dir.join("r.jsonl");
    let out = dir.join("out.jsonl");
    let run = |text: &str| {
        std::fs::write(&requests, text).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_hub"))
            .args(["batch", requests.to_str().unwrap(), "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("runs");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let ok = "{\"model\":\"m\",\"messages\":[],\"metadata\":{\"id\":\"x\"}}";
    let (code, err) = run(&format!("{ok}\n{ok}\n"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("r.jsonl:2: id \"x\" repeats line 1"), "{err}");
    let (code, err) = run(&format!("{ok}\n{{\"model\": \"m\", \"messages\": 5\n"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("r.jsonl:2:"), "{err}");
    assert!(!out.exists(), "nothing was sent or written");
}

/// A request file of `n` chat bodies: prompts of 50 to 800 tokens of generated text at
/// `milli` thousandths of a character per token (4500 ≈ natural English), `max_tokens` 100.
fn write_batch(path: &Path, n: u64, milli: u32) {
    use connector_hub::harness::workload::prompt_text_at;
    let mut text = String::new();
    for i in 0..n {
        let tokens = 50 + (i * 7_919) % 751;
        let body = serde_json::json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": prompt_text_at(tokens, i, milli)}],
            "max_tokens": 100,
            "metadata": {"row": i},
        });
        text.push_str(&body.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// The same request file as a scenario workload (`[workload] requests`), simulated: the
/// 400-request batch of issue 15 against 120 RPM / 40 000 TPM finishes every request (no
/// drain cuts a batch) within 3 % of the quota's physical limit, with at most 1 % of
/// attempts throttled — with text at 4 and at ~4.5 characters per token.
#[test]
fn a_batch_workload_is_simulated_at_the_quotas_physical_limit() {
    use connector_hub::harness::scenario::Scenario;
    use connector_hub::harness::sim::{simulate, SimOptions};
    for (milli, name) in [(4_000u32, "four"), (4_500, "natural")] {
        let dir = scratch(&format!("workload-{name}"));
        write_batch(&dir.join("requests.jsonl"), 400, milli);
        let text = r#"
name = "batch"
seed = 1

[provider]
kind = "openai"
target = "mock"
model = "gpt-4o-mini"
quota = { rpm = 120, tpm = 40000 }
latency = { ttft_median = "300ms", ttft_p99 = "900ms", per_token = "5ms" }

[workload]
requests = "requests.jsonl"

[[limiter]]
name = "gcra"
strategy = "gcra"
limits = { rpm = 120, tpm = 40000 }
accounting = "estimate"

[[limiter]]
name = "token-bucket"
strategy = "token_bucket"
limits = { rpm = 120, tpm = 40000 }
accounting = "estimate"
"#;
        let path = dir.join("batch.toml");
        std::fs::write(&path, text).unwrap();
        let s = Scenario::from_file(&path).expect("valid");
        assert!(s.plan().contains("batch: the 400 requests"), "{}", s.plan());
        assert!(
            connector_hub::harness::scenario::drain::drain_warnings(
                &s,
                std::time::Duration::from_secs(5)
            )
            .is_empty(),
            "no drain cuts a batch"
        );
        let summary = simulate(
            &s,
            &SimOptions {
                out: dir.join("sim"),
                limiter: None,
                requests_csv: false,
                drain: std::time::Duration::from_secs(5),
            },
        )
        .expect("simulates");
        for l in &summary.limiters {
            assert_eq!((l.requests, l.completed), (400, 400), "{name} {}", l.name);
            assert!(l.throttled as f64 <= 0.01 * 400.0, "{name} {l:?}");
            let e = l.batch_efficiency.expect("a batch reports its efficiency");
            assert!(
                (0.97..=1.0).contains(&e),
                "{name} {}: efficiency {e}",
                l.name
            );
            assert_eq!(l.binding_dimension.as_deref(), Some("tokens"));
            println!(
                "{name} {}: {:.1} s, efficiency {e}, {} throttled",
                l.name, l.span_s, l.throttled
            );
        }
    }
}
