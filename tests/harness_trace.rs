//! Trace workloads end to end: every format read through a scenario, malformed rows
//! reported with the trace's file, line and column, arrivals that reproduce the trace's
//! relative times under `speed`, windows and `rate_scale` (simulated and live), and the
//! mock producing exactly each row's output length.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use connector_hub::harness::scenario::{Arrival, Scenario};
use connector_hub::harness::sim::{simulate, SimOptions};

fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "hub-trace-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir is writable");
    dir
}

/// Twelve Azure rows: offsets 0, 0.25, 0.5, … 2.75 s from 2023-11-16 18:15:46.5; prompt
/// 40 + 10·i tokens, output 3 + i tokens.
fn azure_rows() -> (String, Vec<(u64, u64, u64)>) {
    let mut text = "TIMESTAMP,ContextTokens,GeneratedTokens\n".to_owned();
    let mut rows = Vec::new();
    for i in 0..12u64 {
        let ms = 46_500 + i * 250;
        text.push_str(&format!(
            "2023-11-16 18:15:{:02}.{:03}0000,{},{}\n",
            ms / 1000,
            ms % 1000,
            40 + 10 * i,
            3 + i
        ));
        rows.push((i * 250_000_000, 40 + 10 * i, 3 + i));
    }
    (text, rows)
}

fn scenario(dir: &Path, trace_file: &str, workload: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"
name = "trace"
seed = 5
{extra}
[provider]
kind = "openai"
target = "mock"
model = "gpt-4o-mini"
quota = {{ rpm = 10000, tpm = 1000000 }}

[workload]
trace = "{trace_file}"
{workload}

[[limiter]]
name = "gcra"
strategy = "gcra"
limits = {{ rpm = 10000, tpm = 1000000 }}

[[limiter]]
name = "none"
strategy = "none"
"#
    );
    let path = dir.join("scenario.toml");
    std::fs::write(&path, text).expect("written");
    path
}

/// One `requests.csv` row: (intended start ms, completion tokens, outcome).
type Row = (f64, Option<u64>, String);

