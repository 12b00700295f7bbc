//! Scenario files end to end, without running them: every shipped scenario parses and says
//! what its header promises; every kind of mistake (syntax, unknown field, wrong type,
//! failed check) is reported with file, line and field; thresholds parse; the open-loop
//! schedule has the asked statistics and does not drift; request shapes are deterministic.

use std::path::{Path, PathBuf};
use std::time::Duration;

use connector_hub::harness::arrival::{open_loop_schedule, phase_bounds, Arrival, Phase};
use connector_hub::harness::scenario::{
    Op, ProviderKind, Scenario, ScenarioError, Target, TokenDist, Workload,
};
use connector_hub::harness::workload::{prompt_text, PROMPT_CHARS_PER_TOKEN};
use connector_hub::limiter::{Strategy, TokenAccounting};
use connector_hub::units::parse_rate;
use proptest::prelude::*;

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

fn shipped() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(scenarios_dir())
        .expect("scenarios/ exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn load(name: &str) -> Scenario {
    Scenario::from_file(&scenarios_dir().join(name)).unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------------------------------
// Shipped scenarios

#[test]
fn every_shipped_scenario_parses_and_is_documented_at_its_top() {
    let files = shipped();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for required in [
        "quickstart.toml",
        "openai-burst.toml",
        "azure-10s-window.toml",
        "long-prompts.toml",
        "closed-loop.toml",
    ] {
        assert!(names.iter().any(|n| n == required), "missing {required}");
    }
    for path in files {
        let s = Scenario::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let stem = path.file_stem().unwrap().to_string_lossy();
        assert_eq!(s.name, stem, "{}: name matches the file", path.display());
        let header: Vec<&str> = s.text.lines().take_while(|l| l.starts_with('#')).collect();
        assert!(
            header.len() >= 5 && header[0].starts_with(&format!("# {stem} ")),
            "{}: starts with a comment block naming it",
            path.display()
        );
        let header = header.join("\n");
        assert!(
            header.contains("What it shows") && header.contains("What to look at"),
            "{}: header says what it shows and what to look at",
            path.display()
        );
        assert!(s.plan().contains(&s.name));
        assert!(
            s.limiters.iter().any(|l| l.strategy.is_none()),
            "{}: has the none baseline",
            path.display()
        );
    }
}

#[test]
fn quickstart_is_short_overloaded_and_its_limiters_fit_the_quota() {
    use connector_hub::limiter::Unit;
    let s = load("quickstart.toml");
    assert_eq!(s.provider.kind, ProviderKind::Azure);
    assert_eq!(s.provider.target, Target::Mock);
    let strategies: Vec<_> = s.limiters.iter().filter_map(|l| l.strategy).collect();
    assert!(strategies.len() >= 3, "three strategies");
    assert_eq!(s.limiters.len(), strategies.len() + 1, "plus the baseline");
    // Every limiter runs the whole duration in turn: keep all runs well under a minute.
    let traffic = s.duration() * s.limiters.len() as u32;
    assert!(traffic <= Duration::from_secs(48), "{traffic:?}");
    // The quota's request window fits the run ten times over, so no start-of-run
    // allowance (a full per-minute bucket) dominates what a 10-s run can admit.
    let quota = s.provider.quota.expect("quota");
    let window = quota.rpm_window.expect("a request window");
    let allowed = quota.requests_per_window().expect("requests per window") as f64;
    assert!(s.duration() >= window * 10, "{window:?}");
    // A phase offers more than 1.5 times what the quota admits per window, so the
    // baseline must see 429s; over the whole run the quota admits what is offered.
    let per_window = |p: &Phase| {
        p.expected_requests().unwrap_or(0.0) * window.as_secs_f64() / p.duration.as_secs_f64()
    };
    assert!(
        s.phases.iter().any(|p| per_window(p) > 1.5 * allowed),
        "no phase overloads the window"
    );
    let offered: f64 = s.phases.iter().filter_map(|p| p.expected_requests()).sum();
    let run = s.duration().as_secs_f64();
    assert!(
        offered <= allowed * run / window.as_secs_f64(),
        "offered {offered}"
    );
    // Correctly configured limiters: within the quota (no warning), charging what the
    // server charges, and able to admit the whole offer before their wait bound runs out,
    // so none drops a request.
    for l in s.limiters.iter().filter(|l| l.strategy.is_some()) {
        let cfg = l.limit.as_ref().unwrap();
        assert_eq!(cfg.accounting, TokenAccounting::Estimate, "{}", l.name);
        let dims = cfg.dimensions().unwrap();
        assert!(dims.iter().all(|d| d.burst <= d.amount));
        let max_wait = cfg
            .max_wait
            .unwrap_or_else(|| panic!("{}: bounded wait keeps the run short", l.name));
        let requests = dims
            .iter()
            .find(|d| d.kind.unit() == Unit::Requests)
            .expect("a request limit");
        let w = requests.kind.window().expect("a rate").as_secs_f64();
        let admits = requests.burst as f64
            + requests.amount as f64 * (run + max_wait.as_secs_f64() / 2.0) / w;
        assert!(admits >= 1.1 * offered, "{}: {admits} vs {offered}", l.name);
    }
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert_eq!(s.thresholds[0].metric, "throttled_ratio");
}

#[test]
fn scenario_warnings_flag_exactly_the_misconfigured_limiters() {
    let azure = load("azure-10s-window.toml");
    assert_eq!(
        azure.provider.deployment.as_deref(),
        Some("gpt4o-mini-east")
    );
    let quota = azure.provider.quota.unwrap();
    assert_eq!(
        (quota.rpm, quota.requests_per_window()),
        (Some(60), Some(10))
    );
    assert_eq!(azure.warnings.len(), 1, "{:?}", azure.warnings);
    assert!(azure.warnings[0].contains("rpm-60-per-minute"));

    let long = load("long-prompts.toml");
    assert_eq!(long.warnings.len(), 1, "{:?}", long.warnings);
    assert!(long.warnings[0].contains("tpm-actual") && long.warnings[0].contains("estimate"));

    for quiet in ["openai-burst.toml", "closed-loop.toml"] {
        let s = load(quiet);
        assert!(s.warnings.is_empty(), "{quiet}: {:?}", s.warnings);
    }
}

#[test]
fn gamma_and_closed_loop_scenarios_use_their_processes() {
    let burst = load("openai-burst.toml");
    assert!(matches!(
        burst.phases[0].arrival,
        Arrival::Gamma { burstiness, .. } if burstiness > 1.0
    ));
    let closed = load("closed-loop.toml");
    assert!(closed.phases.iter().all(|p| !p.arrival.is_open_loop()));
    assert_eq!(open_loop_schedule(&closed.phases, closed.seed).count(), 0);
}

// ---------------------------------------------------------------------------------------
// Errors name file, line and field

/// A valid scenario; tests replace one numbered line (1-based) to break it.
const BASE: &str = r#"name = "t"
seed = 1
[provider]
kind = "openai"
model = "gpt-4o-mini"
quota = { rpm = 60, tpm = 10000 }
[[phase]]
duration = "2s"
arrival = { process = "poisson", rate = "5/s" }
[[phase]]
duration = "2s"
arrival = { process = "constant", rate = "8/s" }
[workload]
prompt_tokens = 100
max_tokens = 50
[[limiter]]
name = "tb"
strategy = "token_bucket"
limits = { rpm = 60 }
[[limiter]]
name = "none"
strategy = "none"
[thresholds]
throttled_ratio = "< 0.01"
"#;

fn with_line(line: usize, text: &str) -> String {
    BASE.lines()
        .enumerate()
        .map(|(i, l)| if i + 1 == line { text } else { l })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parses `text` as `t.toml`, expecting an error at `line` naming `field`; returns its
/// message.
fn error_at(text: &str, line: usize, field: &str) -> String {
    let err = Scenario::parse(text, "scenarios/t.toml").expect_err("invalid scenario");
    let shown = err.to_string();
    println!("{shown}");
    let prefix = format!("scenarios/t.toml:{line}:");
    assert!(shown.starts_with(&prefix), "want {prefix}…, got: {shown}");
    assert_eq!(err.line(), Some(line), "{shown}");
    assert_eq!(err.field(), Some(field), "{shown}");
    assert!(shown.contains(&format!(": {field}: ")), "{shown}");
    shown
}

#[test]
fn base_scenario_is_valid() {
    let s = Scenario::parse(BASE, "t.toml").unwrap();
    assert_eq!(s.duration(), Duration::from_secs(4));
    assert_eq!(s.limiters.len(), 2);
}

#[test]
fn syntax_errors_name_line_and_field() {
    let e = error_at(
        &with_line(12, r#"arrival = { process = "constant", rate = "8/s }"#),
        12,
        "phase[1].arrival",
    );
    assert!(e.contains("invalid TOML"), "{e}");
    let e = error_at(
        &with_line(15, "max_tokens = = 50"),
        15,
        "workload.max_tokens",
    );
    assert!(e.contains("invalid TOML"), "{e}");
}

#[test]
fn unknown_fields_name_line_and_field() {
    let e = error_at(&with_line(6, "quotaa = { rpm = 60 }"), 6, "provider.quotaa");
    assert!(
        e.contains("unknown field `quotaa`") && e.contains("quota"),
        "{e}"
    );
    let e = error_at(
        &with_line(
            9,
            r#"arrival = { process = "poisson", rate = "5/s", rat = "1/s" }"#,
        ),
        9,
        "phase[0].arrival.rat",
    );
    assert!(e.contains("unknown field `rat`"), "{e}");
    let e = error_at(
        &with_line(19, "limits = { rpx = 60 }"),
        19,
        "limiter[0].limits.rpx",
    );
    assert!(e.contains("rpx"), "{e}");
    let e = error_at(
        &with_line(24, r#"latency_p42 = "< 1s""#),
        24,
        "thresholds.latency_p42",
    );
    assert!(e.contains("latency_p99"), "{e}");
}

#[test]
fn wrong_types_and_bad_values_name_line_and_field() {
    let e = error_at(&with_line(2, r#"seed = "seven""#), 2, "seed");
    assert!(e.contains("invalid type"), "{e}");
    let e = error_at(&with_line(15, "max_tokens = -5"), 15, "workload.max_tokens");
    assert!(e.contains("-5"), "{e}");
    let e = error_at(
        &with_line(12, r#"arrival = { process = "constant", rate = "8/sx" }"#),
        12,
        "phase[1].arrival.rate",
    );
    assert!(e.contains(r#"invalid rate "8/sx""#), "{e}");
    let e = error_at(
        &with_line(8, r#"duration = "2 parsecs""#),
        8,
        "phase[0].duration",
    );
    assert!(e.contains("invalid duration"), "{e}");
    let e = error_at(
        &with_line(18, r#"strategy = "token_bukket""#),
        18,
        "limiter[0].strategy",
    );
    assert!(e.contains("token_bukket") && e.contains("gcra"), "{e}");
    let e = error_at(&with_line(4, r#"kind = "bedrock""#), 4, "provider.kind");
    assert!(e.contains("bedrock"), "{e}");
}

#[test]
fn failed_checks_name_line_and_field() {
    // A field that parses but is wrong for its neighbours or out of range.
    let e = error_at(
        &with_line(12, r#"arrival = { process = "gamma", rate = "8/s" }"#),
        12,
        "phase[1].arrival.burstiness",
    );
    assert!(e.contains("required for process = \"gamma\""), "{e}");
    let e = error_at(
        &with_line(
            9,
            r#"arrival = { process = "poisson", rate = "5/s", concurrency = 3 }"#,
        ),
        9,
        "phase[0].arrival.concurrency",
    );
    assert!(e.contains("not used by process = \"poisson\""), "{e}");
    let e = error_at(
        &with_line(19, "limits = { rpm = 60 }\nheadroom = 1.5"),
        20,
        "limiter[0].headroom",
    );
    assert!(e.contains("1.5") && e.contains("(0, 1]"), "{e}");
    let e = error_at(&with_line(21, r#"name = "tb""#), 21, "limiter[1].name");
    assert!(e.contains("already the name of limiter[0]"), "{e}");
    let e = error_at(
        &with_line(22, "strategy = \"none\"\nlimits = { rpm = 5 }"),
        23,
        "limiter[1].limits",
    );
    assert!(e.contains("not used by strategy = \"none\""), "{e}");
    let e = error_at(&with_line(2, "seed = 1\nduration = \"5s\""), 3, "duration");
    assert!(e.contains("does not match the phases' total 4s"), "{e}");
    let e = error_at(
        &with_line(24, r#"throttled_ratio = "0.01""#),
        24,
        "thresholds.throttled_ratio",
    );
    assert!(e.contains("expected a comparison"), "{e}");
    let azure = BASE
        .replace("kind = \"openai\"", "kind = \"azure\"")
        .replace("quota = { rpm = 60, tpm = 10000 }", "quota = { rpm = 60 }");
    let e = error_at(&azure, 6, "provider.quota.tpm");
    assert!(e.contains("required for kind = \"azure\""), "{e}");
    let e = error_at(&with_line(1, r#"name = "../etc""#), 1, "name");
    assert!(e.contains("invalid name"), "{e}");
}

#[test]
fn missing_required_fields_point_at_their_table() {
    let e = error_at(&with_line(5, "# no model"), 3, "provider.model");
    assert!(e.contains("missing field `model`"), "{e}");
    let text = BASE.replace(
        "[[limiter]]\nname = \"tb\"\nstrategy = \"token_bucket\"\nlimits = { rpm = 60 }\n",
        "",
    );
    let text = text.replace("[[limiter]]\nname = \"none\"\nstrategy = \"none\"\n", "");
    let err = Scenario::parse(&text, "t.toml").unwrap_err();
    assert_eq!(err.field(), Some("limiter"), "{err}");
}

#[test]
fn file_errors_carry_the_path() {
    let dir = std::env::temp_dir().join(format!("scenario-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.toml");
    std::fs::write(&path, with_line(15, "max_tokens = 0")).unwrap();
    let err = Scenario::from_file(&path).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("{}:15:", path.display())),
        "{shown}"
    );
    assert!(
        shown.contains("workload.max_tokens: must be at least 1"),
        "{shown}"
    );
    let missing = Scenario::from_file(&dir.join("absent.toml")).unwrap_err();
    assert!(matches!(missing, ScenarioError::Read { .. }), "{missing}");
    assert!(missing.to_string().contains("absent.toml"));
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------
// Resolved values

#[test]
fn thresholds_parse_in_metric_order_with_units() {
    let text = BASE.replace(
        "throttled_ratio = \"< 0.01\"",
        "latency_p99 = \"< 10s\"\nthrottled_ratio = \"<= 1%\"\ngoodput_tpm = \">= 5000\"\nlimiter_wait_p99 = \"< 250ms\"",
    );
    let s = Scenario::parse(&text, "t.toml").unwrap();
    let got: Vec<(&str, Op, f64)> = s
        .thresholds
        .iter()
        .map(|t| (t.metric.as_str(), t.op, t.value))
        .collect();
    assert_eq!(
        got,
        vec![
            ("throttled_ratio", Op::Le, 0.01),
            ("latency_p99", Op::Lt, 10_000.0),
            ("limiter_wait_p99", Op::Lt, 250.0),
            ("goodput_tpm", Op::Ge, 5000.0),
        ]
    );
    assert!(s.thresholds[1].check(9_999.0) && !s.thresholds[1].check(10_000.0));
    assert_eq!(s.thresholds[1].expr, "< 10s");
}

#[test]
fn quota_utilisation_needs_a_quota() {
    let text = BASE
        .replace("quota = { rpm = 60, tpm = 10000 }\n", "")
        .replace(
            "throttled_ratio = \"< 0.01\"",
            "quota_utilisation = \"> 0.9\"",
        );
    let err = Scenario::parse(&text, "t.toml").unwrap_err();
    assert_eq!(err.field(), Some("thresholds.quota_utilisation"), "{err}");
}

#[test]
fn azure_defaults_and_limit_key() {
    let text = BASE
        .replace("kind = \"openai\"", "kind = \"azure\"")
        .replace(
            "quota = { rpm = 60, tpm = 10000 }",
            "quota = { tpm = 20000 }",
        );
    let s = Scenario::parse(&text, "t.toml").unwrap();
    assert_eq!(s.provider.deployment.as_deref(), Some("gpt-4o-mini"));
    let q = s.provider.quota.unwrap();
    assert_eq!((q.rpm, q.tpm), (Some(120), Some(20000)));
    assert_eq!(q.rpm_window, Some(Duration::from_secs(10)));
    assert_eq!(q.requests_per_window(), Some(20));
    let key = s.limit_key();
    assert_eq!(key.to_string(), "azure/gpt-4o-mini/gpt-4o-mini");
    let cfg = s
        .limiter_config(&s.limiters[0])
        .expect("token bucket has a config");
    let rule = cfg
        .config_for(&key)
        .expect("the rule matches the scenario's key");
    assert_eq!(rule.strategy, Strategy::TokenBucket);
    assert_eq!(rule.backoff.max_retries, s.retry.max_retries);
    assert!(s.limiter_config(&s.limiters[1]).is_none(), "baseline");
}

#[test]
fn url_targets_reject_mock_settings_and_fill_key_defaults() {
    let text = BASE.replace(
        "quota = { rpm = 60, tpm = 10000 }",
        "target = \"url\"\nurl = \"http://127.0.0.1:9/v1\"",
    );
    let s = Scenario::parse(&text, "t.toml").unwrap();
    assert_eq!(s.provider.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
    assert!(s.provider.quota.is_none());
    let text = BASE.replace(
        "model = \"gpt-4o-mini\"",
        "model = \"gpt-4o-mini\"\ntarget = \"url\"\nurl = \"http://x\"",
    );
    let e = error_at(&text, 8, "provider.quota");
    assert!(e.contains("target = \"url\""), "{e}");
}

#[test]
fn with_duration_scales_phases_and_keeps_the_exact_total() {
    let s = Scenario::parse(BASE, "t.toml").unwrap();
    let short = s.with_duration(Duration::from_millis(1000));
    assert_eq!(short.duration(), Duration::from_millis(1000));
    assert_eq!(short.phases[0].duration, Duration::from_millis(500));
    let odd = s.with_duration(Duration::from_nanos(1_000_000_001));
    assert_eq!(odd.duration(), Duration::from_nanos(1_000_000_001));
    assert_eq!(odd.phases[0].arrival, s.phases[0].arrival);
    // The text a report copies says what ran, and still parses to the scaled durations'
    // source (the comment changes nothing).
    assert!(
        short
            .text
            .starts_with("# hub: run with --duration 1s: the phases below ran scaled to 500ms"),
        "{}",
        short.text
    );
    assert!(short.text.ends_with(&s.text));
    Scenario::parse(&short.text, "copy.toml").unwrap();
}

#[test]
fn a_phase_without_duration_takes_the_remainder() {
    let text = BASE
        .replace("seed = 1", "seed = 1\nduration = \"1m\"")
        .replacen(
            "duration = \"2s\"\narrival = { process = \"constant\"",
            "arrival = { process = \"constant\"",
            1,
        );
    let s = Scenario::parse(&text, "t.toml").unwrap();
    assert_eq!(s.phases[1].duration, Duration::from_secs(58));
}

// ---------------------------------------------------------------------------------------
// Arrival schedules

fn phase(secs: u64, arrival: Arrival) -> Phase {
    Phase {
        duration: Duration::from_secs(secs),
        arrival,
    }
}

fn rate(s: &str) -> connector_hub::units::Rate {
    parse_rate(s).unwrap()
}

/// Mean rate (per second) and coefficient of variation of the gaps of a schedule.
fn gap_stats(starts: &[u64]) -> (f64, f64) {
    let gaps: Vec<f64> = starts.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
    let n = gaps.len() as f64;
    let mean = gaps.iter().sum::<f64>() / n;
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (1e9 / mean, var.sqrt() / mean)
}

#[test]
fn poisson_schedule_has_the_asked_rate_and_exponential_gaps() {
    let phases = [phase(
        100,
        Arrival::Poisson {
            rate: rate("1000/s"),
        },
    )];
    let starts: Vec<u64> = open_loop_schedule(&phases, 42).map(|(t, _)| t).collect();
    let count = starts.len() as f64;
    assert!((count / 100_000.0 - 1.0).abs() < 0.01, "{count} starts");
    let (r, cv) = gap_stats(&starts);
    assert!((r / 1000.0 - 1.0).abs() < 0.01, "rate {r}");
    assert!((cv - 1.0).abs() < 0.02, "cv {cv}");
}

#[test]
fn gamma_schedule_has_the_asked_rate_and_burstiness() {
    for burstiness in [0.5, 2.0, 3.0] {
        let phases = [phase(
            2000,
            Arrival::Gamma {
                rate: rate("100/s"),
                burstiness,
            },
        )];
        let starts: Vec<u64> = open_loop_schedule(&phases, 9).map(|(t, _)| t).collect();
        let (r, cv) = gap_stats(&starts);
        assert!(
            (r / 100.0 - 1.0).abs() < 0.03,
            "burstiness {burstiness}: rate {r}"
        );
        assert!(
            (cv / burstiness - 1.0).abs() < 0.05,
            "burstiness {burstiness}: cv {cv}"
        );
    }
}

#[test]
fn constant_schedule_does_not_drift() {
    // 7/s does not divide a second into whole nanoseconds: rounding must not accumulate.
    let phases = [
        phase(3, Arrival::Poisson { rate: rate("50/s") }),
        phase(100_000, Arrival::Constant { rate: rate("7/s") }),
    ];
    let bounds = phase_bounds(&phases);
    let starts: Vec<u64> = open_loop_schedule(&phases, 1)
        .filter(|&(_, p)| p == 1)
        .map(|(t, _)| t)
        .collect();
    assert_eq!(starts.len(), 700_000);
    for (n, t) in starts.iter().enumerate() {
        let exact = bounds[1] as f64 + n as f64 * 1e9 / 7.0;
        assert!(
            (*t as f64 - exact).abs() <= 0.5,
            "start {n}: {t} vs {exact}"
        );
    }
    // Spacing is exact to the rounding of each absolute time.
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|&g| g == 142_857_142 || g == 142_857_143));
}

#[test]
fn schedule_is_seeded_and_phases_are_independent() {
    let phases = [
        phase(5, Arrival::Poisson { rate: rate("20/s") }),
        phase(
            5,
            Arrival::Gamma {
                rate: rate("20/s"),
                burstiness: 2.0,
            },
        ),
    ];
    let a: Vec<_> = open_loop_schedule(&phases, 7).collect();
    let b: Vec<_> = open_loop_schedule(&phases, 7).collect();
    let c: Vec<_> = open_loop_schedule(&phases, 8).collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Changing phase 0 leaves phase 1's starts alone.
    let mut other = phases;
    other[0].arrival = Arrival::Poisson { rate: rate("90/s") };
    let p1 = |v: &[(u64, usize)]| v.iter().filter(|x| x.1 == 1).copied().collect::<Vec<_>>();
    let d: Vec<_> = open_loop_schedule(&other, 7).collect();
    assert_eq!(p1(&a), p1(&d));
}

proptest! {
    #[test]
    fn schedule_starts_are_ordered_and_inside_their_phase(
        seed in any::<u64>(),
        specs in prop::collection::vec((1u64..5, 0u8..4, 1u32..200, 1u32..30), 1..5),
    ) {
        let phases: Vec<Phase> = specs
            .iter()
            .map(|&(secs, kind, per_s, b)| {
                let r = parse_rate(&format!("{per_s}/s")).unwrap();
                phase(secs, match kind {
                    0 => Arrival::Poisson { rate: r },
                    1 => Arrival::Constant { rate: r },
                    2 => Arrival::Gamma { rate: r, burstiness: f64::from(b) / 10.0 },
                    _ => Arrival::Closed { concurrency: b, think_time: Duration::ZERO },
                })
            })
            .collect();
        let bounds = phase_bounds(&phases);
        let mut last = 0;
        for (t, p) in open_loop_schedule(&phases, seed) {
            prop_assert!(t >= last);
            prop_assert!(bounds[p] <= t && t < bounds[p + 1]);
            prop_assert!(phases[p].arrival.is_open_loop());
            last = t;
        }
        for (i, ph) in phases.iter().enumerate() {
            if let Arrival::Constant { rate } = ph.arrival {
                let n = open_loop_schedule(&phases, seed).filter(|x| x.1 == i).count() as f64;
                prop_assert_eq!(n, (rate.per_second() * ph.duration.as_secs_f64()).ceil());
            }
        }
    }

    #[test]
    fn with_duration_always_sums_to_the_asked_total(ms in 1u64..10_000_000) {
        let s = Scenario::parse(BASE, "t.toml").unwrap();
        let d = Duration::from_millis(ms);
        prop_assert_eq!(s.with_duration(d).duration(), d);
    }
}

// ---------------------------------------------------------------------------------------
// Workload

fn workload(prompt: TokenDist) -> Workload {
    Workload {
        prompt_tokens: prompt,
        max_tokens: 256,
        output_tokens: TokenDist::Uniform { min: 20, max: 256 },
        stream: 0.5,
        trace: None,
        chars_per_token: Default::default(),
        requests: None,
    }
}

#[test]
fn request_shapes_depend_only_on_seed_and_request_id() {
    let w = workload(TokenDist::LogNormal {
        mean: 400.0,
        stdev: 200.0,
        min: 1,
        max: Some(4000),
    });
    let forward: Vec<_> = (0..1000).map(|id| w.shape(7, id)).collect();
    let backward: Vec<_> = (0..1000).rev().map(|id| w.shape(7, id)).collect();
    assert!(
        forward.iter().eq(backward.iter().rev()),
        "order does not matter"
    );
    let other_seed: Vec<_> = (0..1000).map(|id| w.shape(8, id)).collect();
    assert_ne!(forward, other_seed);
    assert!(forward
        .iter()
        .all(|s| (1..=4000).contains(&s.prompt_tokens)));
    assert!(forward
        .iter()
        .all(|s| (20..=256).contains(&s.output_tokens)));
    assert!(forward.iter().all(|s| s.max_tokens == 256));
    // The same shape yields the same text.
    let s = forward[3];
    assert_eq!(
        prompt_text(s.prompt_tokens, s.prompt_seed),
        prompt_text(s.prompt_tokens, s.prompt_seed)
    );
}

#[test]
fn token_distributions_have_the_asked_moments() {
    let n = 40_000u64;
    let moments = |w: &Workload| {
        let v: Vec<f64> = (0..n)
            .map(|id| w.shape(1, id).prompt_tokens as f64)
            .collect();
        let mean = v.iter().sum::<f64>() / n as f64;
        let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
        (mean, sd, v)
    };
    let (mean, sd, _) = moments(&workload(TokenDist::LogNormal {
        mean: 400.0,
        stdev: 200.0,
        min: 1,
        max: None,
    }));
    assert!((mean / 400.0 - 1.0).abs() < 0.02, "lognormal mean {mean}");
    assert!((sd / 200.0 - 1.0).abs() < 0.06, "lognormal sd {sd}");
    let (mean, sd, _) = moments(&workload(TokenDist::Normal {
        mean: 300.0,
        stdev: 50.0,
        min: 1,
        max: None,
    }));
    assert!((mean / 300.0 - 1.0).abs() < 0.01 && (sd / 50.0 - 1.0).abs() < 0.03);
    let (mean, _, v) = moments(&workload(TokenDist::Normal {
        mean: 300.0,
        stdev: 200.0,
        min: 250,
        max: Some(320),
    }));
    assert!(v.iter().all(|&x| (250.0..=320.0).contains(&x)) && mean > 250.0);
    let (mean, _, v) = moments(&workload(TokenDist::Uniform { min: 10, max: 20 }));
    assert!((mean - 15.0).abs() < 0.1 && v.iter().all(|&x| (10.0..=20.0).contains(&x)));
    let streamed = (0..n)
        .filter(|&id| {
            workload(TokenDist::Constant { value: 5 })
                .shape(3, id)
                .stream
        })
        .count();
    assert!(
        (streamed as f64 / n as f64 - 0.5).abs() < 0.01,
        "{streamed}"
    );
}

#[test]
fn prompt_text_is_estimated_exactly_by_characters_over_four() {
    // What OpenAI, Azure and the mock charge at admission for the prompt.
    for tokens in [1u64, 13, 400, 3999] {
        let text = prompt_text(tokens, tokens);
        assert_eq!((text.chars().count() as u64).div_ceil(4), tokens);
        assert_eq!(text.len() as u64, tokens * PROMPT_CHARS_PER_TOKEN);
    }
}

// ---------------------------------------------------------------------------------------
// scenarios/README.md

fn readme() -> String {
    std::fs::read_to_string(scenarios_dir().join("README.md")).expect("scenarios/README.md")
}

#[test]
fn readme_documents_every_field_the_parser_accepts() {
    // The parser's own list of fields per table, read from its unknown-field errors.
    let injections: Vec<String> = vec![
        with_line(2, "seed = 1\nzzz = 1"),
        with_line(5, "model = \"gpt-4o-mini\"\nzzz = 1"),
        with_line(6, "quota = { rpm = 60, tpm = 10000, zzz = 1 }"),
        with_line(6, "latency = { ttft_median = \"1s\", zzz = 1 }"),
        with_line(8, "duration = \"2s\"\nzzz = 1"),
        with_line(
            9,
            r#"arrival = { process = "poisson", rate = "5/s", zzz = 1 }"#,
        ),
        with_line(15, "max_tokens = 50\nzzz = 1"),
        with_line(
            14,
            r#"prompt_tokens = { dist = "constant", value = 5, zzz = 1 }"#,
        ),
        with_line(19, "limits = { rpm = 60 }\nzzz = 1"),
        with_line(19, "limits = { rpm = 60, zzz = 1 }"),
        format!("{BASE}[retry]\nzzz = 1\n"),
        format!("{BASE}[retry]\nbackoff = {{ zzz = 1 }}\n"),
        with_line(24, "zzz = \"< 1\""),
    ];
    let doc = readme();
    let mut checked = 0;
    for text in injections {
        let err = Scenario::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("unknown field `zzz`"), "{err}");
        let expected = err.split("expected").nth(1).expect("a field list");
        for field in expected.split('`').skip(1).step_by(2) {
            let documented = [
                format!("`{field}`"),
                format!("`[{field}]`"),
                format!("`[[{field}]]`"),
            ]
            .iter()
            .any(|form| doc.contains(form.as_str()));
            assert!(documented, "README lacks `{field}` ({err})");
            checked += 1;
        }
    }
    assert!(checked > 60, "{checked} fields checked");
    // Enumerated values too.
    for value in [
        "poisson",
        "constant",
        "gamma",
        "closed",
        "uniform",
        "normal",
        "lognormal",
        "token_bucket",
        "gcra",
        "sliding_log",
        "sliding_counter",
        "leaky_bucket",
        "none",
        "openai",
        "azure",
        "mock",
        "url",
        "actual",
        "estimate",
        "full_jitter",
        "exponential",
        "decorrelated_jitter",
    ] {
        assert!(
            doc.contains(&format!("\"{value}\"")),
            "README lacks \"{value}\""
        );
    }
}

#[test]
fn readme_example_is_a_valid_scenario() {
    let doc = readme();
    let start = doc.find("```toml\n").expect("an example") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("closed");
    let s = Scenario::parse(&doc[start..end], "README.md").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.name, "my-scenario");
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

#[test]
fn plan_shows_resolved_limits_scheduled_counts_and_warnings() {
    let s = load("quickstart.toml");
    let plan = s.plan();
    let scheduled = open_loop_schedule(&s.phases, s.seed).count();
    assert!(
        plan.contains(&format!("open loop offers {scheduled} requests")),
        "{plan}"
    );
    // 10 per 1 s with headroom 0.9 resolves to 9, with a burst of 1; the baseline is named
    // as such.
    assert!(
        plan.contains("token_bucket 9 requests/1s (burst 1)"),
        "{plan}"
    );
    assert!(plan.contains("none (no limiter, retries only)"), "{plan}");
    assert!(plan.contains("throttled_ratio < 0.01"), "{plan}");
    assert!(!plan.contains("warning:"), "{plan}");
    let azure = load("azure-10s-window.toml").plan();
    assert!(azure.contains("10 per window"), "{azure}");
    assert!(
        azure.contains("warning: limiter rpm-60-per-minute: can admit up to 70 requests in 10s"),
        "{azure}"
    );
}

/// `itpm`, `otpm`, `input_tokens`, `output_tokens` and `charge_at` in a limiter's table:
/// parsed into input- and output-token dimensions, and a bad value names its file, line
/// and field.
#[test]
fn input_and_output_token_limits_parse_and_bad_values_name_line_and_field() {
    use connector_hub::limiter::{ChargeTime, RateLimitType, Unit};
    let s = Scenario::parse(
        &with_line(
            19,
            "limits = { rpm = 60, itpm = 9000, otpm = 3000, output_tokens = \"100/10s\" }\n\
             charge_at = { output = \"usage\" }",
        ),
        "t.toml",
    )
    .unwrap();
    let cfg = s.limiters[0].limit.as_ref().expect("a limit");
    let dims: Vec<(RateLimitType, u64)> = cfg
        .dimensions()
        .unwrap()
        .iter()
        .map(|d| (d.kind, d.amount))
        .collect();
    assert_eq!(
        dims,
        [
            (RateLimitType::RequestsPerMinute, 60),
            (RateLimitType::InputTokensPerMinute, 9000),
            (RateLimitType::OutputTokensPerMinute, 3000),
            (RateLimitType::OutputTokensPer(Duration::from_secs(10)), 100),
        ]
    );
    assert_eq!(cfg.charge_at.of(Unit::OutputTokens), ChargeTime::Usage);
    let plan = s.plan();
    assert!(
        plan.contains("60 RPM, 9000 ITPM, 3000 OTPM, 100 output tokens/10s")
            && plan.contains("charged at usage: output"),
        "{plan}"
    );
    let e = error_at(
        &with_line(19, "limits = { rpm = 60, otpm = -1 }"),
        19,
        "limiter[0].limits.otpm",
    );
    assert!(e.contains("-1"), "{e}");
    let e = error_at(
        &with_line(19, "limits = { itpm = \"lots\" }"),
        19,
        "limiter[0].limits.itpm",
    );
    assert!(e.contains("invalid type"), "{e}");
    let e = error_at(
        &with_line(19, "limits = { input_tokens = \"9000/fortnight\" }"),
        19,
        "limiter[0].limits.input_tokens",
    );
    assert!(e.contains("fortnight"), "{e}");
    let e = error_at(
        &with_line(19, "limits = { itpm = 1 }\nheadroom = 0.5"),
        19,
        "limiter[0].limits.itpm",
    );
    assert!(e.contains("at least 1 after headroom"), "{e}");
    let e = error_at(
        &with_line(
            19,
            "limits = { otpm = 60 }\ncharge_at = { output = \"eventually\" }",
        ),
        20,
        "limiter[0].charge_at.output",
    );
    assert!(e.contains("eventually") && e.contains("usage"), "{e}");
    let e = error_at(
        &with_line(
            19,
            "limits = { otpm = 60 }\ncharge_at = { outptu = \"usage\" }",
        ),
        20,
        "limiter[0].charge_at.outptu",
    );
    assert!(e.contains("unknown field"), "{e}");
}
