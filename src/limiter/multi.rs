//! Several dimensions of one key admitted all-or-nothing: requests and tokens per window,
//! total tokens or input and output tokens apart, plus an optional concurrency limit.
//!
//! Admission checks every dimension first and commits to all of them only when all admit,
//! so a refusal on one dimension consumes nothing on the others. The refusal reports the
//! dimension with the longest wait; that wait is exact for the whole set, because each
//! strategy's wait is monotone (once a cost fits, it keeps fitting while nothing else is
//! admitted).

use std::time::Duration;

use crate::clock::Nanos;

use super::algorithm::DimensionState;
use super::config::{Limit, RateLimitType, Strategy, Unit};
use super::meta::ResponseMeta;
use super::{Cost, Denial, DimensionUsage};

/// All dimensions of one key. Pure: every method takes `now`; the keyed limiter wraps it in
/// a lock.
#[derive(Debug, Clone)]
pub struct MultiLimit {
    rates: Vec<(Limit, DimensionState)>,
    /// Concurrency slots, when a `Concurrent` dimension is configured.
    slots: Option<u64>,
    in_flight: u64,
}

impl MultiLimit {
    /// Fresh state for `limits` under `strategy` at `now`; an empty `limits` admits all.
    pub fn new(strategy: Strategy, limits: &[Limit], now: Nanos) -> Self {
        let mut slots = None;
        let mut rates = Vec::with_capacity(limits.len());
        for &limit in limits {
            if limit.kind == RateLimitType::Concurrent {
                slots = Some(limit.amount);
            } else {
                rates.push((limit, DimensionState::new(strategy, limit, now)));
            }
        }
        Self {
            rates,
            slots,
            in_flight: 0,
        }
    }

    /// Whether a concurrency limit is configured (permits then hold a slot).
    pub fn has_slots(&self) -> bool {
        self.slots.is_some()
    }

    /// Permits holding a concurrency slot now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// The first dimension `cost` can never fit, as a [`Denial::Exceeds`].
    pub fn never_fits(&self, cost: Cost) -> Option<Denial> {
        self.rates.iter().find_map(|(limit, state)| {
            let c = limit.kind.cost_of(cost);
            let capacity = state.capacity();
            (c > capacity).then_some(Denial::Exceeds {
                dimension: limit.kind,
                cost: c,
                capacity,
            })
        })
    }

    /// Admits `cost` on every dimension at `now`, or on none. On refusal: `Exceeds` when it
    /// can never fit, `Saturated` when no concurrency slot is free, else `Wait` with the
    /// exact wait of the slowest dimension.
    pub fn try_admit(&mut self, now: Nanos, cost: Cost) -> Result<(), Denial> {
        // "Never fits" is looked for only on a refusal: a dimension's `check` refuses a
        // cost above its capacity (with `Nanos::MAX`), so the answer is the same as looking
        // first, without a pass over the dimensions on every admission.
        if let Some(slots) = self.slots {
            if cost.requests > 0 && self.in_flight >= slots {
                return Err(self.never_fits(cost).unwrap_or(Denial::Saturated {
                    in_flight: self.in_flight,
                }));
            }
        }
        if let [(limit, state)] = self.rates.as_mut_slice() {
            // One dimension (the common case): check and commit in one go.
            let c = limit.kind.cost_of(cost);
            let refused = match state.check(now, c) {
                Ok(()) => {
                    state.commit(now, c);
                    None
                }
                Err(wait) => Some((limit.kind, wait)),
            };
            return match refused {
                None => {
                    self.take_slot(cost);
                    Ok(())
                }
                Some((dimension, wait)) => Err(self.never_fits(cost).unwrap_or(Denial::Wait {
                    dimension,
                    retry_after: Duration::from_nanos(wait),
                })),
            };
        }
        let mut worst: Option<(RateLimitType, Nanos)> = None;
        for (limit, state) in &self.rates {
            if let Err(wait) = state.check(now, limit.kind.cost_of(cost)) {
                if worst.is_none_or(|(_, w)| wait > w) {
                    worst = Some((limit.kind, wait));
                }
            }
        }
        if let Some((dimension, wait)) = worst {
            return Err(self.never_fits(cost).unwrap_or(Denial::Wait {
                dimension,
                retry_after: Duration::from_nanos(wait),
            }));
        }
        for (limit, state) in &mut self.rates {
            state.commit(now, limit.kind.cost_of(cost));
        }
        self.take_slot(cost);
        Ok(())
    }

    /// An admitted request holds a concurrency slot, when slots are configured.
    #[inline]
    fn take_slot(&mut self, cost: Cost) {
        if self.slots.is_some() && cost.requests > 0 {
            self.in_flight += 1;
        }
    }

