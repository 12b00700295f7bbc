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
