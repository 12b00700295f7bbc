//! Honest reports: on every shipped scenario, simulated, the final outcomes partition the
//! requests in every table, and the utilisation of every quota dimension never exceeds
//! 100 % for a limiter that kept within the quota; a `url` target that refuses connections
//! reports its errors and fails; `hub check` warns when the drain would cut the queue.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use connector_hub::harness::report::summary_markdown;
use connector_hub::harness::scenario::drain::{admission_times, drain_warnings};
use connector_hub::harness::scenario::Scenario;
use connector_hub::harness::sim::{simulate, SimOptions};
use connector_hub::harness::summary::LimiterSummary;

fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "hub-honest-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir is writable");
    dir
}

fn shipped() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("scenarios/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "{files:?}");
    files
}

fn assert_partition(l: &LimiterSummary, what: &str) {
    assert_eq!(
        l.completed + l.failed_throttled + l.errors + l.dropped,
        l.requests,
        "{what} {}: ok + failed after 429s + errors + dropped = requests",
        l.name
    );
}

/// Every shipped scenario, simulated in full: outcomes partition the requests (in the
/// summary and in the Markdown table), utilisation is a fraction of what the quota could
/// admit — at most 1 for every limiter that saw no 429 — and names its binding dimension.
#[test]
fn every_shipped_scenario_reports_outcomes_that_add_up_and_utilisation_within_the_quota() {
    for file in shipped() {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let scenario = Scenario::from_file(&file).expect("shipped scenarios are valid");
        let out = scratch(&name);
        let summary = simulate(
            &scenario,
            &SimOptions {
                out: out.clone(),
                limiter: None,
                requests_csv: false,
                drain: Duration::from_secs(5),
            },
        )
        .expect("simulates");
        for l in &summary.limiters {
            assert_partition(l, &name);
            // Requests and tokens; Anthropic's quota counts input and output tokens apart.
            let dimensions = if name.starts_with("anthropic") { 3 } else { 2 };
            assert_eq!(
                l.utilisation.len(),
                dimensions,
                "{name} {}: every dimension",
                l.name
            );
            for u in &l.utilisation {
                assert!(u.capacity > 0, "{name} {}: {u:?}", l.name);
                if l.throttled == 0 {
                    assert!(
                        u.utilisation <= 1.0 && u.charged <= u.capacity,
                        "{name} {}: no 429 yet {u:?}",
                        l.name
                    );
                }
            }
            let binding = l.binding_dimension.as_deref().expect("a binding dimension");
            let top = l
                .utilisation
                .iter()
                .map(|u| u.utilisation)
                .fold(0.0, f64::max);
            assert_eq!(l.quota_utilisation, Some(top), "{name} {}", l.name);
            assert!(
                l.utilisation
                    .iter()
                    .any(|u| u.dimension == binding && u.utilisation == top),
                "{name} {}",
                l.name
            );
            assert!(l.span_s > 0.0, "{name} {}", l.name);
            if l.completed < l.requests {
                let v = l.verdict();
                assert!(
                    v.contains(&format!(
                        "{} of {} not completed",
                        l.requests - l.completed,
                        l.requests
                    )),
                    "{name} {}: {v}",
                    l.name
                );
            }
        }
        // The Markdown table: ok, failed after 429s, errors, dropped add up to requests.
        let md = summary_markdown(&summary);
        let header: Vec<&str> = md
            .lines()
            .find(|l| l.starts_with("| limiter |"))
            .expect("table header")
            .split('|')
            .map(str::trim)
            .collect();
        let col = |h: &str| header.iter().position(|c| *c == h).expect(h);
        let rows: Vec<Vec<&str>> = md
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| limiter"))
            .map(|l| l.split('|').map(str::trim).collect())
            .collect();
        assert_eq!(rows.len(), summary.limiters.len());
        for row in rows {
            let n = |h: &str| row[col(h)].parse::<u64>().expect(h);
            assert_eq!(
                n("ok") + n("failed after 429s") + n("errors") + n("dropped"),
                n("requests"),
                "{name}: {row:?}"
            );
        }
        // The baseline of the quickstart runs out of retries on 429s: counted, not lost.
        if name == "quickstart" {
            let none = summary.limiters.iter().find(|l| l.strategy == "none");
            assert!(none.is_some_and(|l| l.failed_throttled > 0), "{md}");
        }
        let _ = std::fs::remove_dir_all(&out);
    }
}

