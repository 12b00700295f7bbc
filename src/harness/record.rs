//! What one request did, and the per-limiter aggregation of those records into the
//! per-second time series and the summary — in bounded memory: counters per second, HDR
//! histograms for the distributions, per-second latency histograms only for a short horizon
//! behind the newest completion. Used by the live runner and the simulator alike.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::clock::Nanos;

use super::capacity::{binding, dimension_use, Charged, QuotaDimension};
use super::summary::{LimiterSummary, Percentiles, DISTRIBUTION_PERCENTILES};

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A successful response.
    Ok,
    /// The last attempt got a 429 (retries exhausted or not allowed).
    Throttled,
    /// Another failure (network, 5xx, stream cut, invalid request…).
    Error,
    /// Never sent: the limiter refused (never fits, timeout) or the run ended first.
    Dropped,
}

impl Outcome {
    /// The CSV spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Throttled => "throttled",
            Self::Error => "error",
            Self::Dropped => "dropped",
        }
    }
}

/// One try of a request. Times in nanoseconds since the run start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// When it was sent (after the limiter admitted it).
    pub sent: Nanos,
    /// When its response (or failure) was complete.
    pub end: Nanos,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
}

impl Attempt {
    /// Whether the server refused it for quota.
    pub fn throttled(&self) -> bool {
        self.status == Some(429)
    }
}

/// One request from intent to end. Times in nanoseconds since the run start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// Sequence number within the run (the same request has the same id in every limiter run).
    pub request_id: u64,
    /// Index of the scenario phase it belongs to.
    pub phase: usize,
    /// When the arrival process wanted it sent.
    pub intended_start: Nanos,
    /// Every try, in order; empty when dropped.
    pub attempts: Vec<Attempt>,
    /// First byte of the final attempt's body (first SSE chunk when streamed).
    pub first_byte: Option<Nanos>,
    /// When the request ended (last attempt's end; for dropped, when it was given up).
    pub end: Nanos,
    /// How it ended.
    pub outcome: Outcome,
    /// Tokens the client estimated (and the limiter charged): the provider's admission
    /// estimate, max(prompt tokens, prompt chars / 4) + max_tokens.
    pub estimated_tokens: u64,
    /// Tokens the server charges each attempt it admits: the provider's documented
    /// admission rule, ⌈prompt characters / 4⌉ + `max_tokens` (what the mock charges).
    pub server_tokens: u64,
    /// Prompt tokens as reported by the server.
    pub prompt_tokens: Option<u64>,
    /// Completion tokens as reported by the server.
    pub completion_tokens: Option<u64>,
    /// Total time spent waiting in the limiter over all attempts, ns.
    pub limiter_wait: Nanos,
    /// Whether it was a streaming request.
    pub streamed: bool,
}

impl RequestRecord {
    /// Time to first token, ns (streamed requests with a first chunk).
    pub fn ttft(&self) -> Option<Nanos> {
        let last = self.attempts.last()?;
        self.first_byte
            .filter(|_| self.streamed)
            .map(|fb| fb.saturating_sub(last.sent))
    }

    /// End − last send, ns.
    pub fn service(&self) -> Option<Nanos> {
        self.attempts
            .last()
            .map(|a| self.end.saturating_sub(a.sent))
    }

    /// End − intended start (coordinated-omission corrected), ns.
    pub fn latency(&self) -> Nanos {
        self.end.saturating_sub(self.intended_start)
    }

    /// Attempts the server admitted and charged: every answered attempt but a 429 (an
    /// attempt that failed before an answer, e.g. connection refused, charged nothing).
    pub fn charged_attempts(&self) -> u64 {
        self.attempts
            .iter()
            .filter(|a| a.status.is_some() && !a.throttled())
            .count() as u64
    }

    /// Prompt + completion tokens, when the server reported them.
    pub fn tokens_used(&self) -> u64 {
        self.prompt_tokens.unwrap_or(0) + self.completion_tokens.unwrap_or(0)
    }
}

