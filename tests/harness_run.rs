//! End to end: the `hub` binary runs short scenarios against the embedded mock over real
//! HTTP and writes real report files; the simulator's output is deterministic and close to
//! the closed-form expectation.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "hub-test-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir is writable");
    dir
}

fn hub(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hub"))
        .args(args)
        .output()
        .expect("the hub binary runs")
}

/// A 3-second OpenAI scenario offering 15 req/s against a 30-RPM quota: the `none`
/// baseline must see 429s, the GCRA limiter configured from the quota must not.
const THREE_SECONDS: &str = r#"
name = "e2e"
seed = 11

[provider]
kind = "openai"
target = "mock"
model = "gpt-4o-mini"
quota = { rpm = 30, tpm = 100000 }

[[phase]]
duration = "3s"
arrival = { process = "constant", rate = "15/s" }

[workload]
prompt_tokens = { dist = "uniform", min = 20, max = 60 }
max_tokens = 16
output_tokens = { dist = "uniform", min = 4, max = 16 }
stream = 0.5

[[limiter]]
name = "gcra"
strategy = "gcra"
limits = { rpm = 30, tpm = 100000 }
headroom = 0.9
max_wait = "1s"

[[limiter]]
name = "none"
strategy = "none"

[retry]
max_retries = 1
backoff = { kind = "full_jitter", base = "50ms", cap = "200ms", retry_after_cap = "1s" }

[thresholds]
throttled_ratio = "< 0.01"
"#;

fn write_scenario(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("scenario.toml");
    std::fs::write(&path, text).expect("scenario written");
    path
}

fn read_csv(path: &Path) -> (String, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).expect("csv exists");
    let mut lines = text.lines();
    let header = lines.next().expect("csv has a header").to_owned();
    let rows = lines
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    (header, rows)
}

