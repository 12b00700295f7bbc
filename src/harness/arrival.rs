//! When requests are meant to start: the arrival processes of a scenario's phases.
//!
//! Latency is only honest when it is measured from when a request *should* have started
//! (coordinated omission): so an open-loop run needs every intended start time up front,
//! independent of how the system under test behaves. [`open_loop_schedule`] yields them as
//! absolute offsets from the run start — each computed from the phase start, never from
//! the previous send — so a slow scheduler makes starts late, not the schedule drift.
//! Closed-loop phases (N users, each sending when its last request finished) have no
//! schedule; the runner drives them.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Exp, Gamma};

use super::workload::sub_seed;
use crate::units::Rate;

/// Salt of the per-phase arrival generator (see [`sub_seed`]).
const ARRIVAL_SALT: u64 = 0x6172_7269_7661_6c73; // "arrivals"

/// How requests arrive during a phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrival {
    /// Open loop, exponential inter-arrival times with mean `1/rate`.
    Poisson {
        /// Mean arrival rate (requests per `rate.per`); zero = an idle phase.
        rate: Rate,
    },
    /// Open loop, exactly `1/rate` apart; the n-th start is `n/rate` after the phase start.
    Constant {
        /// Arrival rate; zero = an idle phase.
        rate: Rate,
    },
    /// Open loop, gamma inter-arrival times with mean `1/rate` and coefficient of
    /// variation `burstiness` (shape `1/burstiness²`): 1 is Poisson, above 1 bursty.
    Gamma {
        /// Mean arrival rate; zero = an idle phase.
        rate: Rate,
        /// Coefficient of variation of the inter-arrival time (> 0).
        burstiness: f64,
    },
    /// Closed loop: `concurrency` users each send a request, wait for it to finish, wait
    /// `think_time`, and send the next, until the phase ends.
    Closed {
        /// Users (requests in flight at most), ≥ 1.
        concurrency: u32,
        /// Pause between a user's response and its next request.
        think_time: Duration,
    },
    /// Open loop, the arrivals of a recorded trace replayed at their relative times (the
    /// scenario's `[workload] trace`); no generated schedule.
    Trace {
        /// Mean arrival rate over the replay, requests per second (for plans and
        /// expected-load arithmetic).
        rate: f64,
    },
    /// Open loop, a request file's requests all offered at the phase start (the scenario's
    /// `[workload] requests`); no generated schedule.
    Batch {
        /// Requests in the batch.
        requests: u64,
    },
}

impl Arrival {
    /// The process's name as written in a scenario (`process = "…"`).
    pub fn process(&self) -> &'static str {
        match self {
            Self::Poisson { .. } => "poisson",
            Self::Constant { .. } => "constant",
            Self::Gamma { .. } => "gamma",
            Self::Closed { .. } => "closed",
            Self::Trace { .. } => "trace",
            Self::Batch { .. } => "batch",
        }
    }

    /// Whether starts are scheduled in advance (every process but `closed`).
    pub fn is_open_loop(&self) -> bool {
        !matches!(self, Self::Closed { .. })
    }

    /// The mean intended rate in requests per second; `None` for closed loop.
    pub fn rate_per_second(&self) -> Option<f64> {
        match self {
            Self::Poisson { rate } | Self::Constant { rate } | Self::Gamma { rate, .. } => {
                Some(rate.per_second())
            }
            Self::Trace { rate } => Some(*rate),
            // All at once: the count over the 1-ms batch phase, so rate × duration is it.
            Self::Batch { requests } => Some(*requests as f64 * 1_000.0),
            Self::Closed { .. } => None,
        }
    }
}

/// One phase of a scenario: an arrival process for a duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phase {
    /// How long the phase lasts (> 0).
    pub duration: Duration,
    /// How requests arrive in it.
    pub arrival: Arrival,
}

impl Phase {
    /// Requests an open-loop phase is expected to offer (rate × duration); `None` for
    /// closed loop.
    pub fn expected_requests(&self) -> Option<f64> {
        self.arrival
            .rate_per_second()
            .map(|r| r * self.duration.as_secs_f64())
    }
}

