//! Checks of what is sent and when: phases and their arrival processes, the workload and
//! its token distributions. Which fields a process or distribution takes is decided here,
//! so a field given to the wrong one is named in the error.

use std::path::Path;
use std::time::Duration;

use super::error::Problem;
use super::fields::not_used;
use super::raw::{
    RawArrival, RawDist, RawDistKind, RawMaxTokens, RawPhase, RawProcess, RawRatio, RawWorkload,
};
use super::{Arrival, Phase, ProviderSpec, Target, TokenDist, Workload};
use crate::harness::batch::workload::RequestFile;
use crate::harness::trace::{MaxTokens, TraceSpec};
use crate::harness::workload::CharsPerToken;

/// Highest open-loop arrival rate accepted, requests per second.
const MAX_RATE_PER_SECOND: f64 = 100_000.0;
/// Most closed-loop users accepted.
const MAX_CONCURRENCY: u32 = 100_000;
/// Largest gamma burstiness (coefficient of variation) accepted.
const MAX_BURSTINESS: f64 = 10.0;
/// Workload defaults when the `[workload]` table leaves a field out.
const DEFAULT_PROMPT_TOKENS: u64 = 100;
const DEFAULT_MAX_TOKENS: u64 = 100;

pub(super) fn phases(raw: &[RawPhase], total: Option<Duration>) -> Result<Vec<Phase>, Problem> {
    if raw.is_empty() {
        return Err(Problem::new(
            "phase",
            "at least one [[phase]] is required, e.g. duration = \"10s\" and arrival = { process = \"poisson\", rate = \"5/s\" }",
        ));
    }
    let missing: Vec<usize> = (0..raw.len())
        .filter(|&i| raw[i].duration.is_none())
        .collect();
    if let Some(&second) = missing.get(1) {
        return Err(Problem::new(
            format!("phase[{second}].duration"),
            "required: only one phase may leave out its duration (it takes what remains of the top-level duration)",
        ));
    }
    let mut given = Duration::ZERO;
    for (i, p) in raw.iter().enumerate() {
        if let Some(d) = p.duration {
            if d.is_zero() {
                return Err(Problem::new(
                    format!("phase[{i}].duration"),
                    "must be longer than zero",
                ));
            }
            given += d;
        }
    }
    let remainder = match (missing.first(), total) {
        (Some(&i), None) => return Err(Problem::new(
            format!("phase[{i}].duration"),
            "required (or set the top-level duration; this phase then takes what the others leave)",
        )),
        (Some(&i), Some(total)) if total <= given => {
            return Err(Problem::new(
                "duration",
                format!(
                    "{total:?} leaves nothing for phase[{i}] after the other phases' {given:?}"
                ),
            ))
        }
        (Some(_), Some(total)) => total - given,
        (None, Some(total)) if total != given => {
            return Err(Problem::new(
                "duration",
                format!("{total:?} does not match the phases' total {given:?}"),
            ))
        }
        (None, _) => Duration::ZERO,
    };
    raw.iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(Phase {
                duration: p.duration.unwrap_or(remainder),
                arrival: arrival(i, &p.arrival)?,
            })
        })
        .collect()
}

