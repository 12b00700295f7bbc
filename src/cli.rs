//! The `hub` command line: parses arguments, runs a subcommand, maps outcomes to exit
//! codes — 0 pass, 1 run error, 2 bad input, 3 a threshold failed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::harness::batch::{run_batch, BatchError, BatchOptions};
use crate::harness::compare::{compare, RegressionRule};
use crate::harness::report::summary_markdown;
use crate::harness::report_files::ReportData;
use crate::harness::runner::{self, RunOptions};
use crate::harness::scenario::drain::drain_warnings;
use crate::harness::scenario::{Scenario, Target};
use crate::harness::sim::{simulate, SimOptions};
use crate::harness::thresholds::Threshold;
use crate::harness::tune::search::Budget;
use crate::harness::tune::{
    parse_constraint, parse_range, tune, Objective, Param as TuneParam, TuneError, TuneOptions,
};
use crate::harness::verify::{render as render_outcome, verify, verify_redis, VerifyError};
use crate::harness::{charts, html};
use crate::units::parse_duration;

/// Find, prove and keep the right client-side rate limits for LLM APIs.
#[derive(Debug, Parser)]
#[command(name = "hub", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario live: every [[limiter]] in turn against the target, then report.
    Run {
        /// The scenario file.
        file: PathBuf,
        /// Report directory (default: reports/<scenario name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run only this limiter.
        #[arg(long)]
        limiter: Option<String>,
        /// Scale the scenario's phases to this total duration (e.g. 30s).
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Do not write requests.csv.
        #[arg(long)]
        no_requests_csv: bool,
        /// How long in-flight requests may finish after the last arrival.
        #[arg(long, value_parser = parse_duration, default_value = "5s")]
        drain: Duration,
        /// Wait this long between limiters (a `url` target's quota is not reset between
        /// them; e.g. 60s lets a per-minute quota refill).
        #[arg(long, value_parser = parse_duration, default_value = "0s")]
        pause: Duration,
    },
    /// Run a scenario in virtual time (deterministic, seconds for hours of traffic).
    Simulate {
        /// The scenario file.
        file: PathBuf,
        /// Report directory (default: reports/<scenario name>-sim).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run only this limiter.
        #[arg(long)]
        limiter: Option<String>,
        /// Scale the scenario's phases to this total duration.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Do not write requests.csv (long simulations).
        #[arg(long)]
        no_requests_csv: bool,
        /// Virtual time in-flight requests may finish after the last arrival.
        #[arg(long, value_parser = parse_duration, default_value = "5s")]
        drain: Duration,
    },
    /// Compare several reports side by side (table and overlay charts), optionally failing
    /// on regressions against the first.
    Compare {
        /// Report directories; the first is the reference.
        #[arg(required = true, num_args = 2..)]
        dirs: Vec<PathBuf>,
        /// Where to write the comparison (default: reports/compare).
        #[arg(long)]
        out: Option<PathBuf>,
        /// A regression rule, e.g. "throttled_ratio > +10%" or "latency_p99 > +500"; repeatable.
        #[arg(long = "fail-if")]
        fail_if: Vec<String>,
    },
    /// Search, over simulations, for the value of one limiter parameter that maximises the
    /// objective within the constraints; prints the trials and writes the best
    /// `[[limiter]]` block (exit 3 when no value tried meets the constraints).
    Tune {
        /// The scenario file.
        file: PathBuf,
        /// The limiter to tune (a `[[limiter]]` name).
        #[arg(long)]
        limiter: String,
        /// The parameter: headroom, rpm, tpm, itpm, otpm or burst.
        #[arg(long)]
        param: TuneParam,
        /// What to optimise: goodput (goodput_tpm), quota_utilisation, achieved_rate
        /// (maximised) or a ratio or latency metric (minimised).
        #[arg(long, default_value = "goodput")]
        objective: Objective,
        /// A constraint every accepted value meets, e.g. "throttled_ratio <= 0.001";
        /// repeatable.
        #[arg(long = "constraint", value_parser = parse_constraint)]
        constraints: Vec<Threshold>,
        /// The range searched, LO..HI (default: headroom 0.5..1, burst 0.05..1, rpm and
        /// tpm half to 1.5 times the quota's, itpm and otpm half to 1.5 times the
        /// limiter's own).
        #[arg(long, value_parser = parse_range)]
        range: Option<(f64, f64)>,
        /// Simulations on the initial grid over the range.
        #[arg(long, default_value_t = 9)]
        grid: usize,
        /// Further simulations refining around the grid's best value.
        #[arg(long, default_value_t = 12)]
        refine: usize,
        /// Objectives within this fraction of the best tie; the lowest (most conservative)
        /// tied value wins.
        #[arg(long, default_value_t = 0.005)]
        tie: f64,
        /// Where trials and the best block go (default: reports/<scenario name>-tune).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Scale the scenario's phases to this total duration.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Virtual time in-flight requests may finish after the last arrival.
        #[arg(long, value_parser = parse_duration, default_value = "5s")]
        drain: Duration,
    },
    /// Send a file of requests (JSON lines: OpenAI chat bodies with optional `metadata`, or
    /// Batch API envelopes) through the hub configured by --config, as fast as its limits
    /// allow; one result line per request in --out; a rerun skips the ids already ok
    /// (exit 3 when any request finally failed).
    Batch {
        /// The request file.
        requests: PathBuf,
        /// The hub configuration (providers, limits, middlewares).
        #[arg(long)]
        config: PathBuf,
        /// The results file (appended; read first to resume).
        #[arg(long)]
        out: PathBuf,
        /// Requests in flight at most.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Validate a scenario and print the resolved plan.
    Check {
        /// The scenario file.
        file: PathBuf,
        /// The drain the run will use: warns when the queue the limits imply outlasts it.
        #[arg(long, value_parser = parse_duration, default_value = "5s")]
        drain: Duration,
    },
    /// Prove the scenario's limiter configs with the library's conformance kit: adversarial
    /// traces, every property checked, a failure shrunk to a minimal counterexample.
    Verify {
        /// The scenario file.
        file: PathBuf,
        /// Adversarial traces per limiter.
        #[arg(long, default_value_t = 256)]
        cases: u32,
        /// Seed of the traces (default: the scenario's).
        #[arg(long)]
        seed: Option<u64>,
        /// Where the limiters run: `memory` (virtual time, every property) or `redis`
        /// (Redis's clock, real time, windows compressed; needs --redis-url).
        #[arg(long, default_value = "memory")]
        backend: String,
        /// The Redis server for --backend redis, e.g. redis://127.0.0.1:6379/0.
        #[arg(long)]
        redis_url: Option<String>,
        /// --backend redis: divide every window by this factor (default: the longest
        /// window becomes 100 ms).
        #[arg(long)]
        time_scale: Option<u32>,
    },
    /// Serve an OpenAI- and Azure-compatible rate-limiting gateway: clients point their
    /// SDK's base URL at it and present a gateway key; it keeps the configured (tuned)
    /// limits for every client, queueing fairly between tenants.
    Serve {
        /// The gateway config (TOML): [gateway] with tenants, [[upstream]], [[limiter]].
        #[arg(long)]
        config: PathBuf,
        /// Listen address (overrides the config's `gateway.addr`).
        #[arg(long)]
        addr: Option<SocketAddr>,
    },
    /// Serve the mock OpenAI and Azure OpenAI providers alone.
    Mock {
        /// Mock configuration (TOML); built-in defaults without it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to bind; port 0 picks a free port (the bound address is printed).
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
    },
}