fn hub(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hub"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("the hub binary runs")
}

/// A `url` target on a port that refuses connections: every request is an error, the
/// summary counts them, the verdict says so, and `hub run` does not exit 0. With two
/// limiters it warns that the endpoint's quota is not reset between them.
#[test]
fn a_url_target_that_refuses_connections_is_reported_as_errors_and_fails() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dir = scratch("refused");
    let text = format!(
        r#"
name = "refused"
seed = 3

[provider]
kind = "openai"
target = "url"
url = "http://127.0.0.1:{port}/v1"
model = "gpt-4o-mini"
api_key_env = "HUB_HONEST_TEST_KEY"

[[phase]]
duration = "1s"
arrival = {{ process = "constant", rate = "4/s" }}

[workload]
prompt_tokens = 10
max_tokens = 5

[[limiter]]
name = "gcra"
strategy = "gcra"
limits = {{ rpm = 600 }}

[[limiter]]
name = "none"
strategy = "none"

[retry]
max_retries = 0
"#
    );
    let path = dir.join("s.toml");
    std::fs::write(&path, text).expect("written");
    let out = dir.join("report");
    let check = hub(&["check", path.to_str().unwrap()], &[]);
    let plan = String::from_utf8_lossy(&check.stdout);
    assert!(
        plan.contains("quota is not reset between the 2 limiters") && plan.contains("--pause"),
        "{plan}"
    );
    let o = hub(
        &[
            "run",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--drain",
            "2s",
            "--no-requests-csv",
        ],
        &[("HUB_HONEST_TEST_KEY", "k")],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("quota is not reset between limiters"),
        "{stderr}"
    );
    let summary: connector_hub::harness::summary::Summary =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    for l in &summary.limiters {
        assert_partition(l, "refused");
        assert_eq!((l.requests, l.errors, l.completed), (4, 4, 0), "{l:?}");
        assert!(!l.passed);
        assert!(l.utilisation.is_empty(), "no known quota behind a url");
        let v = l.verdict();
        assert!(
            v.contains("no request completed") && v.contains("4 of 4 not completed: 4 errors"),
            "{v}"
        );
    }
    assert!(stdout.contains("4 errors"), "{stdout}");
    // summary.md and index.html open with one verdict line per limiter.
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        md.contains("- gcra: no 429s; ") && md.contains("(no request completed)"),
        "{md}"
    );
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    let verdicts = html.find("<ul id=\"verdicts\">").expect("verdict list");
    assert!(
        verdicts < html.find("id=\"summary\"").unwrap(),
        "before the table"
    );
    assert!(
        html.contains("<li class=\"fail\" data-limiter=\"none\">none: no 429s"),
        "{html}"
    );
}

