//! `hub verify` on the shipped scenarios: every limiter meets every conformance property,
//! and the adversarial episodes actually ran (exact-wait probes, reconciliations, queued
//! waiters, a clock set back). Few traces per limiter here; `hub verify` runs 256.

use std::path::{Path, PathBuf};
use std::process::Command;

use connector_hub::harness::scenario::Scenario;
use connector_hub::harness::verify::{render, verify};

fn shipped() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("scenarios/ exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// Traces per limiter: `HUB_VERIFY_CASES`, default 12.
fn cases() -> u32 {
    std::env::var("HUB_VERIFY_CASES").map_or(12, |v| v.parse().expect("a number"))
}

#[test]
fn every_shipped_limiter_meets_every_property_on_adversarial_traces() {
    for path in shipped() {
        let s = Scenario::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let outcomes = verify(&s, cases(), s.seed).expect("limits are valid");
        assert!(
            !outcomes.is_empty(),
            "{}: something to verify",
            path.display()
        );
        for o in &outcomes {
            let r = &o.report;
            assert!(
                o.counterexample.is_none(),
                "{}: {}",
                path.display(),
                render(o)
            );
            assert_eq!(r.traces, cases(), "{}: {}", path.display(), o.limiter);
            for (what, n) in [
                ("admitted", r.admitted),
                ("refused", r.refused),
                ("exact-wait probes", r.exact_waits),
                ("reconciled", r.reconciled),
                ("queued", r.queued),
                ("steps with the clock back", r.backwards),
            ] {
                assert!(n > 0, "{} {}: no {what}", path.display(), o.limiter);
            }
        }
    }
}

#[test]
fn hub_verify_prints_one_line_per_limiter_and_exits_0_when_every_property_holds() {
    let out = Command::new(env!("CARGO_BIN_EXE_hub"))
        .args(["verify", "--cases", "4"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/quickstart.toml"))
        .output()
        .expect("hub runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for (line, name) in lines
        .iter()
        .zip(["token-bucket", "sliding-log", "leaky-bucket"])
    {
        assert!(line.starts_with(&format!("{name}: 4 traces")), "{line}");
        assert!(line.ends_with("every property holds"), "{line}");
    }
}

/// A scenario whose limiters count input and output tokens apart (`itpm`, `otpm`, output
/// charged at admission or at usage): `hub verify` proves them, and its line shows the
/// input- and output-token dimensions each refusing in turn.
#[test]
fn hub_verify_proves_input_and_output_token_limits() {
    let text = r#"name = "split"
seed = 3
[provider]
kind = "openai"
model = "gpt-4o-mini"
quota = { rpm = 60, tpm = 10000 }
[[phase]]
duration = "2s"
arrival = { process = "poisson", rate = "5/s" }
[workload]
prompt_tokens = 100
max_tokens = 50
[[limiter]]
name = "split-bucket"
strategy = "token_bucket"
limits = { rpm = 60, itpm = 6000, otpm = 2000 }
accounting = "actual"
[[limiter]]
name = "split-log-usage"
strategy = "sliding_log"
limits = { rpm = 60, tpm = 9000, itpm = 6000, otpm = 2000 }
charge_at = { output = "usage" }
"#;
    let s = Scenario::parse(text, "split.toml").expect("valid scenario");
    let outcomes = verify(&s, cases(), s.seed).expect("limits are valid");
    assert_eq!(outcomes.len(), 2);
    for o in &outcomes {
        assert!(o.counterexample.is_none(), "{}", render(o));
        let line = render(o);
        for d in [
            "input tokens per minute (ITPM)",
            "output tokens per minute (OTPM)",
        ] {
            assert!(
                line.contains(&format!(" on {d}")),
                "{d} never refused: {line}"
            );
        }
    }
    let path = std::env::temp_dir().join(format!("hub-verify-split-{}.toml", std::process::id()));
    std::fs::write(&path, text).expect("temp file");
    let out = Command::new(env!("CARGO_BIN_EXE_hub"))
        .args(["verify", "--cases", "4"])
        .arg(&path)
        .output()
        .expect("hub runs");
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for line in lines {
        assert!(line.ends_with("every property holds"), "{line}");
        assert!(line.contains("(OTPM)"), "{line}");
    }
}