/// Why `hub` stopped without a verdict.
#[derive(Debug)]
pub enum Failure {
    /// The input (scenario, config, arguments) was wrong: exit 2.
    BadInput(anyhow::Error),
    /// The run itself failed: exit 1.
    Run(anyhow::Error),
}

impl Failure {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::BadInput(_) => ExitCode::from(2),
            Self::Run(_) => ExitCode::from(1),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadInput(e) | Self::Run(e) => write!(f, "{e:#}"),
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HUB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(Failure::Run)
}

fn load(file: &std::path::Path) -> Result<Scenario, Failure> {
    Scenario::from_file(file).map_err(|e| Failure::BadInput(e.into()))
}

/// Writes the charts and `index.html` of the report in `dir`. A failure here is reported
/// and leaves the data files (already written) in place.
fn render(dir: &std::path::Path) {
    let rendered = ReportData::load(dir)
        .map_err(|e| e.to_string())
        .and_then(|data| {
            charts::render_charts(&data, dir).map_err(|e| e.to_string())?;
            html::write_index_html(&data, dir).map_err(|e| e.to_string())
        });
    if let Err(e) = rendered {
        eprintln!("hub: charts not written: {e}");
    }
}

/// Exit 0 when every limiter passed its thresholds, 3 otherwise. The `none` baseline is
/// the reference the limiters are compared with: its verdict is reported, not gating.
fn verdict(summary: &crate::harness::summary::Summary) -> ExitCode {
    if summary
        .limiters
        .iter()
        .all(|l| l.passed || l.strategy == "none")
    {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

/// Runs the parsed command line; `Ok` carries the verdict's exit code.
pub fn run(cli: Cli) -> Result<ExitCode, Failure> {
    init_tracing();
    match cli.command {
        Command::Batch {
            requests,
            config,
            out,
            concurrency,
        } => {
            let opts = BatchOptions {
                requests,
                config,
                out,
                concurrency,
                progress: true,
            };
            let summary = runtime()?.block_on(run_batch(&opts)).map_err(|e| match e {
                BatchError::Results(_) => Failure::Run(e.into()),
                e => Failure::BadInput(e.into()),
            })?;
            println!(
                "{} requests: {} ok, {} failed, {} skipped (already ok); {} attempts; {:.1} s; {:.0} tokens/min; results: {}",
                summary.total,
                summary.ok,
                summary.failed,
                summary.skipped,
                summary.attempts,
                summary.elapsed_s,
                if summary.elapsed_s > 0.0 {
                    summary.tokens as f64 * 60.0 / summary.elapsed_s
                } else {
                    0.0
                },
                opts.out.display()
            );
            Ok(if summary.failed > 0 {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Check { file, drain } => {
            let s = load(&file)?;
            print!("{}", s.plan());
            for w in drain_warnings(&s, drain) {
                println!("warning: {w}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            file,
            out,
            limiter,
            duration,
            no_requests_csv,
            drain,
            pause,
        } => {
            let mut scenario = load(&file)?;
            if let Some(d) = duration {
                scenario = scenario.with_duration(d);
            }
            let opts = RunOptions {
                out: out.unwrap_or_else(|| PathBuf::from("reports").join(&scenario.name)),
                limiter,
                requests_csv: !no_requests_csv,
                drain,
                progress: true,
                pause,
            };
            let several = opts.limiter.is_none() && scenario.limiters.len() > 1;
            if scenario.provider.target == Target::Url && several {
                eprintln!(
                    "hub: warning: the url target's quota is not reset between limiters; {}",
                    if pause.is_zero() {
                        "each starts with what the previous one left (--pause waits between them)"
                            .to_owned()
                    } else {
                        format!("waiting {pause:?} between them")
                    }
                );
            }
            for w in drain_warnings(&scenario, drain) {
                eprintln!("hub: warning: {w}");
            }
            let summary = runtime()?.block_on(async {
                let stop = Arc::new(AtomicBool::new(false));
                let on_signal = stop.clone();
                tokio::spawn(async move {
                    if tokio::signal::ctrl_c().await.is_ok() {
                        eprintln!("hub: stopping; the report will cover what ran");
                        on_signal.store(true, Ordering::Relaxed);
                    }
                });
                runner::run(&scenario, &opts, stop).await
            });
            let summary = summary.map_err(|e| match e {
                runner::RunError::UnknownLimiter(_) => Failure::BadInput(e.into()),
                e => Failure::Run(e.into()),
            })?;
            println!("{}", summary_markdown(&summary));
            render(&opts.out);
            println!("report: {}", opts.out.display());
            Ok(verdict(&summary))
        }
        Command::Simulate {
            file,
            out,
            limiter,
            duration,
            no_requests_csv,
            drain,
        } => {
            let mut scenario = load(&file)?;
            if let Some(d) = duration {
                scenario = scenario.with_duration(d);
            }
            let opts = SimOptions {
                out: out.unwrap_or_else(|| {
                    PathBuf::from("reports").join(format!("{}-sim", scenario.name))
                }),
                limiter,
                requests_csv: !no_requests_csv,
                drain,
            };
            for w in drain_warnings(&scenario, drain) {
                eprintln!("hub: warning: {w}");
            }
            let started = std::time::Instant::now();
            let summary = simulate(&scenario, &opts).map_err(|e| match e {
                runner::RunError::UnknownLimiter(_) => Failure::BadInput(e.into()),
                e => Failure::Run(e.into()),
            })?;
            println!("{}", summary_markdown(&summary));
            render(&opts.out);
            println!(
                "report: {} (simulated in {:.2} s)",
                opts.out.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(verdict(&summary))
        }
        Command::Tune {
            file,
            limiter,
            param,
            objective,
            constraints,
            range,
            grid,
            refine,
            tie,
            out,
            duration,
            drain,
        } => {
            let mut scenario = load(&file)?;
            if let Some(d) = duration {
                scenario = scenario.with_duration(d);
            }
            let opts = TuneOptions {
                limiter,
                param,
                range,
                objective,
                constraints,
                budget: Budget { grid, refine, tie },
                out: out.unwrap_or_else(|| {
                    PathBuf::from("reports").join(format!("{}-tune", scenario.name))
                }),
                drain,
            };
            let started = std::time::Instant::now();
            let tuning = tune(&scenario, &opts).map_err(|e| match e {
                TuneError::Run { .. } | TuneError::Block(_) | TuneError::Trials { .. } => {
                    Failure::Run(e.into())
                }
                e => Failure::BadInput(e.into()),
            })?;
            println!(
                "tuning {} of limiter {} over {}..{} for {}, {} simulations in {:.2} s",
                opts.param,
                opts.limiter,
                tuning.range.0,
                tuning.range.1,
                opts.objective,
                tuning.trials.len(),
                started.elapsed().as_secs_f64()
            );
            println!("{}", tuning.table(&opts));
            let Some(block) = &tuning.block else {
                println!("no value tried meets the constraints; widen --range or relax them");
                return Ok(ExitCode::from(3));
            };
            let path = opts.out.join("best-limiter.toml");
            std::fs::write(&path, block)
                .with_context(|| format!("cannot write {}", path.display()))
                .map_err(Failure::Run)?;
            println!("{block}");
            println!("best limiter block: {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare { dirs, out, fail_if } => {
            let rules = fail_if
                .iter()
                .map(|r| r.parse::<RegressionRule>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Failure::BadInput(e.into()))?;
            let out = out.unwrap_or_else(|| PathBuf::from("reports").join("compare"));
            let outcome = compare(&dirs, &out, &rules).map_err(|e| Failure::BadInput(e.into()))?;
            println!("{}", outcome.text);
            for v in outcome.violations() {
                println!("regression: {v}");
            }
            println!("comparison: {}", out.display());
            Ok(if outcome.regressed() {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Verify {
            file,
            cases,
            seed,
            backend,
            redis_url,
            time_scale,
        } => {
            let s = load(&file)?;
            let seed = seed.unwrap_or(s.seed);
            let outcomes = match backend.as_str() {
                "memory" => verify(&s, cases, seed).map_err(|e| Failure::BadInput(e.into()))?,
                "redis" => {
                    let url = redis_url.ok_or_else(|| {
                        Failure::BadInput(anyhow::anyhow!("--backend redis needs --redis-url"))
                    })?;
                    let (factor, outcomes) = runtime()?
                        .block_on(verify_redis(&s, cases, seed, &url, time_scale))
                        .map_err(|e| match e {
                            VerifyError::Config(e) => Failure::BadInput(e.into()),
                            VerifyError::Connect(e) => Failure::Run(e.into()),
                        })?;
                    println!(
                        "redis at {url}, on its clock, windows divided by {factor}: bound, \
                         exact-wait, all-or-nothing (never lower), refusing-dimension, exceeds, \
                         slots, reset-restores, answers (the others need a clock the kit moves)"
                    );
                    outcomes
                }
                other => {
                    return Err(Failure::BadInput(anyhow::anyhow!(
                        "unknown --backend {other:?}: memory or redis"
                    )))
                }
            };
            let mut failed = false;
            for o in &outcomes {
                failed |= o.counterexample.is_some();
                println!("{}", render_outcome(o));
            }
            Ok(if failed {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Serve { config, addr } => {
            let cfg = crate::gateway::GatewayConfig::load_file(&config)
                .map_err(|e| Failure::BadInput(e.into()))?;
            let addr = addr.unwrap_or(cfg.front.addr);
            runtime()?.block_on(async {
                let state = crate::gateway::GatewayState::from_config(cfg)
                    .map_err(|e| Failure::BadInput(e.into()))?;
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot bind {addr}"))
                    .map_err(Failure::Run)?;
                let bound = listener
                    .local_addr()
                    .context("no local address")
                    .map_err(Failure::Run)?;
                println!("hub gateway listening on http://{bound}");
                let finished = crate::gateway::serve::serve(
                    state,
                    listener,
                    crate::gateway::serve::shutdown_signal(),
                )
                .await
                .context("the gateway stopped with an error")
                .map_err(Failure::Run)?;
                Ok(if finished {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                })
            })
        }
        Command::Mock { config, addr } => {
            let cfg = match &config {
                Some(path) => mock_providers::MockConfig::from_file(path)
                    .map_err(|e| Failure::BadInput(e.into()))?,
                None => mock_providers::MockConfig::default(),
            };
            runtime()?.block_on(async {
                let handle = mock_providers::MockServer::start_on(cfg, addr)
                    .await
                    .context("cannot start the mock server")
                    .map_err(Failure::Run)?;
                println!("mock providers listening on {}", handle.base_url());
                let _ = tokio::signal::ctrl_c().await;
                handle.shutdown().await;
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}
