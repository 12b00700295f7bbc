//! Behaviour of the in-memory keyed limiter through the `RateLimiter` contract: exact
//! waits, FIFO, cancellation, never-fits, timeouts, pauses, reconciliation, concurrency.
//! Time is a `ManualClock`; nothing sleeps.

use std::sync::Arc;
use std::time::Duration;

use connector_hub::clock::{Clock, ManualClock};
use connector_hub::limiter::{
    Cost, Denial, ErrorInfo, KeyedLimiter, LimitError, LimitKey, LimiterConfig, RateLimitType,
    RateLimiter, ResponseMeta,
};
use proptest::prelude::*;

const SEC: u64 = 1_000_000_000;

fn limiter(toml: &str) -> (Arc<KeyedLimiter>, ManualClock) {
    let clock = ManualClock::new(0);
    let cfg = LimiterConfig::from_toml(toml).expect("test config parses");
    let l = KeyedLimiter::new(cfg, Arc::new(clock.clone()))
        .expect("test config is valid")
        .with_seed(7);
    (Arc::new(l), clock)
}

fn key() -> LimitKey {
    LimitKey::new("p", "m")
}

/// Lets spawned tasks run until they block.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn acquire_waits_exactly_until_the_estimate_fits() {
    let (l, clock) = limiter("[default]\nlimits = { rpm = 2 }");
    l.acquire(&key(), Cost::request(0)).await.unwrap();
    l.acquire(&key(), Cost::request(0)).await.unwrap();
    let waiter = tokio::spawn({
        let l = l.clone();
        async move { l.acquire(&key(), Cost::request(0)).await }
    });
    settle().await;
    clock.advance(Duration::from_nanos(30 * SEC - 1));
    settle().await;
    assert!(!waiter.is_finished(), "one request is back only after 30 s");
    clock.advance(Duration::from_nanos(1));
    let permit = waiter.await.unwrap().unwrap();
    assert_eq!(permit.waited(), Duration::from_secs(30));
    assert_eq!(permit.admitted_at(), 30 * SEC);
}

#[tokio::test]
async fn waiters_are_served_in_arrival_order() {
    let (l, clock) = limiter("[default]\nlimits = { rps = 1 }");
    l.acquire(&key(), Cost::request(0)).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..4 {
        let (l, tx) = (l.clone(), tx.clone());
        tokio::spawn(async move {
            l.acquire(&key(), Cost::request(0)).await.unwrap();
            tx.send(i).unwrap();
        });
        settle().await;
    }
    for _ in 0..4 {
        clock.advance(Duration::from_secs(1));
        settle().await;
    }
    drop(tx);
    let mut order = Vec::new();
    while let Some(i) = rx.recv().await {
        order.push(i);
    }
    assert_eq!(order, vec![0, 1, 2, 3]);
}

#[tokio::test]
async fn a_cancelled_waiter_gives_its_place_back() {
    let (l, clock) = limiter("[default]\nlimits = { rps = 1 }");
    l.acquire(&key(), Cost::request(0)).await.unwrap();
    let first = tokio::spawn({
        let l = l.clone();
        async move { l.acquire(&key(), Cost::request(0)).await }
    });
    settle().await;
    let second = tokio::spawn({
        let l = l.clone();
        async move { l.acquire(&key(), Cost::request(0)).await }
    });
    settle().await;
    first.abort();
    settle().await;
    clock.advance(Duration::from_secs(1));
    let p = second.await.unwrap().unwrap();
    assert_eq!(p.admitted_at(), SEC, "the second waiter got the first slot");
    assert!(matches!(
        l.try_acquire(&key(), Cost::request(0)).await,
        Err(Denial::Wait { .. })
    ));
}

