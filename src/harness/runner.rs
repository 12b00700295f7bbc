//! The live runner: each `[[limiter]]` of a scenario in turn, on the same seed, against a
//! fresh target, with real HTTP and real time.
//!
//! Open-loop phases send at intended start times drawn from the arrival process and
//! scheduled against the run's absolute start (no drift, no coordinated omission: latency
//! is measured from the intended start); a dedicated thread hands each request over at its
//! start with sub-millisecond precision ([`Ticker`]). Closed-loop phases run N users back
//! to back.
//! Records stream to the report as requests finish, so memory does not grow with the
//! number of requests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::clock::{nanos, Clock, Nanos, SystemClock};
use crate::limiter::{BackoffConfig, RateLimiter};
use crate::middleware::{GovernorMiddleware, Pipeline, ProviderSet};
use crate::provider::admission::RequestSize;
use crate::provider::{CompletionRequest, Message};

use super::arrival::Arrival;
use super::capacity::{min_batch_time_s, quota_dimensions, QuotaDimension};
use super::record::{RequestRecord, RunAggregate};
use super::report::{ReportError, ReportWriter};
use super::request::{AttemptObserver, Observation, PlannedRequest, RequestContext};
use super::scenario::Scenario;
use super::schedule::open_loop_requests;
use super::summary::{LimiterSummary, ProviderSummary, QuotaSummary, Summary, ThresholdResult};
use super::target::{LiveTarget, TargetError};
use super::ticker::Ticker;
use super::trace::TraceRequest;
use super::workload::prompt_text_at;
use super::{progress::Progress, summary};

/// How `hub run` runs a scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The report directory.
    pub out: PathBuf,
    /// Run only the limiter with this name.
    pub limiter: Option<String>,
    /// Whether to write `requests.csv`.
    pub requests_csv: bool,
    /// How long requests still in flight after the last arrival may finish before they
    /// are cut (and counted as dropped).
    pub drain: Duration,
    /// Show a progress bar (terminal) or periodic plain lines.
    pub progress: bool,
    /// Time to wait between limiters (lets a `url` target's quota refill; the embedded
    /// mock is fresh for each limiter anyway).
    pub pause: Duration,
}

/// A run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The target (mock server or URL connector) could not be set up.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// A limiter's configuration was rejected.
    #[error("limiter `{name}`: {source}")]
    Limiter {
        /// The `[[limiter]]` name.
        name: String,
        /// Why.
        source: crate::limiter::BuildError,
    },
    /// No limiter matched `--limiter`.
    #[error("no [[limiter]] named `{0}` in the scenario")]
    UnknownLimiter(String),
    /// Writing the report failed.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The OS refused the open-loop scheduler's thread.
    #[error("cannot start the scheduler thread: {0}")]
    Scheduler(std::io::Error),
    /// The scenario's trace could not be read.
    #[error(transparent)]
    Trace(#[from] super::trace::TraceError),
}