#[test]
fn run_writes_the_report_contract_and_the_baseline_alone_is_throttled() {
    let dir = scratch("run");
    let scenario = write_scenario(&dir, THREE_SECONDS);
    let out = dir.join("report");
    let o = hub(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--drain",
        "2s",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(0),
        "the limiter passes; the baseline's failure is reported, not gating\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("| gcra |") && stdout.contains("| none |"),
        "{stdout}"
    );

    let (header, rows) = read_csv(&out.join("requests.csv"));
    assert_eq!(
        header,
        "limiter,request_id,phase,intended_start_ms,sent_ms,first_byte_ms,end_ms,status,outcome,attempts,estimated_tokens,prompt_tokens,completion_tokens,limiter_wait_ms,ttft_ms,service_ms,latency_ms"
    );
    assert!(rows.iter().all(|r| r.len() == 17));
    for limiter in ["gcra", "none"] {
        let n = rows.iter().filter(|r| r[0] == limiter).count();
        assert_eq!(n, 45, "{limiter}: 15/s for 3 s, every request has a row");
    }

    let (header, rows) = read_csv(&out.join("timeseries.csv"));
    assert_eq!(
        header,
        "limiter,second,offered,sent,completed,throttled,errors,tokens_charged,tokens_used,latency_p50_ms,latency_p90_ms,latency_p99_ms"
    );
    for limiter in ["gcra", "none"] {
        let mine: Vec<_> = rows.iter().filter(|r| r[0] == limiter).collect();
        assert!(mine.len() >= 3, "{limiter}: a row per second");
        let offered: u64 = mine.iter().map(|r| r[2].parse::<u64>().unwrap()).sum();
        assert_eq!(offered, 45);
    }

    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let schema: Value =
        serde_json::from_str(include_str!("../reports/summary.schema.json")).unwrap();
    if let Err(e) = validate(&schema, &summary, "$") {
        panic!("summary.json violates the schema: {e}");
    }
    let by_name = |n: &str| {
        summary["limiters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == n)
            .cloned()
            .unwrap()
    };
    let (gcra, none) = (by_name("gcra"), by_name("none"));
    assert_eq!(
        gcra["throttled"], 0,
        "a limiter set from the quota sees no 429"
    );
    assert!(none["throttled"].as_u64().unwrap() > 0, "the baseline does");
    assert_eq!(gcra["passed"], true);
    assert_eq!(none["passed"], false);
    for f in ["summary.md", "scenario.toml"] {
        assert!(out.join(f).is_file(), "{f}");
    }
}

#[test]
fn a_limiter_failing_a_threshold_is_exit_3() {
    let dir = scratch("threshold");
    let text = THREE_SECONDS.replace(
        "throttled_ratio = \"< 0.01\"",
        "throttled_ratio = \"< 0.01\"\nquota_utilisation = \">= 50\"",
    );
    let scenario = write_scenario(&dir, &text);
    let out = dir.join("sim");
    let o = hub(&[
        "simulate",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("FAIL: quota_utilisation"));
}

#[test]
fn bad_input_is_exit_2_with_file_line_and_field() {
    let dir = scratch("bad");
    let scenario = write_scenario(
        &dir,
        &THREE_SECONDS.replace("rate = \"15/s\"", "rate = \"15/sx\""),
    );
    let o = hub(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        dir.join("r").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("scenario.toml:") && err.contains("rate"),
        "{err}"
    );
}

#[test]
fn redis_backend_without_a_url_is_bad_input_naming_the_field() {
    let dir = scratch("redis-url");
    let text = THREE_SECONDS.replace(
        "max_wait = \"1s\"",
        "max_wait = \"1s\"\nbackend = \"redis\"",
    );
    let scenario = write_scenario(&dir, &text);
    let o = hub(&["check", scenario.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("limiter[0].redis_url"), "{err}");
}

fn simulate(dir: &Path, scenario: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    let o = hub(&[
        "simulate",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        matches!(o.status.code(), Some(0 | 3)),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

#[test]
fn simulation_with_the_same_seed_is_byte_identical() {
    let dir = scratch("det");
    let scenario = write_scenario(&dir, &THREE_SECONDS.replace("\"3s\"", "\"30s\""));
    let (a, b) = (
        simulate(&dir, &scenario, "a"),
        simulate(&dir, &scenario, "b"),
    );
    for f in ["requests.csv", "timeseries.csv", "summary.json"] {
        let (x, y) = (
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
        );
        assert!(x == y, "{f} differs between two runs with the same seed");
    }
}

#[test]
fn simulated_constant_rate_admits_min_of_offered_and_quota() {
    // 4 req/s for 120 s against 120 RPM (2/s, bucket of 120): a perfect limiter completes
    // 120 + 2/s · 120 s = 360 of 480 (min(offered, burst + rate·t)); the rest wait past
    // max_wait and are dropped. The baseline is throttled instead.
    let dir = scratch("closed-form");
    let text = THREE_SECONDS
        .replace("\"3s\"", "\"120s\"")
        .replace("rate = \"15/s\"", "rate = \"4/s\"")
        .replace("quota = { rpm = 30,", "quota = { rpm = 120,")
        .replace("limits = { rpm = 30,", "limits = { rpm = 120,")
        .replace("headroom = 0.9\n", "")
        .replace("max_wait = \"1s\"", "max_wait = \"100ms\"");
    let scenario = write_scenario(&dir, &text);
    let out = simulate(&dir, &scenario, "sim");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let gcra = &summary["limiters"][0];
    let completed = gcra["completed"].as_f64().unwrap();
    let expected = 120.0 + 2.0 * 120.0;
    assert!(
        (completed - expected).abs() <= expected * 0.01,
        "completed {completed}, expected {expected} ± 1 %"
    );
    assert_eq!(gcra["throttled"], 0);
}

#[test]
fn live_and_simulated_runs_agree_within_bounds() {
    let dir = scratch("live-vs-sim");
    let scenario = write_scenario(&dir, THREE_SECONDS);
    let live = dir.join("live");
    let o = hub(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        live.to_str().unwrap(),
        "--drain",
        "2s",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let sim = simulate(&dir, &scenario, "sim");
    let read = |d: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap()
    };
    let (l, s) = (read(&live), read(&sim));
    for i in 0..2 {
        let (a, b) = (&l["limiters"][i], &s["limiters"][i]);
        let completed = |v: &Value| v["completed"].as_f64().unwrap();
        let throttled = |v: &Value| v["throttled"].as_f64().unwrap();
        // Same quota arithmetic; live differs by network and scheduling jitter at the edges.
        assert!(
            (completed(a) - completed(b)).abs() <= 3.0,
            "completed: live {a} vs simulated {b}"
        );
        assert!(
            (throttled(a) - throttled(b)).abs() <= 3.0,
            "throttled: live {} vs simulated {}",
            throttled(a),
            throttled(b)
        );
    }
}

/// Validates `v` against the subset of JSON Schema the summary schema uses: type (string
/// or list), enum, required, properties, additionalProperties = false, items, minItems,
/// maxItems, minimum, maximum, minLength, anyOf.
fn validate(schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        return if any.iter().any(|s| validate(s, v, at).is_ok()) {
            Ok(())
        } else {
            Err(format!("{at}: matches no alternative"))
        };
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "number" => v.is_number(),
            "integer" => v.is_u64() || v.is_i64(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        });
        if !ok {
            return Err(format!("{at}: {v} is not of type {t}"));
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            return Err(format!("{at}: {v} not in {e:?}"));
        }
    }
    if let Some(n) = v.as_f64() {
        if schema
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n < m)
        {
            return Err(format!("{at}: {n} below minimum"));
        }
        if schema
            .get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n > m)
        {
            return Err(format!("{at}: {n} above maximum"));
        }
    }
    if let (Some(s), Some(min)) = (v.as_str(), schema.get("minLength").and_then(Value::as_u64)) {
        if (s.chars().count() as u64) < min {
            return Err(format!("{at}: string too short"));
        }
    }
    if let Some(obj) = v.as_object() {
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = r.as_str().unwrap_or_default();
            if !obj.contains_key(r) {
                return Err(format!("{at}: missing `{r}`"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => validate(s, val, &format!("{at}.{k}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}: unexpected `{k}`"));
                }
                None => {}
            }
        }
    }
    if let Some(items) = v.as_array() {
        let len = items.len() as u64;
        if schema
            .get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| len < m)
            || schema
                .get("maxItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| len > m)
        {
            return Err(format!("{at}: {len} items out of bounds"));
        }
        if let Some(s) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate(s, item, &format!("{at}[{i}]"))?;
            }
        }
    }
    Ok(())
}

#[test]
fn the_schema_validator_rejects_what_it_should() {
    let schema: Value =
        serde_json::from_str(include_str!("../reports/summary.schema.json")).unwrap();
    let bad = serde_json::json!({ "schema_version": 1 });
    assert!(validate(&schema, &bad, "$")
        .unwrap_err()
        .contains("missing"));
}