fn arrival(i: usize, a: &RawArrival) -> Result<Arrival, Problem> {
    let field = |f: &str| format!("phase[{i}].arrival.{f}");
    let process = match a.process {
        RawProcess::Poisson => "poisson",
        RawProcess::Constant => "constant",
        RawProcess::Gamma => "gamma",
        RawProcess::Closed => "closed",
    };
    let why = format!("by process = \"{process}\"");
    if a.process == RawProcess::Closed {
        not_used(field("rate"), a.rate.is_some(), &why)?;
        not_used(field("burstiness"), a.burstiness.is_some(), &why)?;
        let concurrency = a.concurrency.ok_or_else(|| {
            Problem::new(field("concurrency"), "required for process = \"closed\"")
        })?;
        if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
            return Err(Problem::new(
                field("concurrency"),
                format!("{concurrency} must be within 1..={MAX_CONCURRENCY}"),
            ));
        }
        return Ok(Arrival::Closed {
            concurrency,
            think_time: a.think_time.unwrap_or(Duration::ZERO),
        });
    }
    not_used(field("concurrency"), a.concurrency.is_some(), &why)?;
    not_used(field("think_time"), a.think_time.is_some(), &why)?;
    let rate = a.rate.ok_or_else(|| {
        Problem::new(
            field("rate"),
            format!("required for process = \"{process}\", e.g. rate = \"10/s\""),
        )
    })?;
    if rate.per_second() > MAX_RATE_PER_SECOND {
        return Err(Problem::new(
            field("rate"),
            format!("{rate} is above the maximum of {MAX_RATE_PER_SECOND}/s"),
        ));
    }
    let poisson = match a.process {
        RawProcess::Poisson => true,
        RawProcess::Constant => false,
        RawProcess::Gamma => {
            let burstiness = a.burstiness.ok_or_else(|| {
                Problem::new(
                    field("burstiness"),
                    "required for process = \"gamma\" (the inter-arrival coefficient of variation; 1 = poisson)",
                )
            })?;
            if !(burstiness > 0.0 && burstiness <= MAX_BURSTINESS) {
                return Err(Problem::new(
                    field("burstiness"),
                    format!("{burstiness} must be within (0, {MAX_BURSTINESS}]"),
                ));
            }
            return Ok(Arrival::Gamma { rate, burstiness });
        }
        // Handled (and returned) before the open-loop checks.
        RawProcess::Closed => false,
    };
    not_used(field("burstiness"), a.burstiness.is_some(), &why)?;
    Ok(if poisson {
        Arrival::Poisson { rate }
    } else {
        Arrival::Constant { rate }
    })
}

pub(super) fn workload(
    w: &RawWorkload,
    provider: &ProviderSpec,
    base: &Path,
) -> Result<Workload, Problem> {
    let trace = trace(w, base)?;
    let max_tokens = match (&w.max_tokens, &trace) {
        (None, _) => DEFAULT_MAX_TOKENS,
        (Some(RawMaxTokens::Tokens(n)), _) => *n,
        (Some(RawMaxTokens::Text(t)), None) => {
            return Err(Problem::new(
                "workload.max_tokens",
                format!("{t:?}: a whole number of tokens (\"trace\" and multiples such as \"1.5x\" only with a trace)"),
            ))
        }
        // Resolved into the trace's mode; the synthetic default stays for the plan.
        (Some(RawMaxTokens::Text(_)), Some(_)) => DEFAULT_MAX_TOKENS,
    };
    if max_tokens == 0 {
        return Err(Problem::new("workload.max_tokens", "must be at least 1"));
    }
    let prompt_tokens = match &w.prompt_tokens {
        Some(d) => dist("workload.prompt_tokens", d)?,
        None => TokenDist::Constant {
            value: DEFAULT_PROMPT_TOKENS,
        },
    };
    if provider.target == Target::Url && w.output_tokens.is_some() {
        return Err(Problem::new(
            "workload.output_tokens",
            "not used by target = \"url\" (a real server decides completion lengths; only for target = \"mock\")",
        ));
    }
    let output_tokens = match &w.output_tokens {
        Some(d) => dist("workload.output_tokens", d)?,
        None => TokenDist::Constant { value: max_tokens },
    };
    match output_tokens {
        TokenDist::Normal { .. } => {
            return Err(Problem::new(
                "workload.output_tokens.dist",
                "\"normal\" is not supported for output lengths (the mock draws them): use constant, uniform or lognormal",
            ))
        }
        TokenDist::LogNormal { min, .. } if min > 1 => {
            return Err(Problem::new(
                "workload.output_tokens.min",
                format!("{min}: output lengths are clamped at 1 by the mock; leave min out"),
            ))
        }
        _ => {}
    }
    let stream = w.stream.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&stream) {
        return Err(Problem::new(
            "workload.stream",
            format!("{stream} must be a fraction within 0..=1"),
        ));
    }
    let chars_per_token = match &w.prompt_chars_per_token {
        None => CharsPerToken::Four,
        Some(RawRatio::Text(t)) if t == "natural" => CharsPerToken::Natural,
        Some(RawRatio::Number(v)) if (3.5..=7.0).contains(v) => {
            let milli = (v * 1000.0).round() as u32;
            if milli == 4000 {
                CharsPerToken::Four
            } else {
                CharsPerToken::Fixed(milli)
            }
        }
        Some(other) => {
            return Err(Problem::new(
                "workload.prompt_chars_per_token",
                format!(
                "{other:?}: expected characters per token within 3.5..=7 (e.g. 4.5) or \"natural\""
            ),
            ))
        }
    };
    let requests = match &w.requests {
        None => None,
        Some(path) => {
            let field = |f: &str| format!("workload.{f}");
            not_used(field("trace"), trace.is_some(), "with workload.requests")?;
            not_used(
                field("prompt_tokens"),
                w.prompt_tokens.is_some(),
                "with workload.requests (each line's prompt is replayed)",
            )?;
            not_used(
                field("max_tokens"),
                w.max_tokens.is_some(),
                "with workload.requests (each line's max_tokens is sent)",
            )?;
            not_used(
                field("prompt_chars_per_token"),
                w.prompt_chars_per_token.is_some(),
                "with workload.requests (each line's text sets it)",
            )?;
            Some(
                RequestFile::scan(&base.join(path))
                    .map_err(|e| Problem::new(field("requests"), e))?,
            )
        }
    };
    Ok(Workload {
        prompt_tokens,
        max_tokens,
        output_tokens,
        stream,
        trace,
        chars_per_token,
        requests,
    })
}