/// Counters of one second of one limiter's run (a `timeseries.csv` row).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecondRow {
    /// Requests whose intended start fell in this second.
    pub offered: u64,
    /// First attempts sent in it.
    pub sent: u64,
    /// Successful requests that ended in it.
    pub completed: u64,
    /// 429 responses received in it (every attempt).
    pub throttled: u64,
    /// Non-429 failures that ended in it.
    pub errors: u64,
    /// Estimated tokens of attempts sent in it and not refused with 429.
    pub tokens_charged: u64,
    /// Prompt + completion tokens of requests completed in it.
    pub tokens_used: u64,
    /// Corrected latency p50 of requests completed in it, ms.
    pub latency_p50_ms: Option<f64>,
    /// Corrected latency p90, ms.
    pub latency_p90_ms: Option<f64>,
    /// Corrected latency p99, ms.
    pub latency_p99_ms: Option<f64>,
}

/// Seconds of per-second latency histograms kept open behind the newest completion;
/// completions arrive in end order give or take scheduling noise, far below this.
const HORIZON_S: u64 = 30;

/// Aggregates one limiter's request records.
#[derive(Debug)]
pub struct RunAggregate {
    name: String,
    strategy: String,
    seconds: Vec<SecondRow>,
    open: BTreeMap<u64, Histogram<u64>>,
    latency: Histogram<u64>,
    service: Histogram<u64>,
    wait: Histogram<u64>,
    ttft: Histogram<u64>,
    requests: u64,
    completed: u64,
    throttled: u64,
    errors: u64,
    dropped: u64,
    failed_throttled: u64,
    sent: u64,
    late_starts: u64,
    tokens_used: u64,
    /// What the server charged (admitted attempts; reported input and output tokens).
    charged: Charged,
    /// First intended start and last end seen, ns.
    first_start: Option<Nanos>,
    last_end: Nanos,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 1 h at 3 significant figures; recording clamps to the range.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds are valid")
}

/// A per-second histogram: 2 significant figures (1 %) keeps one second's state small.
fn second_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static bounds are valid")
}

fn record_us(h: &mut Histogram<u64>, ns: Nanos) {
    h.saturating_record((ns / 1_000).max(1));
}

fn ms(us: u64) -> f64 {
    (us as f64 / 1_000.0 * 1_000.0).round() / 1_000.0
}

fn percentiles(h: &Histogram<u64>, full: bool) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    let at = |q: f64| Some(ms(h.value_at_quantile(q)));
    Percentiles {
        p50: at(0.50),
        p90: if full { at(0.90) } else { None },
        p99: at(0.99),
        p999: if full { at(0.999) } else { None },
        max: Some(ms(h.max())),
    }
}

fn distribution(h: &Histogram<u64>) -> Vec<[f64; 2]> {
    if h.is_empty() {
        return Vec::new();
    }
    DISTRIBUTION_PERCENTILES
        .iter()
        .map(|&p| [p, ms(h.value_at_percentile(p))])
        .collect()
}

/// Late by more than this beyond the limiter wait counts as a late start.
const LATE_NS: Nanos = 5_000_000;