    /// Frees one concurrency slot (a permit was recorded or dropped).
    pub fn release_slot(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Reconciliation: gives back `refund` (negative = charges more) on every dimension
    /// counting in `unit`.
    pub fn adjust(&mut self, now: Nanos, unit: Unit, refund: i64) {
        if refund == 0 {
            return;
        }
        for (limit, state) in &mut self.rates {
            if limit.kind.unit() == unit {
                state.adjust(now, refund);
            }
        }
    }

    /// Lowers each dimension to what the server reports as remaining in its unit (never
    /// raises): the local view is never more permissive than the server's.
    pub fn apply_server_view(&mut self, now: Nanos, meta: &ResponseMeta) {
        for (limit, state) in &mut self.rates {
            if let Some(r) = meta.remaining_in(limit.kind.unit()) {
                state.clamp_remaining(now, r);
            }
        }
    }

    /// Each dimension's standing at `now` (concurrency last).
    pub fn usage(&self, now: Nanos) -> Vec<DimensionUsage> {
        let mut out: Vec<DimensionUsage> = self
            .rates
            .iter()
            .map(|(limit, state)| DimensionUsage {
                dimension: limit.kind,
                capacity: state.capacity(),
                remaining: state.remaining(now),
                reset_after: Duration::from_nanos(state.reset_after(now)),
            })
            .collect();
        if let Some(slots) = self.slots {
            out.push(DimensionUsage {
                dimension: RateLimitType::Concurrent,
                capacity: slots,
                remaining: slots.saturating_sub(self.in_flight),
                reset_after: Duration::ZERO,
            });
        }
        out
    }

    /// Every dimension back to full at `now`; in-flight permits keep their slots.
    pub fn reset(&mut self, now: Nanos) {
        for (_, state) in &mut self.rates {
            state.reset(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::config::{Limits, RateLimitConfig};

    fn openai_like() -> MultiLimit {
        let cfg = RateLimitConfig::new(
            Strategy::TokenBucket,
            Limits {
                rpm: Some(3),
                tpm: Some(1000),
                ..Limits::default()
            },
        );
        MultiLimit::new(cfg.strategy, &cfg.dimensions().unwrap(), 0)
    }

    #[test]
    fn refusal_on_one_dimension_consumes_nothing_on_others() {
        let mut m = openai_like();
        m.try_admit(0, Cost::request(900)).unwrap();
        let before = m.usage(0);
        let denial = m.try_admit(0, Cost::request(200)).unwrap_err();
        assert_eq!(denial.dimension(), Some(RateLimitType::TokensPerMinute));
        assert_eq!(m.usage(0), before, "requests dimension untouched");
    }

    #[test]
    fn reports_the_slowest_dimension_and_its_exact_wait() {
        let mut m = openai_like();
        for _ in 0..3 {
            m.try_admit(0, Cost::request(1)).unwrap();
        }
        // RPM: 1 request back after 20 s; TPM has room.
        let d = m.try_admit(0, Cost::request(1)).unwrap_err();
        assert_eq!(
            d,
            Denial::Wait {
                dimension: RateLimitType::RequestsPerMinute,
                retry_after: Duration::from_secs(20)
            }
        );
        assert!(m.try_admit(20_000_000_000 - 1, Cost::request(1)).is_err());
        assert!(m.try_admit(20_000_000_000, Cost::request(1)).is_ok());
    }

    #[test]
    fn never_fits_is_not_a_wait() {
        let mut m = openai_like();
        let d = m.try_admit(0, Cost::request(1001)).unwrap_err();
        assert_eq!(
            d,
            Denial::Exceeds {
                dimension: RateLimitType::TokensPerMinute,
                cost: 1001,
                capacity: 1000
            }
        );
    }

    #[test]
    fn concurrency_slots_saturate_and_free() {
        let cfg = RateLimitConfig::new(
            Strategy::TokenBucket,
            Limits {
                concurrent: Some(1),
                ..Limits::default()
            },
        );
        let mut m = MultiLimit::new(cfg.strategy, &cfg.dimensions().unwrap(), 0);
        assert!(m.has_slots());
        m.try_admit(0, Cost::request(5)).unwrap();
        assert_eq!(m.in_flight(), 1);
        assert_eq!(
            m.try_admit(0, Cost::request(5)),
            Err(Denial::Saturated { in_flight: 1 })
        );
        m.release_slot();
        assert_eq!(m.in_flight(), 0);
        assert!(m.try_admit(0, Cost::request(5)).is_ok());
    }

    #[test]
    fn server_view_only_lowers() {
        let mut m = openai_like();
        let meta = ResponseMeta {
            remaining_tokens: Some(100),
            remaining_requests: Some(50),
            ..ResponseMeta::default()
        };
        m.apply_server_view(0, &meta);
        let u = m.usage(0);
        assert_eq!(u[0].remaining, 3, "requests: server's 50 does not raise 3");
        assert_eq!(u[1].remaining, 100, "tokens lowered to the server's 100");
    }

    const STRATEGIES: [Strategy; 5] = [
        Strategy::TokenBucket,
        Strategy::Gcra,
        Strategy::SlidingLog,
        Strategy::SlidingCounter,
        Strategy::LeakyBucket,
    ];

    /// RPM 60, ITPM 1000, OTPM 600 under `strategy`.
    fn split_limits(strategy: Strategy) -> MultiLimit {
        let cfg = RateLimitConfig::new(
            strategy,
            Limits {
                rpm: Some(60),
                itpm: Some(1000),
                otpm: Some(600),
                ..Limits::default()
            },
        );
        MultiLimit::new(cfg.strategy, &cfg.dimensions().unwrap(), 0)
    }

    fn split(input: u64, output: u64) -> Cost {
        Cost::request(0).with_split(input, output)
    }

    /// `cost` is refused at `now` on `dimension` without touching any dimension, refused
    /// again 1 ns before the wait it names and admitted exactly at it.
    fn refused_exactly(m: &mut MultiLimit, now: Nanos, cost: Cost, dimension: RateLimitType) {
        let before = m.usage(now);
        let d = m.try_admit(now, cost).unwrap_err();
        assert_eq!(d.dimension(), Some(dimension), "{d}");
        assert_eq!(m.usage(now), before, "all or nothing: {d}");
        let wait = u64::try_from(d.retry_after().unwrap().as_nanos()).unwrap();
        assert!(wait > 0);
        assert!(
            m.try_admit(now + wait - 1, cost).is_err(),
            "1 ns early: {d}"
        );
        assert!(m.try_admit(now + wait, cost).is_ok(), "at the wait: {d}");
    }

    #[test]
    fn input_tokens_refuse_alone_with_an_exact_wait_in_every_strategy() {
        for s in STRATEGIES {
            let mut m = split_limits(s);
            m.try_admit(0, split(1000, 10)).unwrap();
            refused_exactly(
                &mut m,
                0,
                split(100, 1),
                RateLimitType::InputTokensPerMinute,
            );
        }
    }

    #[test]
    fn output_tokens_refuse_alone_with_an_exact_wait_in_every_strategy() {
        for s in STRATEGIES {
            let mut m = split_limits(s);
            m.try_admit(0, split(10, 600)).unwrap();
            refused_exactly(
                &mut m,
                0,
                split(1, 60),
                RateLimitType::OutputTokensPerMinute,
            );
        }
    }

    #[test]
    fn an_unknown_split_counts_the_whole_total_on_input_and_output() {
        for s in STRATEGIES {
            let mut m = split_limits(s);
            m.try_admit(0, Cost::request(600)).unwrap();
            let u = m.usage(0);
            assert_eq!(u[1].dimension, RateLimitType::InputTokensPerMinute);
            assert_eq!(u[2].dimension, RateLimitType::OutputTokensPerMinute);
            if s != Strategy::LeakyBucket {
                // (A pacer reports nothing left until its next slot.)
                assert_eq!((u[1].remaining, u[2].remaining), (400, 0), "{s:?}");
            }
            assert_eq!(
                m.try_admit(0, split(0, 1)).unwrap_err().dimension(),
                Some(RateLimitType::OutputTokensPerMinute),
                "{s:?}"
            );
        }
    }

    #[test]
    fn a_part_above_its_capacity_never_fits() {
        for s in STRATEGIES {
            let mut m = split_limits(s);
            assert_eq!(
                m.try_admit(0, split(10, 601)),
                Err(Denial::Exceeds {
                    dimension: RateLimitType::OutputTokensPerMinute,
                    cost: 601,
                    capacity: 600
                }),
                "{s:?}"
            );
            assert_eq!(
                m.try_admit(0, split(1001, 0)).unwrap_err().dimension(),
                Some(RateLimitType::InputTokensPerMinute)
            );
        }
    }

    #[test]
    fn reconciliation_and_the_server_view_move_each_part_alone() {
        let mut m = split_limits(Strategy::TokenBucket);
        m.try_admit(0, split(300, 500)).unwrap();
        m.adjust(0, Unit::OutputTokens, 450);
        let u = m.usage(0);
        assert_eq!((u[1].remaining, u[2].remaining), (700, 550));
        m.adjust(0, Unit::InputTokens, -100);
        let u = m.usage(0);
        assert_eq!((u[1].remaining, u[2].remaining), (600, 550));
        let meta = ResponseMeta {
            remaining_output_tokens: Some(20),
            ..ResponseMeta::default()
        };
        m.apply_server_view(0, &meta);
        let u = m.usage(0);
        assert_eq!(
            (u[0].remaining, u[1].remaining, u[2].remaining),
            (59, 600, 20)
        );
    }

    #[test]
    fn stats_count_admissions_left_on_each_part() {
        let mut m = split_limits(Strategy::TokenBucket);
        m.try_admit(0, split(400, 300)).unwrap();
        let stats = crate::limiter::UsageStats {
            dimensions: m.usage(0),
            ..Default::default()
        };
        assert_eq!(stats.input_tokens_remaining(), Some(600));
        assert_eq!(stats.output_tokens_remaining(), Some(300));
        assert_eq!(stats.tokens_remaining(), None);
        // 600 / 100 input, 300 / 100 output, 59 requests: output binds.
        assert_eq!(stats.admissions_left(split(100, 100)), Some(3));
        assert_eq!(stats.admissions_left(split(200, 0)), Some(3));
        // An unknown split counts the total on both parts.
        assert_eq!(stats.admissions_left(Cost::request(50)), Some(6));
    }
}