/// Runs `scenario`, writing the report to `opts.out`. `stop` (set by Ctrl-C) ends the
/// current limiter's arrivals early and skips the rest; the report covers what ran.
pub async fn run(
    scenario: &Scenario,
    opts: &RunOptions,
    stop: Arc<AtomicBool>,
) -> Result<Summary, RunError> {
    let specs: Vec<_> = scenario
        .limiters
        .iter()
        .filter(|l| opts.limiter.as_ref().is_none_or(|n| *n == l.name))
        .collect();
    if let (Some(name), true) = (&opts.limiter, specs.is_empty()) {
        return Err(RunError::UnknownLimiter(name.clone()));
    }
    let mut writer = ReportWriter::create(&opts.out, opts.requests_csv)?;
    let duration = scenario.duration();
    let duration_s = duration.as_secs_f64();
    let mut limiters = Vec::new();
    for (i, spec) in specs.into_iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if i > 0 && !opts.pause.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(opts.pause) => {}
                () = wait_for_stop(&stop) => break,
            }
        }
        let limiter: Option<Arc<dyn RateLimiter>> = match scenario.limiter_config(spec) {
            Some(cfg) => Some(
                crate::limiter::build(cfg, Arc::new(SystemClock::new()))
                    .await
                    .map_err(|source| RunError::Limiter {
                        name: spec.name.clone(),
                        source,
                    })?,
            ),
            None => None,
        };
        let strategy = spec.strategy_name();
        let target = LiveTarget::start(scenario).await?;
        let system = SystemClock::new();
        let clock: Arc<dyn Clock> = Arc::new(system);
        let start = clock.now();
        let provider_id = target.provider.provider_id().to_owned();
        let mut governor = match limiter {
            Some(l) => GovernorMiddleware::new(l, clock.clone()),
            None => GovernorMiddleware::unlimited(
                BackoffConfig {
                    max_retries: scenario.retry.max_retries,
                    ..scenario.retry.backoff.clone()
                }
                .policy(),
                scenario.seed,
                clock.clone(),
            ),
        };
        if let Some(d) = &scenario.provider.deployment {
            governor = governor.with_deployment(provider_id.clone(), d.clone());
        }
        let pipeline = Pipeline::new(clock.clone())
            .with(Arc::new(governor))
            .with(Arc::new(AttemptObserver::new(clock.clone(), start)));
        let mut providers = ProviderSet::new();
        providers.insert(provider_id.clone(), target.provider.clone());
        let ctx = Arc::new(RequestContext {
            pipeline,
            providers,
            provider_id,
            start,
            clock,
            seed: scenario.seed,
        });
        let progress = Progress::new(opts.progress, &spec.name, duration);
        let (aggregate, w) = run_one(
            scenario, &spec.name, strategy, ctx, system, writer, opts, &stop, &progress,
        )
        .await?;
        writer = w;
        progress.finish();
        target.shutdown().await;
        let mut aggregate = aggregate;
        writer.timeseries(&spec.name, aggregate.seconds(duration.as_secs().max(1)))?;
        // The mock's fixed windows start when it does, a moment before the run.
        let quota = quota_dimensions(scenario, false);
        let s = aggregate.summary(duration_s, &quota);
        limiters.push(evaluate(
            scenario,
            with_batch_efficiency(scenario, &aggregate, &quota, s),
        ));
    }
    let summary = Summary {
        schema_version: summary::SCHEMA_VERSION,
        scenario: scenario.name.clone(),
        mode: "live".into(),
        seed: scenario.seed,
        duration_s,
        provider: provider_summary(scenario),
        quota: quota_summary(scenario),
        limiters,
    };
    writer.finish(&summary, &scenario.text)?;
    Ok(summary)
}

/// The summary's description of the scenario's provider.
pub fn provider_summary(s: &Scenario) -> ProviderSummary {
    ProviderSummary {
        kind: s.provider.kind.id().to_owned(),
        target: s.provider.target.id().to_owned(),
        model: s.provider.model.clone(),
        deployment: s.provider.deployment.clone(),
    }
}

/// The summary's description of the emulated quota (mock targets only).
pub fn quota_summary(s: &Scenario) -> Option<QuotaSummary> {
    if s.provider.target != super::scenario::Target::Mock {
        return None;
    }
    s.provider.quota.as_ref().map(|q| QuotaSummary {
        rpm: q.rpm,
        tpm: q.tpm,
    })
}

/// For a batch workload (`[workload] requests`), sets `batch_efficiency`: the shortest time
/// in which the quota could admit what the server charged, over the run's span.
pub fn with_batch_efficiency(
    scenario: &Scenario,
    agg: &RunAggregate,
    quota: &[QuotaDimension],
    mut s: LimiterSummary,
) -> LimiterSummary {
    if scenario.workload.requests.is_some() && !quota.is_empty() && s.span_s > 0.0 {
        let min = min_batch_time_s(quota, agg.charged());
        s.batch_efficiency = Some((min / s.span_s * 10_000.0).round() / 10_000.0);
    }
    s
}