/// `requests.csv` rows of `limiter`, in request id order.
fn requests(out: &Path, limiter: &str) -> Vec<Row> {
    let text = std::fs::read_to_string(out.join("requests.csv")).expect("requests.csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |h: &str| header.iter().position(|c| *c == h).unwrap();
    let (lim, start, done, outcome, id) = (
        col("limiter"),
        col("intended_start_ms"),
        col("completion_tokens"),
        col("outcome"),
        col("request_id"),
    );
    let mut rows: Vec<(u64, Row)> = lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[lim] == limiter)
        .map(|f| {
            (
                f[id].parse().unwrap(),
                (
                    f[start].parse().unwrap(),
                    f[done].parse().ok(),
                    f[outcome].to_owned(),
                ),
            )
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    rows.into_iter().map(|r| r.1).collect()
}

fn sim(path: &Path, out: &Path) -> connector_hub::harness::summary::Summary {
    let s = Scenario::from_file(path).expect("valid trace scenario");
    simulate(
        &s,
        &SimOptions {
            out: out.to_owned(),
            limiter: None,
            requests_csv: true,
            drain: Duration::from_secs(5),
        },
    )
    .expect("simulates")
}

/// The simulated replay sends one request per row at its exact relative time, with the
/// row's prompt and exactly its output length, for every limiter.
#[test]
fn a_simulated_replay_reproduces_times_and_lengths_exactly() {
    let dir = scratch("sim");
    let (text, rows) = azure_rows();
    std::fs::write(dir.join("t.csv"), text).unwrap();
    let path = scenario(&dir, "t.csv", "format = \"azure\"", "");
    let s = Scenario::from_file(&path).unwrap();
    assert!(matches!(s.phases[0].arrival, Arrival::Trace { .. }));
    assert_eq!(s.duration(), Duration::from_nanos(2_750_000_002));
    let out = dir.join("out");
    let summary = sim(&path, &out);
    for l in &summary.limiters {
        assert_eq!((l.requests, l.completed), (12, 12), "{}", l.name);
        let got = requests(&out, &l.name);
        for ((at, prompt, output), (start_ms, completion, outcome)) in rows.iter().zip(&got) {
            assert_eq!(outcome, "ok");
            assert!(
                (start_ms - *at as f64 / 1e6).abs() < 1e-9,
                "{start_ms} vs {at}"
            );
            assert_eq!(*completion, Some(*output), "prompt {prompt}");
        }
    }
}

/// `speed`, a window and `rate_scale` give the documented arrival times, simulated.
#[test]
fn speed_window_and_scale_shape_the_simulated_arrivals() {
    let dir = scratch("shape");
    let (text, rows) = azure_rows();
    std::fs::write(dir.join("t.csv"), text).unwrap();
    // Window [0.5 s, 2.5 s) of trace time at speed 4: rows 2..=9, offsets (t − 0.5 s) / 4.
    let path = scenario(
        &dir,
        "t.csv",
        "format = \"azure\"\nstart = \"500ms\"\nduration = \"2s\"\nspeed = 4",
        "",
    );
    let out = dir.join("a");
    sim(&path, &out);
    let got: Vec<f64> = requests(&out, "gcra").iter().map(|r| r.0).collect();
    let want: Vec<f64> = rows[2..10]
        .iter()
        .map(|r| (r.0 - 500_000_000) as f64 / 4.0 / 1e6)
        .collect();
    assert_eq!(got, want);
    // rate_scale = 2: every row twice, at its own instant.
    let path = scenario(&dir, "t.csv", "format = \"azure\"\nrate_scale = 2", "");
    let out = dir.join("b");
    sim(&path, &out);
    let got: Vec<f64> = requests(&out, "none").iter().map(|r| r.0).collect();
    let want: Vec<f64> = rows.iter().flat_map(|r| [r.0 as f64 / 1e6; 2]).collect();
    assert_eq!(got, want);
    // A top-level duration cuts the replay.
    let path = scenario(&dir, "t.csv", "format = \"azure\"", "duration = \"1s\"");
    let s = Scenario::from_file(&path).unwrap();
    assert_eq!(s.duration(), Duration::from_secs(1));
    let out = dir.join("c");
    let summary = sim(&path, &out);
    assert_eq!(
        summary.limiters[0].requests, 4,
        "rows at 0, 0.25, 0.5, 0.75 s"
    );
}

/// BurstGPT and Mooncake files replay through a scenario too; max_tokens modes apply.
#[test]
fn every_format_replays_through_a_scenario() {
    let dir = scratch("formats");
    std::fs::write(
        dir.join("b.csv"),
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n\
         3,ChatGPT,100,20,120,Conversation log\n\
         3.5,GPT-4,50,7,57,API log\n\
         4.25,ChatGPT,10,1,11,API log\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("m.jsonl"),
        "{\"timestamp\": 1000, \"input_length\": 30, \"output_length\": 9, \"hash_ids\": [1]}\n\
         {\"timestamp\": 1750, \"input_length\": 60, \"output_length\": 4, \"hash_ids\": []}\n",
    )
    .unwrap();
    let cases = [
        (
            "b.csv",
            "burstgpt",
            "max_tokens = 64",
            vec![(0.0, 20), (500.0, 7), (1250.0, 1)],
        ),
        (
            "m.jsonl",
            "mooncake",
            "max_tokens = \"2x\"",
            vec![(0.0, 9), (750.0, 4)],
        ),
        (
            "b.csv",
            "burstgpt",
            "max_tokens = 5",
            vec![(0.0, 5), (500.0, 5), (1250.0, 1)],
        ),
    ];
    for (file, format, max, want) in cases {
        let path = scenario(&dir, file, &format!("format = \"{format}\"\n{max}"), "");
        let out = dir.join(format!("{file}-{max}").replace([' ', '"', '='], ""));
        sim(&path, &out);
        let got: Vec<(f64, u64)> = requests(&out, "gcra")
            .into_iter()
            .map(|(t, c, _)| (t, c.unwrap()))
            .collect();
        assert_eq!(got, want, "{file} {max}: a fixed cap below the row caps it");
    }
}

/// A malformed row is a scenario error naming the scenario's field and the trace's file,
/// line and column; trace-only fields without a trace, and [[phase]] with one, are refused.
#[test]
fn trace_errors_name_the_row_and_the_field() {
    let dir = scratch("errors");
    let (text, _) = azure_rows();
    let broken = text.replacen(",60,5\n", ",6O,5\n", 1);
    assert_ne!(broken, text);
    std::fs::write(dir.join("bad.csv"), &broken).unwrap();
    let path = scenario(&dir, "bad.csv", "format = \"azure\"", "");
    let e = Scenario::from_file(&path).unwrap_err().to_string();
    assert!(e.contains("workload.trace: "), "{e}");
    assert!(e.contains("bad.csv:4:29: ContextTokens"), "{e}");
    let path = scenario(&dir, "missing.csv", "format = \"azure\"", "");
    let e = Scenario::from_file(&path).unwrap_err().to_string();
    assert!(e.contains("missing.csv: cannot read the trace"), "{e}");
    std::fs::write(dir.join("t.csv"), &text).unwrap();
    for (workload, want) in [
        ("", "workload.format: required with a trace"),
        (
            "format = \"azure\"\nprompt_tokens = 5",
            "workload.prompt_tokens: not used with a trace",
        ),
        (
            "format = \"azure\"\nspeed = 0",
            "workload.speed: 0 must be a number > 0",
        ),
        (
            "format = \"azure\"\nmax_tokens = \"lots\"",
            "workload.max_tokens: \"lots\"",
        ),
        ("format = \"csv\"", "workload.format"),
        (
            "format = \"azure\"\nstart = \"1h\"",
            "no rows in the selected window",
        ),
    ] {
        let path = scenario(&dir, "t.csv", workload, "");
        let e = Scenario::from_file(&path).unwrap_err().to_string();
        assert!(e.contains(want), "{workload}: {e}");
    }
    let path = scenario(
        &dir,
        "t.csv",
        "format = \"azure\"",
        "[[phase]]\nduration = \"1s\"\narrival = { process = \"constant\", rate = \"1/s\" }\n",
    );
    let e = Scenario::from_file(&path).unwrap_err().to_string();
    assert!(e.contains("a trace workload sets the arrivals"), "{e}");
    let e = Scenario::parse(
        "name = \"x\"\n[provider]\nkind = \"openai\"\nmodel = \"m\"\n[[phase]]\nduration = \"1s\"\narrival = { process = \"constant\", rate = \"1/s\" }\n[workload]\nspeed = 2\n",
        "x.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("workload.speed: not used without workload.trace"),
        "{e}"
    );
}

/// Live, against the embedded mock over HTTP: each row is sent once, at its relative time
/// (late by scheduling only), and the mock answers with exactly the row's output length.
#[test]
fn a_live_replay_sends_each_row_and_gets_its_exact_output_length() {
    let dir = scratch("live");
    let (text, rows) = azure_rows();
    std::fs::write(dir.join("t.csv"), text).unwrap();
    // A cap above every row: the length is the row's because the mock is told it.
    let path = scenario(
        &dir,
        "t.csv",
        "format = \"azure\"\nspeed = 2\nstream = 0.5\nmax_tokens = 64",
        "",
    );
    let out = dir.join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_hub"))
        .args([
            "run",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--limiter",
            "gcra",
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
    let got = requests(&out, "gcra");
    assert_eq!(got.len(), rows.len());
    for ((at, _, output), (start_ms, completion, outcome)) in rows.iter().zip(&got) {
        assert_eq!(outcome, "ok");
        assert!(
            (start_ms - *at as f64 / 2.0 / 1e6).abs() < 1e-6,
            "intended starts are the trace's offsets / speed: {start_ms} vs {at}"
        );
        assert_eq!(*completion, Some(*output));
    }
}
