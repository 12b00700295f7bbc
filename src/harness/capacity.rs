//! What the server's quota could admit over a span of time: the denominator of honest
//! utilisation.
//!
//! Utilisation of a dimension is what the server charged over the run divided by the most
//! the quota could have admitted over the run's span — a full bucket plus its refill for
//! a continuously replenished quota (OpenAI), the limit per window for sliding and fixed
//! windows (Azure's short request windows and per-minute token count). Dividing by that
//! bound instead of by the quota's nominal per-minute rate keeps utilisation at or below
//! 100 % for every run the server itself admitted — a short run that spends a full bucket
//! no longer reads 260 %.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use mock_providers::quota::Replenish;

use crate::clock::{nanos, Nanos};

use super::scenario::{ProviderKind, Scenario, Target};
use super::target::mock_config;

const MINUTE: Nanos = 60_000_000_000;

/// How a quota dimension's spent units come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refill {
    /// A bucket of `limit` refilled continuously at `limit` per `period` ns: over an
    /// interval of `t` ns it admits at most `limit + limit·t/period`.
    Continuous {
        /// The refill period, ns (60 s for per-minute quotas).
        period: Nanos,
    },
    /// At most `limit` in every window of `window` ns: over a closed interval of `t` ns at
    /// most `limit × (⌊t / window⌋ + 1)`.
    Sliding {
        /// The window, ns.
        window: Nanos,
    },
    /// A counter of `limit` per window, reset at every multiple of `window` ns since an
    /// epoch: at most `limit` per window the interval touches.
    Fixed {
        /// The window, ns.
        window: Nanos,
        /// Where the windows start on the run's clock (`Some(0)` when the quota's epoch is
        /// the run start, as in the simulator); `None` when unknown, in which case the
        /// bound assumes the worst alignment (`⌈t / window⌉ + 1` windows).
        epoch: Option<Nanos>,
    },
}

/// One dimension of the server's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaDimension {
    /// `"requests"` or `"tokens"`.
    pub dimension: &'static str,
    /// Units per refill period or window.
    pub limit: u64,
    /// How spent units come back.
    pub refill: Refill,
}

impl QuotaDimension {
    /// The most units this dimension could admit over the closed interval `[start, end]`
    /// (ns on the run's clock), starting from a fresh (full) quota. Never below `limit`.
    pub fn capacity(&self, start: Nanos, end: Nanos) -> u64 {
        let t = u128::from(end.saturating_sub(start));
        let limit = u128::from(self.limit);
        let units = match self.refill {
            Refill::Continuous { period } => {
                limit + (limit * t).div_ceil(u128::from(period.max(1)))
            }
            Refill::Sliding { window } => limit * (t / u128::from(window.max(1)) + 1),
            Refill::Fixed { window, epoch } => {
                let w = window.max(1);
                let windows = match epoch {
                    Some(e) => {
                        let index = |at: Nanos| u128::from(at.saturating_sub(e) / w);
                        index(end) - index(start.max(e)) + 1
                    }
                    None => t.div_ceil(u128::from(w)) + 1,
                };
                limit * windows
            }
        };
        u64::try_from(units).unwrap_or(u64::MAX)
    }

    /// The dimension's nominal rate in units per minute (the quota as usually quoted).
    pub fn per_minute(&self) -> f64 {
        let per = match self.refill {
            Refill::Continuous { period } => period,
            Refill::Sliding { window } | Refill::Fixed { window, .. } => window,
        };
        self.limit as f64 * MINUTE as f64 / per.max(1) as f64
    }
}

impl QuotaDimension {
    /// The shortest time, s, in which this dimension can admit `units` starting from a
    /// fresh quota at time 0: the burst at once, then the refill (continuous), or whole
    /// windows of `limit` (sliding and fixed windows: the last units go in the window
    /// ⌈units / limit⌉, which opens (⌈units / limit⌉ − 1) windows later).
    pub fn min_time_s(&self, units: u64) -> f64 {
        if units <= self.limit || self.limit == 0 {
            return 0.0;
        }
        match self.refill {
            Refill::Continuous { period } => {
                (units - self.limit) as f64 * period as f64 / self.limit as f64 / 1e9
            }
            Refill::Sliding { window } | Refill::Fixed { window, .. } => {
                (units.div_ceil(self.limit) - 1) as f64 * window as f64 / 1e9
            }
        }
    }
}

/// Units the server charged over a run, in each unit a quota dimension can count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charged {
    /// Admitted attempts.
    pub requests: u64,
    /// Tokens by the OpenAI/Azure rule: ⌈prompt characters / 4⌉ + `max_tokens` per
    /// admitted attempt.
    pub tokens: u64,
    /// Input tokens the completed requests reported (Anthropic's ITPM).
    pub input_tokens: u64,
    /// Output tokens the completed requests reported (Anthropic's OTPM, net of the
    /// reservation's refund).
    pub output_tokens: u64,
}

