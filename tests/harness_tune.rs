//! `hub tune` finds a known optimum: a scenario offers more than a 600-RPM quota admits, so
//! a token bucket limiting requests per minute gains goodput with its limit up to 600 RPM
//! (free of 429s: its full bucket and refill never exceed the quota's) and none past it,
//! where the quota caps goodput. The lowest limit with the best goodput under
//! `throttled_ratio <= 0.001` is 600.

use std::path::{Path, PathBuf};
use std::process::Command;

use connector_hub::harness::scenario::Scenario;
use connector_hub::harness::tune::search::Budget;
use connector_hub::harness::tune::{parse_constraint, tune, Param, TuneOptions};

/// 120 s at a constant 20 req/s (2 400 requests) against 600 RPM: the quota admits at most
/// 600 at once plus 10/s, 1 800 in all, so any limit above 600 RPM lets 429s through.
fn scenario(rpm: u64, headroom: f64) -> String {
    format!(
        r#"
name = "tune-known-optimum"
seed = 5
[provider]
kind = "openai"
target = "mock"
model = "gpt-4o-mini"
quota = {{ rpm = 600, tpm = 100000000 }}
latency = {{ ttft_median = "100ms", ttft_p99 = "300ms", per_token = "1ms" }}
[[phase]]
duration = "120s"
arrival = {{ process = "constant", rate = "20/s" }}
[workload]
prompt_tokens = {{ dist = "uniform", min = 40, max = 60 }}
max_tokens = 32
output_tokens = {{ dist = "uniform", min = 8, max = 32 }}
[[limiter]]
name = "tb"
strategy = "token_bucket"
limits = {{ rpm = {rpm}, tpm = 100000000 }}
headroom = {headroom}
accounting = "estimate"
max_wait = "1s"
[[limiter]]
name = "none"
strategy = "none"
[retry]
max_retries = 2
backoff = {{ kind = "full_jitter", base = "500ms", cap = "4s" }}
"#
    )
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hub-tune-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir is writable");
    dir
}

#[test]
fn tune_finds_the_quota_rpm_as_the_best_limit_without_429s() {
    let s = Scenario::parse(&scenario(400, 1.0), "tune.toml").expect("valid scenario");
    let opts = TuneOptions {
        limiter: "tb".into(),
        param: Param::Rpm,
        range: None,
        objective: "goodput".parse().expect("known objective"),
        constraints: vec![parse_constraint("throttled_ratio <= 0.001").expect("valid")],
        budget: Budget {
            grid: 9,
            refine: 12,
            tie: 0.005,
        },
        out: scratch("rpm"),
        drain: std::time::Duration::from_secs(5),
    };
    let t = tune(&s, &opts).expect("the search runs");
    assert_eq!(
        t.range,
        (300.0, 900.0),
        "the default range is 0.5..1.5 × quota"
    );
    let best = &t.trials[t.best.expect("a feasible value exists")];
    assert!(
        (best.value - 600.0).abs() <= 6.0,
        "best {} is not within 1 % of the known optimum 600\n{}",
        best.value,
        t.table(&opts)
    );
    // The landscape: below the quota every value is free of 429s and gives less goodput.
    // (Above it, goodput stays at the quota's: the limiter also follows the server's
    // remaining-requests headers, so a too-high limit costs few 429s — the plateau whose
    // lowest value the search picks.)
    for tr in &t.trials {
        if tr.value <= 590.0 {
            assert!(
                tr.feasible,
                "{} RPM should be free of 429s\n{}",
                tr.value,
                t.table(&opts)
            );
            assert!(tr.objective < best.objective, "{}", t.table(&opts));
        }
    }
    assert!(t.trials.len() <= 9 + 12);
    let block = t.block.expect("a best value has a block");
    // The block carries the best value (598–606: within 1 % of the quota).
    assert!(
        block.contains(&format!("rpm = {}", best.value.round())),
        "{block}"
    );
}

fn hub(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hub"))
        .args(args)
        .output()
        .expect("the hub binary runs")
}

/// Replaces the scenario's `tb` limiter block by `block` (a `[[limiter]]` table).
fn with_block(text: &str, block: &str) -> String {
    let start = text
        .find("[[limiter]]\nname = \"tb\"")
        .expect("tb block present");
    let end = start
        + text[start..]
            .find("[[limiter]]\nname = \"none\"")
            .expect("none follows");
    format!("{}{block}\n{}", &text[..start], &text[end..])
}

/// `hub tune FILE --limiter tb --param headroom` under `throttled_ratio <= 0.001`.
fn tune_headroom(file: &Path, out: &Path) -> std::process::Output {
    hub(&[
        "tune",
        file.to_str().expect("utf-8 path"),
        "--limiter",
        "tb",
        "--param",
        "headroom",
        "--constraint",
        "throttled_ratio <= 0.001",
        "--out",
        out.to_str().expect("utf-8 path"),
    ])
}

#[test]
fn hub_tune_writes_a_headroom_block_that_parses_back_into_the_scenario() {
    // 660 RPM × headroom: the optimum is the largest headroom keeping 600 RPM, ≈ 0.909.
    let dir = scratch("headroom");
    let text = scenario(660, 0.5);
    let file = dir.join("tune.toml");
    std::fs::write(&file, &text).expect("write scenario");
    let out = dir.join("report");
    let o = tune_headroom(&file, &out);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("| * |"),
        "the table marks the best value: {stdout}"
    );
    let block = std::fs::read_to_string(out.join("best-limiter.toml")).expect("block written");
    let tuned = Scenario::parse(&with_block(&text, &block), "tuned.toml")
        .unwrap_or_else(|e| panic!("the block does not parse back: {e}\n{block}"));
    let tb = tuned
        .limiters
        .iter()
        .find(|l| l.name == "tb")
        .expect("tb kept");
    let cfg = tb.limit.as_ref().expect("tb has a config");
    assert!(
        (0.895..=0.911).contains(&cfg.headroom),
        "headroom {} is not the known optimum ≈ 0.909\n{stdout}",
        cfg.headroom
    );
    assert_eq!(cfg.limits.rpm, Some(660), "other fields are kept");
    let trials = |out: &Path| {
        std::fs::read_dir(out.join("trials"))
            .expect("trials kept")
            .count()
    };
    let first = trials(&out);
    assert!(first >= 9, "each trial's report is kept: {first}");
    // A second tune into the same directory replaces the trials, it does not add to them.
    std::fs::create_dir_all(out.join("trials/99-stale")).expect("mkdir");
    let again = tune_headroom(&file, &out);
    assert!(again.status.success());
    assert_eq!(
        trials(&out),
        first,
        "the same search, the same trials, nothing stale"
    );
}

#[test]
fn hub_tune_rejects_a_bad_constraint_with_exit_2() {
    let dir = scratch("bad");
    let file = dir.join("tune.toml");
    std::fs::write(&file, scenario(600, 1.0)).expect("write scenario");
    let o = hub(&[
        "tune",
        file.to_str().expect("utf-8 path"),
        "--limiter",
        "none",
        "--param",
        "rpm",
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("baseline"));
    let o = hub(&[
        "tune",
        file.to_str().expect("utf-8 path"),
        "--limiter",
        "tb",
        "--param",
        "rpm",
        "--constraint",
        "throttled 0.1",
    ]);
    assert_eq!(o.status.code(), Some(2));
}