/// Evaluates the scenario's thresholds on one limiter's summary.
pub fn evaluate(scenario: &Scenario, mut s: LimiterSummary) -> LimiterSummary {
    s.thresholds = scenario
        .thresholds
        .iter()
        .map(|t| {
            let value = s.metric(&t.metric);
            ThresholdResult {
                metric: t.metric.clone(),
                expr: t.expr.clone(),
                value,
                passed: value.is_some_and(|v| t.check(v)),
            }
        })
        .collect();
    // A run in which nothing completed measured nothing: it does not pass.
    s.passed = s.thresholds.iter().all(|t| t.passed) && (s.requests == 0 || s.completed > 0);
    s
}

/// Sends a dropped record, with the attempts made so far, if the request task is cut
/// before it finishes.
struct Unfinished {
    planned: Option<PlannedRequest>,
    observation: Observation,
    tx: mpsc::UnboundedSender<RequestRecord>,
    ctx: Arc<RequestContext>,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(planned) = self.planned.take() {
            let end = self.ctx.clock.now().saturating_sub(self.ctx.start);
            let _ = self.tx.send(self.observation.cut(&planned, end));
        }
    }
}

/// Runs `planned` and sends its record; a task cut before the end (drain over, Ctrl-C)
/// still sends one, with the attempts it made.
async fn run_guarded(
    ctx: Arc<RequestContext>,
    tx: mpsc::UnboundedSender<RequestRecord>,
    planned: PlannedRequest,
) {
    let observation = Observation::default();
    let mut guard = Unfinished {
        planned: Some(planned.clone()),
        observation: observation.clone(),
        tx: tx.clone(),
        ctx: ctx.clone(),
    };
    let record = ctx.execute_observed(planned, observation).await;
    guard.planned = None;
    let _ = tx.send(record);
}

#[allow(clippy::too_many_arguments)]
async fn run_one(
    scenario: &Scenario,
    name: &str,
    strategy: &str,
    ctx: Arc<RequestContext>,
    system: SystemClock,
    mut writer: ReportWriter,
    opts: &RunOptions,
    stop: &AtomicBool,
    progress: &Progress,
) -> Result<(RunAggregate, ReportWriter), RunError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<RequestRecord>();
    let limiter_name = name.to_owned();
    let counters = progress.counters();
    let recorder = tokio::spawn({
        let mut agg = RunAggregate::new(name, strategy);
        async move {
            let mut result = Ok(());
            while let Some(r) = rx.recv().await {
                counters.add(&r);
                agg.add(&r);
                if result.is_ok() {
                    result = writer.request(&limiter_name, &r);
                }
            }
            result.map(|()| (agg, writer))
        }
    });
    let next_id = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    let spawn_request = |tasks: &mut JoinSet<()>, planned: PlannedRequest| {
        tasks.spawn(run_guarded(ctx.clone(), tx.clone(), planned));
    };

    // Open-loop arrivals for all open phases, in time order, against the absolute start,
    // each built ahead and handed over at its intended start by the ticker's thread.
    let mut ticker = {
        let (s, next_id) = (scenario.clone(), next_id.clone());
        let schedule = open_loop_requests(scenario)?;
        Ticker::start(schedule, system, ctx.start, move |r| {
            plan(
                &s,
                next_id.fetch_add(1, Ordering::Relaxed),
                r.phase,
                r.at,
                r.trace,
            )
        })
        .map_err(RunError::Scheduler)?
    };
    let mut phase_start: Nanos = 0;
    for (index, phase) in scenario.phases.iter().enumerate() {
        let phase_end = phase_start + nanos(phase.duration);
        match &phase.arrival {
            Arrival::Closed {
                concurrency,
                think_time,
            } => {
                ctx.clock.sleep_until(ctx.start + phase_start).await;
                for _ in 0..*concurrency {
                    let (ctx, tx, next_id) = (ctx.clone(), tx.clone(), next_id.clone());
                    let think = *think_time;
                    let plan_for = {
                        let s = scenario.clone();
                        move |id, intended| plan(&s, id, index, intended, None)
                    };
                    tasks.spawn(async move {
                        loop {
                            let now = ctx.clock.now().saturating_sub(ctx.start);
                            if now >= phase_end {
                                break;
                            }
                            let id = next_id.fetch_add(1, Ordering::Relaxed);
                            run_guarded(ctx.clone(), tx.clone(), plan_for(id, now)).await;
                            if !think.is_zero() {
                                ctx.clock.sleep(think).await;
                            }
                        }
                    });
                }
                // Users issue requests until the phase end (as in the simulator); the
                // requests they have in flight then finish in the next phase or the drain.
                tokio::select! {
                    () = ctx.clock.sleep_until(ctx.start + phase_end) => {}
                    () = wait_for_stop(stop) => {}
                }
            }
            _ => {
                while !stop.load(Ordering::Relaxed) {
                    let Some(planned) = ticker.next_in(index, stop).await else {
                        break;
                    };
                    spawn_request(&mut tasks, planned);
                    // Reap finished tasks so the set does not grow with the run.
                    while tasks.try_join_next().is_some() {}
                }
            }
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        phase_start = phase_end;
    }
    // Drain: in-flight requests may finish until the scenario's end plus the drain (the
    // last arrival may come well before the end, as in the simulator); what is left then
    // is cut and counted dropped, with the attempts it made.
    // A batch lasts until every request has ended (or Ctrl-C): no drain cuts it.
    if scenario.workload.requests.is_some() && !stop.load(Ordering::Relaxed) {
        tokio::select! {
            () = async { while tasks.join_next().await.is_some() {} } => {}
            () = wait_for_stop(stop) => {}
        }
    }
    let drain = if stop.load(Ordering::Relaxed) {
        Duration::from_millis(500)
    } else {
        let end = ctx.start + nanos(scenario.duration() + opts.drain);
        Duration::from_nanos(end.saturating_sub(ctx.clock.now()))
    };
    let _ = tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    drop(tx);
    let recorded = recorder.await.map_err(|e| {
        RunError::Report(ReportError::Io {
            path: opts.out.clone(),
            source: std::io::Error::other(e.to_string()),
        })
    })?;
    Ok(recorded?)
}