impl Charged {
    /// What a dimension named `dimension` counts.
    pub fn of(&self, dimension: &str) -> u64 {
        match dimension {
            "requests" => self.requests,
            "input_tokens" => self.input_tokens,
            "output_tokens" => self.output_tokens,
            _ => self.tokens,
        }
    }
}

/// The shortest time, s, in which the quota can admit `charged`: the
/// slowest dimension's [`QuotaDimension::min_time_s`] — a batch's physical limit.
pub fn min_batch_time_s(quota: &[QuotaDimension], charged: Charged) -> f64 {
    quota
        .iter()
        .map(|q| q.min_time_s(charged.of(q.dimension)))
        .fold(0.0, f64::max)
}

/// One dimension's use over a run, as the summary reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimensionUse {
    /// `"requests"`, `"tokens"`, `"input_tokens"` or `"output_tokens"`.
    pub dimension: String,
    /// Units the server charged: admitted attempts (requests), or their admission estimates
    /// by the provider's rule, ⌈prompt characters / 4⌉ + `max_tokens` (tokens).
    pub charged: u64,
    /// The most the quota could admit over the run's span ([`QuotaDimension::capacity`]).
    pub capacity: u64,
    /// `charged / capacity`, a fraction in `0 ..= 1` for anything the server admitted.
    pub utilisation: f64,
}

/// The server quota of a scenario's target, per dimension, as far as it is known: the
/// embedded mock's quota (the scenario's, or the mock's defaults), none for a `url` target.
/// `epoch_at_start` says whether fixed windows start at the run start (the simulator) or
/// at an unknown instant (a live mock started before the run).
pub fn quota_dimensions(s: &Scenario, epoch_at_start: bool) -> Vec<QuotaDimension> {
    if s.provider.target != Target::Mock {
        return Vec::new();
    }
    let mock = mock_config(s);
    match s.provider.kind {
        ProviderKind::Openai => {
            let Some(m) = mock.models.first() else {
                return Vec::new();
            };
            let refill = match m.replenish {
                Replenish::Continuous => Refill::Continuous { period: MINUTE },
                Replenish::Sliding => Refill::Sliding { window: MINUTE },
            };
            vec![
                QuotaDimension {
                    dimension: "requests",
                    limit: m.rpm,
                    refill,
                },
                QuotaDimension {
                    dimension: "tokens",
                    limit: m.tpm,
                    refill,
                },
            ]
        }
        ProviderKind::Azure => {
            let Some(d) = mock.deployments.first() else {
                return Vec::new();
            };
            let mut limits = mock_providers::quota::AzureLimits::from_tpm(d.tpm, d.rpm_window);
            if let Some(rpm) = s.provider.quota.as_ref().and_then(|q| q.rpm) {
                limits.rpm = rpm;
            }
            vec![
                QuotaDimension {
                    dimension: "requests",
                    limit: limits.requests_per_window(),
                    refill: Refill::Sliding {
                        window: nanos(d.rpm_window),
                    },
                },
                QuotaDimension {
                    dimension: "tokens",
                    limit: d.tpm,
                    refill: Refill::Fixed {
                        window: nanos(Duration::from_secs(60)),
                        epoch: epoch_at_start.then_some(0),
                    },
                },
            ]
        }
        // Three continuously refilled buckets; input and output are charged what the
        // responses report (output net of the `max_tokens` reservation's refund).
        ProviderKind::Anthropic => {
            let Some(m) = mock.anthropic.models.first() else {
                return Vec::new();
            };
            let refill = Refill::Continuous { period: MINUTE };
            vec![
                QuotaDimension {
                    dimension: "requests",
                    limit: m.rpm,
                    refill,
                },
                QuotaDimension {
                    dimension: "input_tokens",
                    limit: m.itpm,
                    refill,
                },
                QuotaDimension {
                    dimension: "output_tokens",
                    limit: m.otpm,
                    refill,
                },
            ]
        }
    }
}

/// Each dimension's use: `charged` holds what the server charged over `[start, end]` (ns
/// on the run's clock).
pub fn dimension_use(
    quota: &[QuotaDimension],
    charged: Charged,
    start: Nanos,
    end: Nanos,
) -> Vec<DimensionUse> {
    quota
        .iter()
        .map(|q| {
            let used = charged.of(q.dimension);
            let capacity = q.capacity(start, end);
            let utilisation = if capacity == 0 {
                0.0
            } else {
                (used as f64 / capacity as f64 * 10_000.0).round() / 10_000.0
            };
            DimensionUse {
                dimension: q.dimension.to_owned(),
                charged: used,
                capacity,
                utilisation,
            }
        })
        .collect()
}