/// The one phase of a batch (`[workload] requests`): every request offered at the run
/// start; the phase lasts 1 ms and the run lasts until every request has ended (no drain
/// cuts a batch). `[[phase]]` tables are refused.
pub(super) fn batch_phases(raw: &[RawPhase], file: &RequestFile) -> Result<Vec<Phase>, Problem> {
    if !raw.is_empty() {
        return Err(Problem::new(
            "phase",
            "a request file is offered as one batch at the start: leave out [[phase]]",
        ));
    }
    Ok(vec![Phase {
        duration: BATCH_PHASE,
        arrival: Arrival::Batch {
            requests: file.count,
        },
    }])
}

/// The length of a batch's phase: its requests all arrive at its start.
const BATCH_PHASE: Duration = Duration::from_millis(1);

/// The trace of a `[workload]` table, checked by a streaming pass over the whole file
/// (relative paths resolved against `base`, the scenario's directory); `None` without one.
fn trace(w: &RawWorkload, base: &Path) -> Result<Option<TraceSpec>, Problem> {
    let field = |f: &str| format!("workload.{f}");
    let Some(path) = &w.trace else {
        for (f, present) in [
            ("format", w.format.is_some()),
            ("start", w.start.is_some()),
            ("duration", w.duration.is_some()),
            ("speed", w.speed.is_some()),
            ("rate_scale", w.rate_scale.is_some()),
        ] {
            not_used(field(f), present, "without workload.trace")?;
        }
        return Ok(None);
    };
    not_used(
        field("prompt_tokens"),
        w.prompt_tokens.is_some(),
        "with a trace (prompt lengths come from the trace)",
    )?;
    not_used(
        field("output_tokens"),
        w.output_tokens.is_some(),
        "with a trace (output lengths come from the trace)",
    )?;
    let format = w.format.ok_or_else(|| {
        Problem::new(
            field("format"),
            "required with a trace: \"azure\", \"burstgpt\" or \"mooncake\"",
        )
    })?;
    let positive = |f: &str, v: Option<f64>| match v {
        None => Ok(1.0),
        Some(v) if v > 0.0 && v.is_finite() => Ok(v),
        Some(v) => Err(Problem::new(field(f), format!("{v} must be a number > 0"))),
    };
    let speed = positive("speed", w.speed)?;
    let rate_scale = positive("rate_scale", w.rate_scale)?;
    if w.duration.is_some_and(|d| d.is_zero()) {
        return Err(Problem::new(field("duration"), "must be > 0"));
    }
    let max_tokens = match &w.max_tokens {
        None => MaxTokens::Trace,
        Some(RawMaxTokens::Tokens(n)) => MaxTokens::Fixed(*n),
        Some(RawMaxTokens::Text(t)) if t == "trace" => MaxTokens::Trace,
        Some(RawMaxTokens::Text(t)) => match t.strip_suffix('x').map(|k| k.trim().parse::<f64>()) {
            Some(Ok(k)) if k > 0.0 && k.is_finite() => MaxTokens::Multiple(k),
            _ => {
                return Err(Problem::new(
                    field("max_tokens"),
                    format!("{t:?}: expected a whole number of tokens, \"trace\" or a multiple of the trace's count such as \"1.5x\""),
                ))
            }
        },
    };
    let path = base.join(path);
    let start = w.start.unwrap_or(Duration::ZERO);
    let scan = TraceSpec::scan(&path, format, start, w.duration)
        .map_err(|e| Problem::new(field("trace"), e))?;
    Ok(Some(TraceSpec {
        path,
        format,
        start,
        duration: w.duration,
        speed,
        rate_scale,
        max_tokens,
        scan,
    }))
}

