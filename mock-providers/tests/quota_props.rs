//! Property tests of the pure quota engine over random arrival sequences: the admitted
//! traffic never exceeds the provider's bound in any window, and a throttle's `retry_after`
//! is exact (refused 1 ns earlier, admitted at it).

use std::time::Duration;

use mock_providers::quota::{
    AzureLimits, AzureQuota, Decision, OpenAiLimits, OpenAiQuota, QuotaEngine, Replenish,
};
use proptest::prelude::*;

const SEC: u64 = 1_000_000_000;
const MINUTE: u64 = 60 * SEC;

/// How long a client waits before its next request.
#[derive(Debug, Clone, Copy)]
enum Gap {
    /// A fixed gap in µs.
    Micros(u64),
    /// After a throttle, the advertised `retry_after` less this many ns (an adversarial
    /// client probing the edge); after an admission, no gap.
    RetryLess(u64),
}

/// (gap, token estimate): spread out, simultaneous, in bursts, or retrying at the edge.
fn arrivals() -> impl Strategy<Value = Vec<(Gap, u64)>> {
    let gap = prop_oneof![
        3 => (0u64..3_000_000).prop_map(Gap::Micros),
        1 => Just(Gap::Micros(0)),
        2 => (0u64..5_000).prop_map(Gap::Micros),
        2 => prop_oneof![Just(0u64), Just(1), Just(1_000_000)].prop_map(Gap::RetryLess),
    ];
    prop::collection::vec((gap, 0u64..1_500), 1..300)
}

/// Runs the arrivals; returns the admitted (time, tokens).
fn admitted<E: QuotaEngine>(engine: &mut E, ops: &[(Gap, u64)]) -> Vec<(u64, u64)> {
    let mut now = 0;
    let mut last_wait: Option<u64> = None;
    let mut out = Vec::new();
    for &(gap, tokens) in ops {
        now += match (gap, last_wait) {
            (Gap::Micros(us), _) => us * 1_000,
            (Gap::RetryLess(less), Some(wait)) => wait.saturating_sub(less),
            (Gap::RetryLess(_), None) => 0,
        };
        last_wait = match engine.try_admit(now, tokens) {
            Decision::Admitted(_) => {
                out.push((now, tokens));
                None
            }
            Decision::Throttled(t) => t.retry_after.map(|w| u64::try_from(w.as_nanos()).unwrap()),
        };
    }
    out
}

/// Most units admitted in any half-open window `[t, t + window)` (windows starting at an
/// admission suffice).
fn max_in_window(events: &[(u64, u64)], window: u64, cost: impl Fn(u64) -> u64) -> u64 {
    events
        .iter()
        .map(|&(start, _)| {
            events
                .iter()
                .filter(|&&(t, _)| t >= start && t < start + window)
                .map(|&(_, tokens)| cost(tokens))
                .sum()
        })
        .max()
        .unwrap_or(0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn openai_sliding_never_exceeds_rpm_or_tpm_in_any_minute(
        rpm in 1u64..30, tpm in 1u64..6_000, ops in arrivals()
    ) {
        let mut q = OpenAiQuota::new(OpenAiLimits { rpm, tpm, replenish: Replenish::Sliding });
        let events = admitted(&mut q, &ops);
        prop_assert!(max_in_window(&events, MINUTE, |_| 1) <= rpm);
        prop_assert!(max_in_window(&events, MINUTE, |t| t) <= tpm);
    }

    #[test]
    fn openai_continuous_never_exceeds_limit_plus_refill_in_any_interval(
        rpm in 1u64..30, tpm in 1u64..6_000, ops in arrivals()
    ) {
        let mut q = OpenAiQuota::new(OpenAiLimits { rpm, tpm, replenish: Replenish::Continuous });
        let events = admitted(&mut q, &ops);
        // Over [t_i, t_j]: admitted ≤ limit + limit × (t_j − t_i) / 60 s, in exact integers.
        for i in 0..events.len() {
            let (mut requests, mut tokens) = (0u128, 0u128);
            for &(t, cost) in &events[i..] {
                requests += 1;
                tokens += u128::from(cost);
                let span = u128::from(t - events[i].0);
                let m = u128::from(MINUTE);
                prop_assert!(requests * m <= u128::from(rpm) * (m + span));
                prop_assert!(tokens * m <= u128::from(tpm) * (m + span));
            }
        }
    }

    #[test]
    fn azure_never_exceeds_rpm_per_short_window_nor_tpm_per_minute(
        tpm in 1_000u64..40_000, one_second in any::<bool>(), ops in arrivals()
    ) {
        let window = if one_second { SEC } else { 10 * SEC };
        let limits = AzureLimits::from_tpm(tpm, Duration::from_nanos(window));
        let per_window = limits.requests_per_window();
        prop_assert_eq!(per_window, (tpm * 6 / 1_000 * window / MINUTE).max(1));
        let mut q = AzureQuota::new(limits);
        let events = admitted(&mut q, &ops);
        prop_assert!(max_in_window(&events, window, |_| 1) <= per_window);
        // The token count resets at each minute of the clock's epoch.
        let mut per_minute = std::collections::BTreeMap::<u64, u64>::new();
        for &(t, cost) in &events {
            *per_minute.entry(t / MINUTE).or_default() += cost;
        }
        prop_assert!(per_minute.values().all(|&used| used <= tpm));
    }

    #[test]
    fn retry_after_is_exact(
        sliding in any::<bool>(), azure in any::<bool>(), ops in arrivals()
    ) {
        let engine: Box<dyn Fn() -> Box<dyn QuotaEngine>> = if azure {
            Box::new(|| Box::new(AzureQuota::new(AzureLimits::from_tpm(3_000, Duration::from_secs(10)))))
        } else {
            let replenish = if sliding { Replenish::Sliding } else { Replenish::Continuous };
            Box::new(move || Box::new(OpenAiQuota::new(OpenAiLimits { rpm: 5, tpm: 3_000, replenish })))
        };
        let mut q = engine();
        let mut now = 0;
        let mut history: Vec<(u64, u64)> = Vec::new();
        for &(gap, tokens) in &ops {
            now += match gap {
                Gap::Micros(us) => us * 1_000,
                Gap::RetryLess(_) => 0,
            };
            match q.try_admit(now, tokens) {
                Decision::Admitted(_) => history.push((now, tokens)),
                Decision::Throttled(t) => {
                    let Some(wait) = t.retry_after else {
                        prop_assert!(t.requested > t.limit, "never-fits only when too large");
                        continue;
                    };
                    let wait = u64::try_from(wait.as_nanos()).unwrap();
                    prop_assert!(wait > 0, "refused although it fits now");
                    // Replay the admitted history into fresh engines and probe the edges.
                    let replay = |at: u64| {
                        let mut fresh = engine();
                        for &(t, c) in &history {
                            let _ = fresh.try_admit(t, c);
                        }
                        fresh.try_admit(at, tokens)
                    };
                    prop_assert!(matches!(replay(now + wait - 1), Decision::Throttled(_)));
                    prop_assert!(matches!(replay(now + wait), Decision::Admitted(_)));
                }
            }
        }
    }
}
