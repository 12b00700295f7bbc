//! `kind = "anthropic"` in scenarios: validation of its quota fields, and
//! `scenarios/anthropic-otpm.toml` simulated in full and run live (shortened) against the
//! embedded Anthropic mock, where a limiter counting only total tokens meets 429s on
//! output tokens and one counting input and output apart does not.

use std::path::{Path, PathBuf};
use std::process::Command;

use connector_hub::harness::scenario::{ProviderKind, Scenario};
use serde_json::Value;

fn scenario_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/anthropic-otpm.toml")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hub-anthropic-{}-{name}", std::process::id()));
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

/// `summary.json`'s limiter entry named `name`.
fn limiter(summary: &Value, name: &str) -> Value {
    summary["limiters"]
        .as_array()
        .expect("limiters")
        .iter()
        .find(|l| l["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no limiter {name}"))
}

fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).expect("summary"))
        .expect("json")
}

#[test]
fn the_scenario_parses_with_its_input_and_output_quota() {
    let s = Scenario::from_file(&scenario_path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.provider.kind, ProviderKind::Anthropic);
    let q = s.provider.quota.expect("a quota");
    assert_eq!(
        (q.rpm, q.itpm, q.otpm, q.tpm),
        (Some(1000), Some(200_000), Some(4000), None)
    );
    assert_eq!(
        s.limit_key().to_string(),
        "anthropic/claude-sonnet-4-5-20250929"
    );
    // `hub check` names the limiter that counts only total tokens, and only it.
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(
        s.warnings[0].contains("total-tpm") && s.warnings[0].contains("output tokens"),
        "{:?}",
        s.warnings
    );
    let plan = s.plan();
    assert!(plan.contains("200000 ITPM, 4000 OTPM"), "{plan}");
    assert!(plan.contains("3600 OTPM"), "{plan}");
}

#[test]
fn anthropic_quota_fields_are_checked_per_kind() {
    let text = std::fs::read_to_string(scenario_path()).expect("readable");
    let err = |from: &str, to: &str| {
        let changed = text.replacen(from, to, 1);
        assert_ne!(changed, text, "{from}");
        Scenario::parse(&changed, "t.toml")
            .expect_err("invalid")
            .to_string()
    };
    let e = err("otpm = 4000 }", "otpm = 4000, tpm = 9 }");
    assert!(
        e.contains("provider.quota.tpm") && e.contains("not used"),
        "{e}"
    );
    let e = err("itpm = 200000,", "itpm = 0,");
    assert!(
        e.contains("provider.quota.itpm") && e.contains("at least 1"),
        "{e}"
    );
    let e = err("kind = \"anthropic\"", "kind = \"openai\"");
    assert!(
        e.contains("provider.quota.itpm") && e.contains("not used"),
        "{e}"
    );
    let e = err("target = \"mock\"", "target = \"mock\"\ndeployment = \"d\"");
    assert!(e.contains("provider.deployment"), "{e}");
    let e = err("otpm = 4000 }", "otpm = 4000, rpm_window = \"2m\" }");
    assert!(e.contains("provider.quota.rpm_window"), "{e}");
    let ok = text.replacen("otpm = 4000 }", "otpm = 4000, rpm_window = \"1s\" }", 1);
    let s = Scenario::parse(&ok, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        s.provider.quota.and_then(|q| q.rpm_window),
        Some(std::time::Duration::from_secs(1))
    );
}

/// Simulated in full: the total-token limiter is refused on output tokens, the
/// input/output one never is, and both complete about what OTPM allows.
#[test]
fn simulated_otpm_binds_and_only_the_total_token_limiter_is_throttled() {
    let dir = scratch("sim");
    let out = dir.join("sim");
    let path = scenario_path();
    let o = hub(&[
        "simulate",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "total-tpm fails its threshold\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s = summary(&out);
    let (total, split, none) = (
        limiter(&s, "total-tpm"),
        limiter(&s, "itpm-otpm"),
        limiter(&s, "none"),
    );
    let n = |v: &Value, f: &str| v[f].as_u64().unwrap_or_else(|| panic!("{f} in {v}"));
    assert!(n(&total, "throttled") > 0, "{total}");
    assert_eq!(n(&split, "throttled"), 0, "{split}");
    assert!(n(&none, "throttled") > n(&total, "throttled"), "{none}");
    assert_eq!(split["passed"], true);
    assert_eq!(total["passed"], false);
    // OTPM (4 000 per minute, ~400 generated per answer, a full bucket to start) caps what
    // completes in 120 s at about 8 + 2 × 10 = 28, whatever the limiter.
    for l in [&total, &split, &none] {
        let c = n(l, "completed");
        assert!((20..=36).contains(&c), "completed {c}: {l}");
    }
    // Deterministic: the same seed gives the same report.
    let again = dir.join("again");
    hub(&[
        "simulate",
        path.to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(out.join("summary.json")).unwrap(),
        std::fs::read(again.join("summary.json")).unwrap()
    );
}

/// Live over real HTTP against the embedded Anthropic mock, shortened to 10 s: nothing
/// errors, the input/output limiter sees no 429, and the simulation of the same run agrees.
#[test]
fn the_scenario_runs_live_against_the_anthropic_mock() {
    let dir = scratch("live");
    let out = dir.join("live");
    let path = scenario_path();
    let o = hub(&[
        "run",
        path.to_str().unwrap(),
        "--duration",
        "10s",
        "--drain",
        "5s",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        matches!(o.status.code(), Some(0 | 3)),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s = summary(&out);
    assert_eq!(s["mode"], "live");
    for name in ["total-tpm", "itpm-otpm", "none"] {
        let l = limiter(&s, name);
        assert_eq!(l["errors"], 0, "{l}");
        assert!(l["completed"].as_u64().unwrap_or(0) > 0, "{l}");
    }
    assert_eq!(limiter(&s, "itpm-otpm")["throttled"], 0);

    // The simulator, on the same shortened scenario, runs the mock's Anthropic engine and
    // its draws: the counts agree with the live run up to jitter at the edges.
    let sim = dir.join("sim");
    hub(&[
        "simulate",
        path.to_str().unwrap(),
        "--duration",
        "10s",
        "--drain",
        "5s",
        "--out",
        sim.to_str().unwrap(),
    ]);
    let simulated = summary(&sim);
    for name in ["total-tpm", "itpm-otpm", "none"] {
        let (l, v) = (limiter(&s, name), limiter(&simulated, name));
        for field in ["completed", "throttled"] {
            let (a, b) = (l[field].as_i64().unwrap(), v[field].as_i64().unwrap());
            assert!(
                (a - b).abs() <= 2,
                "{name} {field}: live {a}, simulated {b}"
            );
        }
    }
}