async fn wait_for_stop(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the server charges an admitted request against its token quota, by the rule both
/// providers document and the mock follows: ⌈prompt characters / 4⌉ + `max_tokens` (16
/// when unset, Azure's default budget; the harness always sets it).
pub fn server_tokens(size: &RequestSize) -> u64 {
    size.prompt_chars.div_ceil(4) + size.max_tokens.unwrap_or(16) * u64::from(size.n.max(1))
}

/// The request with id `id`: the same in every limiter run of the scenario. Its estimate is
/// what the governed step will acquire: the provider's admission rule on the request. A
/// replayed trace row sets its lengths; against the embedded mock it also asks for
/// exactly the row's output length (`mock_output_tokens`, a mock-only field).
fn plan(
    scenario: &Scenario,
    id: u64,
    phase: usize,
    intended: Nanos,
    trace: Option<TraceRequest>,
) -> PlannedRequest {
    let w = &scenario.workload;
    let shape = match &trace {
        Some(row) => w.trace_shape(scenario.seed, id, row),
        None => w.shape(scenario.seed, id),
    };
    let prompt = prompt_text_at(
        shape.prompt_tokens,
        shape.prompt_seed,
        shape.chars_per_token_milli,
    );
    let mut request =
        CompletionRequest::new(scenario.provider.model.clone(), vec![Message::user(prompt)])
            .with_max_tokens(u32::try_from(shape.max_tokens).unwrap_or(u32::MAX));
    request.stream = shape.stream;
    let exact = trace.is_some_and(|t| t.exact_output);
    if exact && scenario.provider.target == super::scenario::Target::Mock {
        request.provider_params.insert(
            "mock_output_tokens".into(),
            serde_json::Value::from(shape.output_tokens),
        );
    }
    let size = RequestSize::of(&request);
    let estimated_tokens = scenario.provider.kind.admission_rule().tokens(&size);
    PlannedRequest {
        id,
        phase,
        intended_start: intended,
        request,
        estimated_tokens,
        server_tokens: server_tokens(&size),
    }
}