/// Start offset of each phase from the run start, in nanoseconds, plus the run's end as a
/// last element (so `bounds[i]..bounds[i + 1]` is phase `i`).
pub fn phase_bounds(phases: &[Phase]) -> Vec<u64> {
    let mut out = Vec::with_capacity(phases.len() + 1);
    let mut at: u64 = 0;
    out.push(at);
    for p in phases {
        at = at.saturating_add(nanos(p.duration));
        out.push(at);
    }
    out
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The intended start times of every open-loop phase, in order: `(ns since the run start,
/// phase index)`, strictly within each phase's `[start, end)`. Seeded per phase, so the
/// same `(phases, seed)` always gives the same schedule and one phase's draws do not
/// depend on another's. Closed-loop and trace phases yield nothing (a trace's arrivals come
/// from [`TraceSpec::arrivals`](super::trace::TraceSpec::arrivals)).
pub fn open_loop_schedule(phases: &[Phase], seed: u64) -> OpenLoopSchedule {
    let bounds = phase_bounds(phases);
    let phases = phases
        .iter()
        .enumerate()
        .map(|(i, p)| PhaseSpan {
            start: bounds[i],
            end: bounds[i + 1],
            arrival: p.arrival,
        })
        .collect();
    OpenLoopSchedule {
        seed,
        phases,
        index: 0,
        current: None,
    }
}

#[derive(Debug, Clone)]
struct PhaseSpan {
    start: u64,
    end: u64,
    arrival: Arrival,
}

/// The iterator [`open_loop_schedule`] returns: owns its data, so it can move into a task.
#[derive(Debug, Clone)]
pub struct OpenLoopSchedule {
    seed: u64,
    phases: Vec<PhaseSpan>,
    index: usize,
    current: Option<PhaseGen>,
}

/// The generator of the phase being iterated.
#[derive(Debug, Clone)]
enum PhaseGen {
    /// The n-th start is `start + round(n · interval)`.
    Constant { n: u64, interval_ns: f64 },
    /// Starts accumulate random inter-arrival gaps (in ns, as f64: exact to the ns for
    /// runs shorter than 104 days) from the phase start.
    Random {
        rng: Box<StdRng>,
        gaps: Gaps,
        elapsed_ns: f64,
    },
}

#[derive(Debug, Clone, Copy)]
enum Gaps {
    Exp(Exp<f64>),
    Gamma(Gamma<f64>),
}

impl Gaps {
    fn sample(&self, rng: &mut StdRng) -> f64 {
        match self {
            Self::Exp(d) => d.sample(rng),
            Self::Gamma(d) => d.sample(rng),
        }
    }
}

impl OpenLoopSchedule {
    /// The generator for phase `i`, `None` when it yields nothing (closed loop, zero rate).
    fn generator(&self, i: usize) -> Option<PhaseGen> {
        let span = &self.phases[i];
        let rate_per_ns = span.arrival.rate_per_second()? / 1e9;
        if !(rate_per_ns > 0.0 && rate_per_ns.is_finite()) {
            return None;
        }
        let mean_gap_ns = 1.0 / rate_per_ns;
        let gaps = match span.arrival {
            Arrival::Constant { .. } => {
                return Some(PhaseGen::Constant {
                    n: 0,
                    interval_ns: mean_gap_ns,
                })
            }
            Arrival::Poisson { .. } => Gaps::Exp(Exp::new(rate_per_ns).ok()?),
            Arrival::Gamma { burstiness, .. } => {
                let shape = 1.0 / (burstiness * burstiness);
                Gaps::Gamma(Gamma::new(shape, mean_gap_ns / shape).ok()?)
            }
            Arrival::Closed { .. } | Arrival::Trace { .. } | Arrival::Batch { .. } => return None,
        };
        let rng = StdRng::seed_from_u64(sub_seed(self.seed, ARRIVAL_SALT, i as u64));
        Some(PhaseGen::Random {
            rng: Box::new(rng),
            gaps,
            elapsed_ns: 0.0,
        })
    }
}

impl Iterator for OpenLoopSchedule {
    type Item = (u64, usize);

    fn next(&mut self) -> Option<(u64, usize)> {
        while self.index < self.phases.len() {
            if self.current.is_none() {
                self.current = self.generator(self.index);
            }
            let span = &self.phases[self.index];
            let offset = match self.current.as_mut() {
                Some(PhaseGen::Constant { n, interval_ns }) => {
                    let offset = (*n as f64 * *interval_ns).round();
                    *n += 1;
                    Some(offset)
                }
                Some(PhaseGen::Random {
                    rng,
                    gaps,
                    elapsed_ns,
                }) => {
                    *elapsed_ns += gaps.sample(rng);
                    Some(elapsed_ns.round())
                }
                None => None,
            };
            match offset {
                // `as` saturates; the comparison with the phase end bounds it.
                Some(off) if (off as u64) < span.end - span.start => {
                    return Some((span.start + off as u64, self.index));
                }
                _ => {
                    self.index += 1;
                    self.current = None;
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::parse_rate;

    fn phase(secs: u64, arrival: Arrival) -> Phase {
        Phase {
            duration: Duration::from_secs(secs),
            arrival,
        }
    }

    fn rate(s: &str) -> Rate {
        parse_rate(s).unwrap()
    }

    #[test]
    fn constant_starts_are_exactly_n_over_rate_after_the_phase_start() {
        let phases = [
            phase(
                2,
                Arrival::Closed {
                    concurrency: 2,
                    think_time: Duration::ZERO,
                },
            ),
            phase(10, Arrival::Constant { rate: rate("3/s") }),
        ];
        let starts: Vec<_> = open_loop_schedule(&phases, 1).collect();
        assert_eq!(starts.len(), 30);
        for (n, (t, p)) in starts.iter().enumerate() {
            assert_eq!(*p, 1);
            let want = 2_000_000_000 + (n as f64 * 1e9 / 3.0).round() as u64;
            assert_eq!(*t, want, "start {n}");
        }
    }

    #[test]
    fn zero_rate_and_closed_phases_yield_nothing() {
        let phases = [
            phase(5, Arrival::Poisson { rate: rate("0/s") }),
            phase(
                5,
                Arrival::Closed {
                    concurrency: 1,
                    think_time: Duration::ZERO,
                },
            ),
        ];
        assert_eq!(open_loop_schedule(&phases, 3).count(), 0);
    }

    #[test]
    fn phase_bounds_are_cumulative() {
        let phases = [
            phase(1, Arrival::Constant { rate: rate("1/s") }),
            phase(2, Arrival::Constant { rate: rate("1/s") }),
        ];
        assert_eq!(phase_bounds(&phases), vec![0, 1_000_000_000, 3_000_000_000]);
    }
}