impl RunAggregate {
    /// An empty aggregate for limiter `name` (strategy name, or `"none"`).
    pub fn new(name: &str, strategy: &str) -> Self {
        Self {
            name: name.to_owned(),
            strategy: strategy.to_owned(),
            seconds: Vec::new(),
            open: BTreeMap::new(),
            latency: histogram(),
            service: histogram(),
            wait: histogram(),
            ttft: histogram(),
            requests: 0,
            completed: 0,
            throttled: 0,
            errors: 0,
            dropped: 0,
            failed_throttled: 0,
            sent: 0,
            late_starts: 0,
            tokens_used: 0,
            charged: Charged::default(),
            first_start: None,
            last_end: 0,
        }
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn second(&mut self, at: Nanos) -> &mut SecondRow {
        let s = (at / 1_000_000_000) as usize;
        if self.seconds.len() <= s {
            self.seconds.resize(s + 1, SecondRow::default());
        }
        &mut self.seconds[s]
    }

    /// Adds one finished (or dropped) request.
    pub fn add(&mut self, r: &RequestRecord) {
        self.requests += 1;
        self.first_start = Some(
            self.first_start
                .map_or(r.intended_start, |s| s.min(r.intended_start)),
        );
        self.last_end = self.last_end.max(r.end);
        let admitted = r.charged_attempts();
        self.charged.requests += admitted;
        self.charged.tokens += admitted * r.server_tokens;
        if r.outcome == Outcome::Ok {
            self.charged.input_tokens += r.prompt_tokens.unwrap_or(0);
            self.charged.output_tokens += r.completion_tokens.unwrap_or(0);
        }
        self.second(r.intended_start).offered += 1;
        if let Some(first) = r.attempts.first() {
            self.sent += 1;
            self.second(first.sent).sent += 1;
            if first.sent.saturating_sub(r.intended_start) > r.limiter_wait + LATE_NS {
                self.late_starts += 1;
            }
        }
        for a in &r.attempts {
            if a.throttled() {
                self.second(a.end).throttled += 1;
            } else {
                self.second(a.sent).tokens_charged += r.estimated_tokens;
            }
        }
        if r.attempts.iter().any(Attempt::throttled) {
            self.throttled += 1;
        }
        record_us(&mut self.wait, r.limiter_wait);
        match r.outcome {
            Outcome::Ok => {
                self.completed += 1;
                let used = r.tokens_used();
                self.tokens_used += used;
                let row = self.second(r.end);
                row.completed += 1;
                row.tokens_used += used;
                record_us(&mut self.latency, r.latency());
                if let Some(s) = r.service() {
                    record_us(&mut self.service, s);
                }
                if let Some(t) = r.ttft() {
                    record_us(&mut self.ttft, t);
                }
                let end_s = r.end / 1_000_000_000;
                record_us(
                    self.open.entry(end_s).or_insert_with(second_histogram),
                    r.latency(),
                );
                self.flush_before(end_s.saturating_sub(HORIZON_S));
            }
            Outcome::Throttled => self.failed_throttled += 1,
            Outcome::Error => {
                self.errors += 1;
                self.second(r.end).errors += 1;
            }
            Outcome::Dropped => self.dropped += 1,
        }
    }

    /// Turns the per-second histograms of seconds before `horizon` into row percentiles.
    fn flush_before(&mut self, horizon: u64) {
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() >= horizon {
                break;
            }
            let (s, h) = entry.remove_entry();
            let p = percentiles(&h, true);
            let row = self.second(s * 1_000_000_000);
            row.latency_p50_ms = p.p50;
            row.latency_p90_ms = p.p90;
            row.latency_p99_ms = p.p99;
        }
    }

    /// The per-second rows, `0 ..` at least `duration_s` seconds long, all latency
    /// histograms flushed.
    pub fn seconds(&mut self, duration_s: u64) -> &[SecondRow] {
        self.flush_before(u64::MAX);
        if (self.seconds.len() as u64) < duration_s {
            self.seconds
                .resize(duration_s as usize, SecondRow::default());
        }
        &self.seconds
    }

    /// What the server charged (admitted attempts; reported input and output tokens).
    pub fn charged(&self) -> Charged {
        self.charged
    }

    /// The run's span, ns: first intended start to last end (0 without requests).
    pub fn span(&self) -> (Nanos, Nanos) {
        let start = self.first_start.unwrap_or(0);
        (start, self.last_end.max(start))
    }