/// The binding dimension: the one closest to its capacity (requests on a tie), `None`
/// without a known quota.
pub fn binding(uses: &[DimensionUse]) -> Option<&DimensionUse> {
    uses.iter().reduce(|best, u| {
        if u.utilisation > best.utilisation {
            u
        } else {
            best
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(requests: u64, tokens: u64) -> Charged {
        Charged {
            requests,
            tokens,
            ..Charged::default()
        }
    }

    const S: Nanos = 1_000_000_000;

    #[test]
    fn continuous_capacity_is_a_full_bucket_plus_refill() {
        let q = QuotaDimension {
            dimension: "requests",
            limit: 60,
            refill: Refill::Continuous { period: MINUTE },
        };
        assert_eq!(q.capacity(0, 0), 60);
        assert_eq!(q.capacity(0, 10 * S), 70, "60 burst + 10 s of 1/s");
        assert_eq!(q.capacity(5 * S, 65 * S), 120);
        assert_eq!(
            q.capacity(0, S / 2),
            61,
            "refill rounds up: a bound, never below"
        );
        assert_eq!(q.per_minute(), 60.0);
    }

    #[test]
    fn sliding_capacity_counts_whole_windows_plus_one() {
        let q = QuotaDimension {
            dimension: "requests",
            limit: 10,
            refill: Refill::Sliding { window: 10 * S },
        };
        assert_eq!(q.capacity(0, 9 * S), 10);
        assert_eq!(q.capacity(0, 10 * S), 20, "both ends of a closed interval");
        assert_eq!(q.capacity(3 * S, 63 * S), 70);
        assert_eq!(q.per_minute(), 60.0);
    }

    #[test]
    fn fixed_capacity_counts_the_windows_touched() {
        let aligned = QuotaDimension {
            dimension: "tokens",
            limit: 1_000,
            refill: Refill::Fixed {
                window: MINUTE,
                epoch: Some(0),
            },
        };
        assert_eq!(aligned.capacity(0, 59 * S), 1_000);
        assert_eq!(aligned.capacity(0, 60 * S), 2_000);
        assert_eq!(aligned.capacity(59 * S, 61 * S), 2_000);
        assert_eq!(aligned.capacity(0, 150 * S), 3_000);
        let unknown = QuotaDimension {
            refill: Refill::Fixed {
                window: MINUTE,
                epoch: None,
            },
            ..aligned
        };
        assert_eq!(unknown.capacity(0, 0), 1_000);
        assert_eq!(
            unknown.capacity(0, 30 * S),
            2_000,
            "may straddle a boundary"
        );
        assert_eq!(unknown.capacity(0, 150 * S), 4_000);
    }

    #[test]
    fn min_batch_time_is_the_slowest_dimensions_burst_then_refill() {
        let per_minute = |dimension, limit| QuotaDimension {
            dimension,
            limit,
            refill: Refill::Continuous { period: MINUTE },
        };
        // 400 requests at 120 RPM: 120 at once, 280 more at 2/s = 140 s; 210 000 tokens
        // at 40 000 TPM: 40 000 at once, 170 000 more at 666.7/s = 255 s.
        let q = [per_minute("requests", 120), per_minute("tokens", 40_000)];
        assert!((q[0].min_time_s(400) - 140.0).abs() < 1e-9);
        assert!((min_batch_time_s(&q, rt(400, 210_000)) - 255.0).abs() < 1e-9);
        assert_eq!(
            min_batch_time_s(&q, rt(100, 30_000)),
            0.0,
            "within the burst"
        );
        let fixed = QuotaDimension {
            dimension: "tokens",
            limit: 1_000,
            refill: Refill::Fixed {
                window: MINUTE,
                epoch: Some(0),
            },
        };
        assert_eq!(
            fixed.min_time_s(2_500),
            120.0,
            "third minute opens at 120 s"
        );
    }

    #[test]
    fn uses_divide_charges_by_capacity_and_name_the_binding_one() {
        let quota = [
            QuotaDimension {
                dimension: "requests",
                limit: 60,
                refill: Refill::Continuous { period: MINUTE },
            },
            QuotaDimension {
                dimension: "tokens",
                limit: 6_000,
                refill: Refill::Continuous { period: MINUTE },
            },
        ];
        let charged = Charged {
            requests: 70,
            tokens: 3_500,
            ..Charged::default()
        };
        let uses = dimension_use(&quota, charged, 0, 10 * S);
        assert_eq!(uses[0].capacity, 70);
        assert_eq!(uses[0].utilisation, 1.0);
        assert_eq!(uses[1].capacity, 7_000);
        assert_eq!(uses[1].utilisation, 0.5);
        assert_eq!(
            binding(&uses).map(|u| u.dimension.as_str()),
            Some("requests")
        );
        assert!(binding(&[]).is_none());
    }
}