/// A 400-request batch offered in one second against 120 RPM needs about 140 s of
/// admission: `hub check` with the default drain warns, with a long enough drain it does
/// not; the simulated run with the default drain reports the cut requests as dropped.
#[test]
fn a_drain_shorter_than_the_implied_queue_is_warned_about() {
    let text = r#"
name = "batch"
seed = 1

[provider]
kind = "openai"
target = "mock"
model = "gpt-4o-mini"
quota = { rpm = 120, tpm = 40000 }

[[phase]]
duration = "1s"
arrival = { process = "constant", rate = "400/s" }

[workload]
prompt_tokens = { dist = "uniform", min = 50, max = 800 }
max_tokens = 100

[[limiter]]
name = "gcra"
strategy = "gcra"
limits = { rpm = 120, tpm = 40000 }
max_wait = "10m"
"#;
    let dir = scratch("drain");
    let path = dir.join("s.toml");
    std::fs::write(&path, text).expect("written");
    let s = Scenario::from_file(&path).expect("valid");
    let times = admission_times(&s);
    // Tokens bind: 400 × (425 + 100) = 210 000 tokens, 40 000 at once, then 40 000/min:
    // 255 s.
    let secs = times[0].1.as_secs_f64();
    assert!((secs - 255.0).abs() < 1.0, "{secs}");
    let w = drain_warnings(&s, Duration::from_secs(5));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("limiter gcra") && w[0].contains("--drain"),
        "{}",
        w[0]
    );
    assert!(drain_warnings(&s, Duration::from_secs(300)).is_empty());
    let o = hub(&["check", path.to_str().unwrap()], &[]);
    assert!(String::from_utf8_lossy(&o.stdout)
        .contains("warning: limiter gcra: the limits need about 255 s"));

    let summary = simulate(
        &s,
        &SimOptions {
            out: dir.join("sim"),
            limiter: None,
            requests_csv: false,
            drain: Duration::from_secs(5),
        },
    )
    .expect("simulates");
    let l = &summary.limiters[0];
    assert_partition(l, "batch");
    assert!(l.dropped > 300, "{l:?}");
    assert!(l.verdict().contains(&format!("{} dropped", l.dropped)));
    assert!(
        l.quota_utilisation.is_some_and(|u| u <= 1.0),
        "{:?}",
        l.utilisation
    );
}

/// Natural text (4 to 5 characters per token): the server charges ⌈characters / 4⌉, more
/// than the token count; the hub's estimate counts characters too, so a limiter set to the
/// quota sees no 429 while tokens bind, and the plan says what the ratio does.
#[test]
fn natural_text_is_charged_by_characters_and_the_limiter_keeps_within_the_quota() {
    let text = r#"
name = "natural"
seed = 3

[provider]
kind = "openai"
target = "mock"
model = "gpt-4o-mini"
quota = { rpm = 1000, tpm = 20000 }

[[phase]]
duration = "2m"
arrival = { process = "poisson", rate = "2/s" }

[workload]
prompt_tokens = { dist = "uniform", min = 50, max = 800 }
max_tokens = 100
prompt_chars_per_token = "natural"

[[limiter]]
name = "gcra"
strategy = "gcra"
limits = { rpm = 1000, tpm = 20000 }
accounting = "estimate"
max_wait = "10m"
"#;
    let dir = scratch("natural");
    let path = dir.join("s.toml");
    std::fs::write(&path, text).expect("written");
    let s = Scenario::from_file(&path).expect("valid");
    assert!(
        s.plan()
            .contains("natural (4 to 5 per request) characters per token"),
        "{}",
        s.plan()
    );
    // The prompt part of the mean estimate is 425 tokens × 4.5 / 4.
    let est = s.workload.mean_estimate();
    assert!((est - (425.0 * 1.125 + 100.0)).abs() < 1.0, "{est}");
    let summary = simulate(
        &s,
        &SimOptions {
            out: dir.join("sim"),
            limiter: None,
            requests_csv: false,
            drain: Duration::from_secs(600),
        },
    )
    .expect("simulates");
    let l = &summary.limiters[0];
    assert_partition(l, "natural");
    assert_eq!(l.throttled, 0, "{l:?}");
    assert_eq!(l.binding_dimension.as_deref(), Some("tokens"));
    let tokens = &l.utilisation[1];
    // Charged by characters: more than the prompt + max_tokens token counts would be.
    assert!(
        tokens.charged as f64 > l.completed as f64 * (425.0 * 1.08 + 100.0),
        "{tokens:?}"
    );
    assert!(
        tokens.utilisation <= 1.0 && tokens.utilisation > 0.9,
        "{tokens:?}"
    );
}