#[tokio::test]
async fn a_request_that_can_never_fit_fails_at_once_naming_dimension_cost_and_capacity() {
    let (l, _clock) = limiter("[default]\nlimits = { rpm = 10, tpm = 1000 }");
    let err = l.acquire(&key(), Cost::request(1001)).await.unwrap_err();
    assert_eq!(
        err,
        LimitError::Exceeds {
            key: key(),
            dimension: RateLimitType::TokensPerMinute,
            cost: 1001,
            capacity: 1000
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("1001") && msg.contains("1000") && msg.contains("TPM"),
        "{msg}"
    );
}

#[tokio::test]
async fn max_wait_fails_fast_when_the_wait_is_known_to_be_longer() {
    let (l, _clock) = limiter("[default]\nlimits = { rpm = 1 }\nmax_wait = \"10s\"");
    l.acquire(&key(), Cost::request(0)).await.unwrap();
    match l.acquire(&key(), Cost::request(0)).await {
        Err(LimitError::Timeout {
            needed, max_wait, ..
        }) => {
            assert_eq!(needed, Duration::from_secs(60));
            assert_eq!(max_wait, Duration::from_secs(10));
        }
        other => panic!("expected timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn the_waiter_queue_is_bounded() {
    let (l, _clock) = limiter("[default]\nlimits = { rpm = 1 }\nmax_waiters = 1");
    l.acquire(&key(), Cost::request(0)).await.unwrap();
    let _queued = tokio::spawn({
        let l = l.clone();
        async move { l.acquire(&key(), Cost::request(0)).await }
    });
    settle().await;
    let err = l.acquire(&key(), Cost::request(0)).await.unwrap_err();
    assert!(
        matches!(err, LimitError::QueueFull { waiting: 1, .. }),
        "{err:?}"
    );
    assert!(matches!(
        l.try_acquire(&key(), Cost::request(0)).await,
        Err(Denial::Queued { waiting: 1 })
    ));
}

#[tokio::test]
async fn a_server_retry_after_pauses_every_waiter_and_they_resume_spread_out() {
    let (l, clock) = limiter("[default]\nlimits = { rps = 1000 }\npause_jitter = 0.2");
    let p = l.acquire(&key(), Cost::request(0)).await.unwrap();
    let meta = ResponseMeta {
        status: Some(429),
        retry_after: Some(Duration::from_secs(1)),
        ..ResponseMeta::default()
    };
    let rec = l.record_usage(p, Cost::request(0), &meta).await.unwrap();
    assert_eq!(rec.paused_for, Some(Duration::from_secs(1)));
    assert!(matches!(
        l.try_acquire(&key(), Cost::request(0)).await,
        Err(Denial::Paused { retry_after }) if retry_after >= Duration::from_secs(1)
    ));
    let mut waiters = Vec::new();
    for _ in 0..10 {
        let l = l.clone();
        waiters.push(tokio::spawn(async move {
            l.acquire(&key(), Cost::request(0))
                .await
                .map(|p| p.admitted_at())
        }));
    }
    settle().await;
    // Step through the pause and the 200 ms resume phase in 1 ms steps.
    for _ in 0..1300 {
        clock.advance(Duration::from_millis(1));
        settle().await;
    }
    let mut times = Vec::new();
    for w in waiters {
        // A safety net only (real time): a waiter still blocked here is a failure, not a hang.
        let admitted = tokio::time::timeout(Duration::from_secs(10), w).await;
        times.push(admitted.expect("every waiter resumed").unwrap().unwrap());
    }
    assert!(
        times.iter().all(|&t| t >= SEC),
        "nobody before the pause ends: {times:?}"
    );
    assert!(times.iter().all(|&t| t <= SEC + 300_000_000), "{times:?}");
    times.dedup();
    assert!(
        times.len() >= 8,
        "resumes are spread, not simultaneous: {times:?}"
    );
}

#[tokio::test]
async fn backoff_on_a_rate_limit_error_pauses_the_key_for_the_server_wait() {
    let (l, _clock) = limiter("[default]\nlimits = { rps = 1000 }\npause_jitter = 0.0");
    let err = ErrorInfo::rate_limited(Some(Duration::from_millis(1500)));
    assert_eq!(
        l.backoff_delay(&key(), 1, &err).await,
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        l.try_acquire(&key(), Cost::request(0)).await.unwrap_err(),
        Denial::Paused {
            retry_after: Duration::from_millis(1500)
        }
    );
    let fatal = ErrorInfo {
        retryable: false,
        ..ErrorInfo::default()
    };
    assert_eq!(l.backoff_delay(&key(), 1, &fatal).await, None);
}

#[tokio::test]
async fn a_concurrency_slot_is_freed_by_record_or_drop() {
    let (l, _clock) = limiter("[default]\nlimits = { concurrent = 1 }");
    let p = l.acquire(&key(), Cost::request(10)).await.unwrap();
    assert_eq!(
        l.try_acquire(&key(), Cost::request(10)).await.unwrap_err(),
        Denial::Saturated { in_flight: 1 }
    );
    let waiter = tokio::spawn({
        let l = l.clone();
        async move { l.acquire(&key(), Cost::request(10)).await }
    });
    settle().await;
    assert!(!waiter.is_finished());
    l.record_usage(p, Cost::request(8), &ResponseMeta::default())
        .await
        .unwrap();
    let p2 = waiter.await.unwrap().unwrap();
    drop(p2);
    assert_eq!(l.usage_stats(&key()).await.unwrap().in_flight, 0);
}

#[tokio::test]
async fn keys_are_independent_and_limits_come_from_the_most_specific_rule() {
    let (l, _clock) = limiter(
        r#"
        [[key]]
        provider = "openai"
        model = "gpt-4o-mini"
        limit = { limits = { rpm = 1, tpm = 100 } }
        [[key]]
        provider = "azure"
        deployment = "east"
        limit = { strategy = "token_bucket", limits = { requests = "1/10s" } }
        "#,
    );
    let oa = LimitKey::new("openai", "gpt-4o-mini");
    let az = LimitKey::new("azure", "gpt-4o").with_deployment("east");
    let free = LimitKey::new("other", "x");
    l.try_acquire(&oa, Cost::request(10)).await.unwrap();
    l.try_acquire(&az, Cost::request(10)).await.unwrap();
    assert!(l.try_acquire(&oa, Cost::request(10)).await.is_err());
    assert_eq!(
        l.try_acquire(&az, Cost::request(10)).await.unwrap_err(),
        Denial::Wait {
            dimension: RateLimitType::RequestsPer(Duration::from_secs(10)),
            retry_after: Duration::from_secs(10)
        }
    );
    for _ in 0..1000 {
        l.try_acquire(&free, Cost::request(1_000_000))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn hub_spec_names_work_on_the_provider_wide_key() {
    let (l, _clock) =
        limiter("[[key]]\nprovider = \"p\"\nlimit = { limits = { rpm = 5, tpm = 100 } }");
    l.check_limit("p").await.unwrap();
    l.update_usage("p", 40).await.unwrap();
    let stats = l.get_usage("p").await.unwrap();
    assert_eq!(stats.requests_remaining(), Some(4));
    assert_eq!(stats.tokens_remaining(), Some(60));
}

fn reconciled(accounting: &str, estimate: u64, actual: u64) -> (u64, i64) {
    let (l, _clock) = limiter(&format!(
        "[default]\nlimits = {{ tpm = 10000 }}\naccounting = \"{accounting}\""
    ));
    let p = l.try_acquire_now(&key(), Cost::request(estimate)).unwrap();
    let rec = l.record_usage_now(p, Cost::request(actual), &ResponseMeta::default());
    (
        l.usage_stats_now(&key()).tokens_remaining().unwrap(),
        rec.refunded_tokens,
    )
}

proptest! {
    #[test]
    fn refund_leaves_capacity_minus_actual(estimate in 0u64..=10_000, actual in 0u64..=10_000) {
        let (remaining, refunded) = reconciled("actual", estimate, actual);
        prop_assert_eq!(remaining, 10_000u64.saturating_sub(actual));
        prop_assert_eq!(refunded, estimate as i64 - actual as i64);
    }

    #[test]
    fn estimate_accounting_keeps_the_charge(estimate in 0u64..=10_000, actual in 0u64..=10_000) {
        let (remaining, refunded) = reconciled("estimate", estimate, actual);
        prop_assert_eq!(remaining, 10_000 - estimate);
        prop_assert_eq!(refunded, 0);
    }

    #[test]
    fn a_multi_dimension_refusal_leaves_every_dimension_unchanged(
        rpm in 1u64..20, tpm in 1u64..5_000, rps in 1u64..5,
        steps in prop::collection::vec((0u64..2_000_000_000, 0u64..6_000), 1..60),
        strategy in prop::sample::select(vec!["token_bucket", "gcra", "sliding_log", "sliding_counter", "leaky_bucket"]),
    ) {
        let (l, clock) = limiter(&format!(
            "[default]\nstrategy = \"{strategy}\"\nlimits = {{ rpm = {rpm}, tpm = {tpm}, rps = {rps} }}"
        ));
        for (dt, tokens) in steps {
            clock.advance(Duration::from_nanos(dt));
            let before = l.usage_stats_now(&key()).dimensions;
            if l.try_acquire_now(&key(), Cost::request(tokens)).is_err() {
                prop_assert_eq!(l.usage_stats_now(&key()).dimensions, before);
            }
        }
    }
}

#[test]
fn threads_hammering_one_key_never_admit_more_than_the_arrival_curve() {
    // 8 threads race on one key while the main thread moves a manual clock; every admission
    // is logged with its time, and the total is checked against burst + rate · elapsed.
    let clock = ManualClock::new(0);
    let cfg = LimiterConfig::from_toml("[default]\nlimits = { rps = 50, tpm = 60000 }").unwrap();
    let l = Arc::new(KeyedLimiter::new(cfg, Arc::new(clock.clone())).unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (l, stop) = (l.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut admitted = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(p) = l.try_acquire_now(&key(), Cost::request(10)) {
                        admitted.push(p.admitted_at());
                    }
                }
                admitted
            })
        })
        .collect();
    for _ in 0..2000 {
        clock.advance(Duration::from_millis(1));
        std::thread::yield_now();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all: Vec<u64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    all.sort_unstable();
    let elapsed = clock.now() as f64 / SEC as f64;
    // requests: 50 burst + 50/s; tokens: 60000 burst + 1000/s at 10 tokens each = 100/s.
    let bound = (50.0 + 50.0 * elapsed).floor() as usize;
    assert!(all.len() <= bound, "{} admitted > bound {bound}", all.len());
    for (i, &t) in all.iter().enumerate() {
        let allowed = 50.0 + 50.0 * t as f64 / SEC as f64;
        assert!(
            (i + 1) as f64 <= allowed + 1e-9,
            "admission {i} at {t} ns exceeds the curve"
        );
    }
    assert!(
        all.len() >= 50,
        "the race still admits the burst: {}",
        all.len()
    );
}

/// Input and output tokens are limited apart: the output estimate (`max_tokens`) is
/// charged at admission and `record_usage` refunds each part to what was used.
#[tokio::test]
async fn input_and_output_tokens_are_reconciled_apart() {
    let (l, _clock) = limiter("[default]\nlimits = { rpm = 50, itpm = 1000, otpm = 600 }");
    let est = Cost::request(0).with_split(300, 500);
    let permit = l.try_acquire(&key(), est).await.unwrap();
    assert_eq!(permit.charged(), est);
    let d = l
        .try_acquire(&key(), Cost::request(0).with_split(10, 200))
        .await
        .unwrap_err();
    assert_eq!(
        d,
        Denial::Wait {
            dimension: RateLimitType::OutputTokensPerMinute,
            // 100 output tokens missing at 600 per minute.
            retry_after: Duration::from_secs(10),
        }
    );
    let actual = Cost::request(0).with_split(320, 50);
    let rec = l
        .record_usage(permit, actual, &ResponseMeta::default())
        .await
        .unwrap();
    assert_eq!(rec.refunded_tokens, 800 - 370);
    let s = l.usage_stats(&key()).await.unwrap();
    let left: Vec<(RateLimitType, u64)> = s
        .dimensions
        .iter()
        .map(|d| (d.dimension, d.remaining))
        .collect();
    assert_eq!(
        left,
        [
            (RateLimitType::RequestsPerMinute, 49),
            (RateLimitType::InputTokensPerMinute, 680),
            (RateLimitType::OutputTokensPerMinute, 550),
        ]
    );
    l.try_acquire(&key(), Cost::request(0).with_split(10, 200))
        .await
        .expect("the refunded output makes room");
}

/// `charge_at = { output = "usage" }`: output is not estimated at admission (a large
/// `max_tokens` is no `Exceeds`), the actual output is charged when recorded, and an
/// overdrawn output dimension refuses until it refills — with the exact wait.
#[tokio::test]
async fn output_charged_at_usage_admits_while_not_overdrawn() {
    let (l, clock) = limiter(
        "[default]\nlimits = { itpm = 1000, otpm = 600 }\ncharge_at = { output = \"usage\" }",
    );
    let est = Cost::request(0).with_split(100, 5_000);
    let permit = l
        .try_acquire(&key(), est)
        .await
        .expect("output not charged yet");
    assert_eq!(permit.charged().output(), 0);
    assert_eq!(permit.charged().input(), 100);
    let second = l.try_acquire(&key(), est).await.unwrap();
    l.record_usage(
        permit,
        Cost::request(0).with_split(100, 400),
        &ResponseMeta::default(),
    )
    .await
    .unwrap();
    l.record_usage(
        second,
        Cost::request(0).with_split(100, 300),
        &ResponseMeta::default(),
    )
    .await
    .unwrap();
    // 700 output tokens charged against 600: 100 overdrawn, back after 10 s.
    let d = l.try_acquire(&key(), est).await.unwrap_err();
    assert_eq!(
        d,
        Denial::Wait {
            dimension: RateLimitType::OutputTokensPerMinute,
            retry_after: Duration::from_secs(10),
        }
    );
    clock.advance(Duration::from_nanos(10 * SEC - 1));
    assert!(l.try_acquire(&key(), est).await.is_err());
    clock.advance(Duration::from_nanos(1));
    assert!(l.try_acquire(&key(), est).await.is_ok());
}