/// The one phase of a trace replay: as long as the window at `speed` (or the scenario's
/// top-level `duration`, which cuts it), arrivals from the trace. A trace sets the arrivals,
/// so `[[phase]]` tables are refused.
pub(super) fn trace_phases(
    raw: &[RawPhase],
    total: Option<Duration>,
    trace: &TraceSpec,
) -> Result<Vec<Phase>, Problem> {
    if !raw.is_empty() {
        return Err(Problem::new(
            "phase",
            "a trace workload sets the arrivals: leave out [[phase]] (workload.start, duration and speed choose the window)",
        ));
    }
    let replay = trace.replay_duration();
    Ok(vec![Phase {
        duration: total.map_or(replay, |t| t.min(replay)),
        arrival: Arrival::Trace {
            rate: trace.rate_per_second(),
        },
    }])
}

fn dist(path: &str, raw: &RawDist) -> Result<TokenDist, Problem> {
    let field = |f: &str| format!("{path}.{f}");
    let t = match raw {
        RawDist::Count(0) => return Err(Problem::new(path, "must be at least 1 token")),
        RawDist::Count(value) => return Ok(TokenDist::Constant { value: *value }),
        RawDist::Table(t) => t,
    };
    let name = match t.dist {
        RawDistKind::Constant => "constant",
        RawDistKind::Uniform => "uniform",
        RawDistKind::Normal => "normal",
        RawDistKind::LogNormal => "lognormal",
    };
    let why = format!("by dist = \"{name}\"");
    let required = |f: &str| Problem::new(field(f), format!("required for dist = \"{name}\""));
    match t.dist {
        RawDistKind::Constant => {
            for (f, present) in [
                ("min", t.min.is_some()),
                ("max", t.max.is_some()),
                ("mean", t.mean.is_some()),
                ("stdev", t.stdev.is_some()),
            ] {
                not_used(field(f), present, &why)?;
            }
            match t.value {
                None => Err(required("value")),
                Some(0) => Err(Problem::new(field("value"), "must be at least 1 token")),
                Some(value) => Ok(TokenDist::Constant { value }),
            }
        }
        RawDistKind::Uniform => {
            for (f, present) in [
                ("value", t.value.is_some()),
                ("mean", t.mean.is_some()),
                ("stdev", t.stdev.is_some()),
            ] {
                not_used(field(f), present, &why)?;
            }
            let min = t.min.ok_or_else(|| required("min"))?;
            let max = t.max.ok_or_else(|| required("max"))?;
            if max < min || max == 0 {
                return Err(Problem::new(
                    field("max"),
                    format!("{max} must be at least min {min} and at least 1"),
                ));
            }
            Ok(TokenDist::Uniform { min, max })
        }
        RawDistKind::Normal | RawDistKind::LogNormal => {
            not_used(field("value"), t.value.is_some(), &why)?;
            let mean = t.mean.ok_or_else(|| required("mean"))?;
            let stdev = t.stdev.ok_or_else(|| required("stdev"))?;
            if !(mean.is_finite() && mean > 0.0) {
                return Err(Problem::new(field("mean"), format!("{mean} must be > 0")));
            }
            if !(stdev.is_finite() && stdev >= 0.0) {
                return Err(Problem::new(
                    field("stdev"),
                    format!("{stdev} must be >= 0"),
                ));
            }
            let min = t.min.unwrap_or(1);
            let max = t.max;
            if let Some(max) = max {
                if max < min || max == 0 {
                    return Err(Problem::new(
                        field("max"),
                        format!("{max} must be at least min {min} and at least 1"),
                    ));
                }
            }
            Ok(if t.dist == RawDistKind::Normal {
                TokenDist::Normal {
                    mean,
                    stdev,
                    min,
                    max,
                }
            } else {
                TokenDist::LogNormal {
                    mean,
                    stdev,
                    min,
                    max,
                }
            })
        }
    }
}