    /// The summary of this limiter's run (thresholds not yet evaluated: empty, passed).
    /// `nominal_s` is the scenario's duration in seconds (the intended rate's denominator);
    /// goodput, the achieved rate and utilisation are divided by the run's real
    /// [`span`](Self::span). `quota` is the server's quota per dimension, empty when unknown.
    pub fn summary(&self, nominal_s: f64, quota: &[QuotaDimension]) -> LimiterSummary {
        let (start, end) = self.span();
        let span_s = (end - start) as f64 / 1e9;
        let minutes = span_s / 60.0;
        let goodput_tpm = if minutes > 0.0 {
            self.tokens_used as f64 / minutes
        } else {
            0.0
        };
        let ratio = |n: u64| {
            if self.requests == 0 {
                0.0
            } else {
                n as f64 / self.requests as f64
            }
        };
        let per = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
        let utilisation = dimension_use(quota, self.charged, start, end);
        let bind = binding(&utilisation);
        let quota_tpm = quota
            .iter()
            .find(|q| q.dimension == "tokens")
            .map(|q| q.per_minute())
            .filter(|&t| t > 0.0);
        LimiterSummary {
            name: self.name.clone(),
            strategy: self.strategy.clone(),
            requests: self.requests,
            completed: self.completed,
            throttled: self.throttled,
            errors: self.errors,
            dropped: self.dropped,
            failed_throttled: self.failed_throttled,
            throttled_ratio: ratio(self.throttled),
            span_s: (span_s * 1_000.0).round() / 1_000.0,
            goodput_tpm: (goodput_tpm * 10.0).round() / 10.0,
            quota_utilisation: bind.map(|b| b.utilisation),
            binding_dimension: bind.map(|b| b.dimension.clone()),
            utilisation: utilisation.clone(),
            goodput_over_quota_tpm: quota_tpm
                .map(|t| (goodput_tpm / t * 10_000.0).round() / 10_000.0),
            target_rate: per(self.requests, nominal_s),
            achieved_rate: per(self.sent, span_s),
            batch_efficiency: None,
            late_starts: self.late_starts,
            latency_ms: percentiles(&self.latency, true),
            service_ms: percentiles(&self.service, true),
            limiter_wait_ms: Percentiles {
                p90: None,
                p999: None,
                ..percentiles(&self.wait, false)
            },
            ttft_ms: (!self.ttft.is_empty()).then(|| Percentiles {
                max: None,
                ..percentiles(&self.ttft, false)
            }),
            latency_distribution: distribution(&self.latency),
            limiter_wait_distribution: distribution(&self.wait),
            thresholds: Vec::new(),
            passed: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Nanos = 1_000_000_000;

    fn ok(id: u64, intended: Nanos, sent: Nanos, end: Nanos) -> RequestRecord {
        RequestRecord {
            request_id: id,
            phase: 0,
            intended_start: intended,
            attempts: vec![Attempt {
                sent,
                end,
                status: Some(200),
            }],
            first_byte: Some(sent + (end - sent) / 2),
            end,
            outcome: Outcome::Ok,
            estimated_tokens: 100,
            server_tokens: 90,
            prompt_tokens: Some(40),
            completion_tokens: Some(20),
            limiter_wait: sent - intended,
            streamed: true,
        }
    }

    #[test]
    fn counts_land_in_their_seconds_and_summary_adds_up() {
        let mut agg = RunAggregate::new("tb", "token_bucket");
        agg.add(&ok(0, 0, S / 2, S + S / 2));
        let mut throttled = ok(1, S, S, 2 * S);
        throttled.attempts.insert(
            0,
            Attempt {
                sent: S,
                end: S + 1,
                status: Some(429),
            },
        );
        agg.add(&throttled);
        agg.add(&RequestRecord {
            attempts: vec![],
            outcome: Outcome::Dropped,
            first_byte: None,
            ..ok(2, 2 * S, 2 * S, 3 * S)
        });
        let rows = agg.seconds(3).to_vec();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows.iter().map(|r| r.offered).collect::<Vec<_>>(),
            [1, 1, 1]
        );
        assert_eq!(rows[1].throttled, 1);
        assert_eq!(rows[1].completed, 1);
        let close = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() <= want * 1e-2);
        assert!(close(rows[1].latency_p50_ms, 1500.0), "{:?}", rows[1]);
        assert_eq!(rows[0].tokens_charged, 100);
        let quota = [QuotaDimension {
            dimension: "tokens",
            limit: 60,
            refill: crate::harness::capacity::Refill::Continuous { period: 60 * S },
        }];
        let s = agg.summary(3.0, &quota);
        assert_eq!(
            (s.requests, s.completed, s.throttled, s.dropped),
            (3, 2, 1, 1)
        );
        assert!((s.throttled_ratio - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.span_s, 3.0);
        assert_eq!(s.goodput_tpm, 2400.0, "120 tokens in 3 s");
        assert_eq!(s.goodput_over_quota_tpm, Some(40.0));
        // Server-charged: two admitted attempts of 90 tokens against 60 + 3 s of refill.
        assert_eq!(s.utilisation[0].charged, 180);
        assert_eq!(s.utilisation[0].capacity, 63);
        assert!(close(s.latency_ms.max, 1500.0), "{:?}", s.latency_ms);
        assert!(s.ttft_ms.is_some());
    }

    #[test]
    fn late_start_means_late_beyond_the_limiter_wait() {
        let mut agg = RunAggregate::new("x", "none");
        let mut r = ok(0, 0, 10_000_000, S);
        r.limiter_wait = 0;
        agg.add(&r);
        r.limiter_wait = 10_000_000;
        agg.add(&r);
        assert_eq!(agg.summary(1.0, &[]).late_starts, 1);
    }

    /// Every request lands in exactly one final outcome, whatever its attempts saw.
    #[test]
    fn final_outcomes_partition_the_requests() {
        let mut agg = RunAggregate::new("x", "none");
        let throttled = |sent| Attempt {
            sent,
            end: sent,
            status: Some(429),
        };
        // ok after a 429
        let mut r = ok(0, 0, S, 2 * S);
        r.attempts.insert(0, throttled(0));
        agg.add(&r);
        // failed after 429s (retries exhausted)
        agg.add(&RequestRecord {
            attempts: vec![throttled(S), throttled(2 * S)],
            outcome: Outcome::Throttled,
            prompt_tokens: None,
            completion_tokens: None,
            ..ok(1, S, S, 2 * S)
        });
        // an error without an answer (connection refused): not charged
        agg.add(&RequestRecord {
            attempts: vec![Attempt {
                sent: S,
                end: S,
                status: None,
            }],
            outcome: Outcome::Error,
            prompt_tokens: None,
            completion_tokens: None,
            ..ok(2, S, S, S)
        });
        agg.add(&RequestRecord {
            attempts: vec![],
            outcome: Outcome::Dropped,
            ..ok(3, S, S, 4 * S)
        });
        let s = agg.summary(4.0, &[]);
        assert_eq!(
            (s.completed, s.failed_throttled, s.errors, s.dropped),
            (1, 1, 1, 1)
        );
        assert_eq!(
            s.completed + s.failed_throttled + s.errors + s.dropped,
            s.requests
        );
        assert_eq!(s.throttled, 2, "saw a 429: the ok one and the failed one");
        assert_eq!(
            (agg.charged.requests, agg.charged.tokens),
            (1, 90),
            "only the one answered non-429 attempt"
        );
        assert_eq!(agg.seconds(4)[1].errors, 1);
        let v = s.verdict();
        assert!(
            v.starts_with("pass, 3 of 4 not completed: 1 failed after 429s, 1 errors, 1 dropped"),
            "{v}"
        );
    }

    #[test]
    fn memory_stays_bounded_over_a_long_run() {
        let mut agg = RunAggregate::new("x", "none");
        for i in 0..3_600u64 {
            agg.add(&ok(i, i * S, i * S, i * S + S / 10));
        }
        assert!(agg.open.len() as u64 <= HORIZON_S + 1, "{}", agg.open.len());
    }
}
