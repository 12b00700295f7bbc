//! The lifecycle's rules, one table row each, and its protocol.

use std::time::Duration;

use super::*;
use crate::limiter::{Cost, ErrorInfo, ResponseMeta};

const EST: Cost = Cost {
    requests: 1,
    tokens: 500,
    input_tokens: None,
    output_tokens: None,
};

fn machine(config: LifecycleConfig) -> RequestLifecycle {
    RequestLifecycle::with_estimate(EST, config)
}

fn meta(status: u16, retry_after_ms: Option<u64>) -> ResponseMeta {
    ResponseMeta {
        status: Some(status),
        remaining_requests: Some(3),
        retry_after: retry_after_ms.map(Duration::from_millis),
        ..ResponseMeta::default()
    }
}

fn error(status: Option<u16>, retryable: bool, rate_limited: bool) -> ErrorInfo {
    ErrorInfo {
        retryable,
        rate_limited,
        retry_after: None,
        status,
    }
}

/// Runs a limited machine through admission and one send that ends with `event`; returns
/// the actions after the send.
fn after_send(event: Event) -> (RequestLifecycle, Action) {
    let mut m = machine(LifecycleConfig::default());
    assert_eq!(m.start(), Action::Acquire(EST));
    assert_eq!(
        m.handle(
            0,
            Event::Admitted {
                waited: Duration::from_millis(5)
            }
        ),
        Action::Send
    );
    let a = m.handle(10, event);
    (m, a)
}

/// One row of the charge table: how an attempt ended, what it is charged, and why.
struct ChargeRow {
    rule: &'static str,
    event: Event,
    charged: Cost,
}

#[test]
fn every_way_an_attempt_ends_is_charged_by_one_rule() {
    let rows = [
        ChargeRow {
            rule: "success: the actual usage",
            event: Event::Responded {
                usage: Cost::tokens(120),
                meta: meta(200, None),
            },
            charged: Cost::request(120),
        },
        ChargeRow {
            rule: "success: the actual usage, input and output apart when reported",
            event: Event::Responded {
                usage: Cost::ZERO.with_split(100, 20),
                meta: meta(200, None),
            },
            charged: Cost::request(0).with_split(100, 20),
        },
        ChargeRow {
            rule: "429: nothing, the server did not admit it",
            event: Event::Failed {
                error: ErrorInfo::rate_limited(Some(Duration::from_millis(519))),
                meta: meta(429, Some(519)),
            },
            charged: Cost::ZERO,
        },
        ChargeRow {
            rule: "429 without retry advice (quota exhausted): nothing",
            event: Event::Failed {
                error: error(Some(429), false, false),
                meta: meta(429, None),
            },
            charged: Cost::ZERO,
        },
        ChargeRow {
            rule: "400: nothing, refused before admission",
            event: Event::Failed {
                error: error(Some(400), false, false),
                meta: meta(400, None),
            },
            charged: Cost::ZERO,
        },
        ChargeRow {
            rule: "401: nothing, refused before admission",
            event: Event::Failed {
                error: error(Some(401), false, false),
                meta: meta(401, None),
            },
            charged: Cost::ZERO,
        },
        ChargeRow {
            rule: "5xx: the estimate is kept, the server may have charged it",
            event: Event::Failed {
                error: error(Some(500), true, false),
                meta: meta(500, None),
            },
            charged: EST,
        },
        ChargeRow {
            rule: "timeout / network (no response): the estimate is kept",
            event: Event::Failed {
                error: error(None, true, false),
                meta: ResponseMeta::default(),
            },
            charged: EST,
        },
        ChargeRow {
            rule: "unreadable 2xx: the estimate is kept",
            event: Event::Failed {
                error: error(Some(200), false, false),
                meta: meta(200, None),
            },
            charged: EST,
        },
        ChargeRow {
            rule: "stream broken after it opened: what was streamed",
            event: Event::StreamBroken {
                usage: Cost::tokens(42),
                meta: meta(200, None),
            },
            charged: Cost::request(42),
        },
        ChargeRow {
            rule: "stream dropped by the caller: what was streamed",
            event: Event::StreamDropped {
                usage: Cost::tokens(7),
                meta: meta(200, None),
            },
            charged: Cost::request(7),
        },
        ChargeRow {
            rule: "rerouted 5xx (fallback): the estimate is kept",
            event: Event::Rerouted {
                error: error(Some(503), true, false),
                meta: meta(503, None),
            },
            charged: EST,
        },
    ];
    for row in rows {
        let expected_meta = match &row.event {
            Event::Responded { meta, .. }
            | Event::Failed { meta, .. }
            | Event::Rerouted { meta, .. }
            | Event::StreamBroken { meta, .. }
            | Event::StreamDropped { meta, .. } => *meta,
            _ => unreachable!(),
        };
        let (_, action) = after_send(row.event);
        assert_eq!(
            action,
            Action::Record {
                actual: row.charged,
                meta: expected_meta
            },
            "rule: {}",
            row.rule
        );
    }
}

/// One row of the retry table: how an attempt ended and what follows its record.
struct RetryRow {
    rule: &'static str,
    event: Event,
    then: Action,
}

#[test]
fn what_follows_each_failure_is_decided_by_one_rule() {
    let throttle = ErrorInfo::rate_limited(Some(Duration::from_secs(1)));
    let rows = [
        RetryRow {
            rule: "success finishes",
            event: Event::Responded {
                usage: Cost::tokens(1),
                meta: meta(200, None),
            },
            then: Action::Finish(Outcome::Completed),
        },
        RetryRow {
            rule: "a retryable 429 asks for retry 1's delay with the server's advice",
            event: Event::Failed {
                error: throttle,
                meta: meta(429, Some(1000)),
            },
            then: Action::Backoff {
                attempt: 1,
                error: throttle,
            },
        },
        RetryRow {
            rule: "a retryable 5xx asks for a delay",
            event: Event::Failed {
                error: error(Some(502), true, false),
                meta: meta(502, None),
            },
            then: Action::Backoff {
                attempt: 1,
                error: error(Some(502), true, false),
            },
        },
        RetryRow {
            rule: "a non-retryable error finishes as failed",
            event: Event::Failed {
                error: error(Some(400), false, false),
                meta: meta(400, None),
            },
            then: Action::Finish(Outcome::Failed),
        },
        RetryRow {
            rule: "a non-retryable 429 (quota exhausted) finishes as throttled",
            event: Event::Failed {
                error: error(Some(429), false, false),
                meta: meta(429, None),
            },
            then: Action::Finish(Outcome::Throttled),
        },
        RetryRow {
            rule: "a broken stream is never retried",
            event: Event::StreamBroken {
                usage: Cost::tokens(3),
                meta: meta(200, None),
            },
            then: Action::Finish(Outcome::Failed),
        },
        RetryRow {
            rule: "a dropped stream finishes as cancelled",
            event: Event::StreamDropped {
                usage: Cost::tokens(3),
                meta: meta(200, None),
            },
            then: Action::Finish(Outcome::Cancelled),
        },
        RetryRow {
            rule: "a rerouted failure is not backed off here",
            event: Event::Rerouted {
                error: throttle,
                meta: meta(429, Some(1000)),
            },
            then: Action::Finish(Outcome::Rerouted),
        },
    ];
    for row in rows {
        let (mut m, action) = after_send(row.event);
        assert!(
            matches!(action, Action::Record { .. }),
            "rule: {}",
            row.rule
        );
        assert_eq!(
            m.handle(10, Event::Recorded),
            row.then,
            "rule: {}",
            row.rule
        );
    }
}

#[test]
fn a_429_pauses_once_then_sleeps_the_decided_delay_and_reacquires() {
    // The record (which applies the server's retry-after) and the backoff question (which
    // may pause the key too) happen at the same instant, before any sleep: so the pause is
    // counted from the response, once, and the retry leaves after the advertised delay.
    let err = ErrorInfo::rate_limited(Some(Duration::from_millis(1000)));
    let (mut m, action) = after_send(Event::Failed {
        error: err,
        meta: meta(429, Some(1000)),
    });
    assert!(
        matches!(action, Action::Record { actual: Cost::ZERO, meta } if meta.retry_after == Some(Duration::from_millis(1000)))
    );
    assert_eq!(
        m.handle(10, Event::Recorded),
        Action::Backoff {
            attempt: 1,
            error: err
        }
    );
    assert_eq!(
        m.handle(10, Event::BackoffDecided(Some(Duration::from_millis(1000)))),
        Action::SleepUntil(10 + 1_000_000_000)
    );
    assert!(m.is_sleeping());
    assert_eq!(
        m.handle(1_000_000_010, Event::TimerFired),
        Action::Acquire(EST)
    );
    assert_eq!(
        m.handle(
            1_000_000_010,
            Event::Admitted {
                waited: Duration::ZERO
            }
        ),
        Action::Send
    );
    assert_eq!(m.attempts(), 2);
    assert_eq!(m.waited(), Duration::from_millis(5));
}

#[test]
fn no_retry_left_finishes_with_the_last_failure_class() {
    let (mut m, _) = after_send(Event::Failed {
        error: ErrorInfo::rate_limited(None),
        meta: meta(429, None),
    });
    m.handle(10, Event::Recorded);
    assert_eq!(
        m.handle(10, Event::BackoffDecided(None)),
        Action::Finish(Outcome::Throttled)
    );
    assert_eq!(m.outcome(), Some(Outcome::Throttled));
}

#[test]
fn a_refusal_by_the_limiter_finishes_unsent() {
    let mut m = machine(LifecycleConfig::default());
    m.start();
    assert_eq!(
        m.handle(
            3,
            Event::Refused {
                waited: Duration::from_millis(2)
            }
        ),
        Action::Finish(Outcome::Refused)
    );
    assert_eq!(m.attempts(), 0);
    assert_eq!(m.waited(), Duration::from_millis(2));
}

#[test]
fn without_a_limiter_nothing_is_acquired_or_recorded_but_retries_remain() {
    let config = LifecycleConfig {
        limited: false,
        ..LifecycleConfig::default()
    };
    let mut m = machine(config);
    assert_eq!(m.start(), Action::Send);
    let err = error(Some(503), true, false);
    assert_eq!(
        m.handle(
            1,
            Event::Failed {
                error: err,
                meta: meta(503, None)
            }
        ),
        Action::Backoff {
            attempt: 1,
            error: err
        }
    );
    assert_eq!(
        m.handle(1, Event::BackoffDecided(Some(Duration::from_nanos(9)))),
        Action::SleepUntil(10)
    );
    assert_eq!(m.handle(10, Event::TimerFired), Action::Send);
    assert_eq!(
        m.handle(
            20,
            Event::Responded {
                usage: Cost::tokens(5),
                meta: meta(200, None)
            }
        ),
        Action::Finish(Outcome::Completed)
    );
}

#[test]
fn the_retry_cap_and_the_retry_switch_end_retries() {
    let err = error(Some(500), true, false);
    let failed = || Event::Failed {
        error: err,
        meta: meta(500, None),
    };
    // max_retries = 1: retry 1 is asked for, retry 2 is not.
    let mut m = machine(LifecycleConfig {
        limited: false,
        max_retries: Some(1),
        ..LifecycleConfig::default()
    });
    m.start();
    assert!(matches!(
        m.handle(0, failed()),
        Action::Backoff { attempt: 1, .. }
    ));
    m.handle(0, Event::BackoffDecided(Some(Duration::ZERO)));
    assert_eq!(m.handle(0, Event::TimerFired), Action::Send);
    assert_eq!(m.handle(0, failed()), Action::Finish(Outcome::Failed));

    let mut m = machine(LifecycleConfig {
        limited: false,
        retries: false,
        ..LifecycleConfig::default()
    });
    m.start();
    assert_eq!(m.handle(0, failed()), Action::Finish(Outcome::Failed));
}

#[test]
fn a_retry_whose_backoff_ends_after_the_deadline_is_not_started() {
    // Rows: (backoff delay in ns from the failure at t = 100, deadline, what follows).
    let throttled = || Event::Failed {
        error: ErrorInfo::rate_limited(Some(Duration::from_nanos(50))),
        meta: meta(429, None),
    };
    let rows = [
        (50, Some(150), Action::SleepUntil(150)),
        (51, Some(150), Action::Finish(Outcome::Throttled)),
        (1_000, None, Action::SleepUntil(1_100)),
    ];
    for (delay, deadline, then) in rows {
        let mut m = machine(LifecycleConfig {
            deadline,
            ..LifecycleConfig::default()
        });
        m.start();
        m.handle(
            0,
            Event::Admitted {
                waited: Duration::ZERO,
            },
        );
        assert!(matches!(m.handle(100, throttled()), Action::Record { .. }));
        assert!(matches!(
            m.handle(100, Event::Recorded),
            Action::Backoff { attempt: 1, .. }
        ));
        assert_eq!(
            m.handle(
                100,
                Event::BackoffDecided(Some(Duration::from_nanos(delay)))
            ),
            then,
            "delay {delay}, deadline {deadline:?}"
        );
    }
    // A 5xx past the deadline finishes as Failed.
    let mut m = machine(LifecycleConfig {
        limited: false,
        deadline: Some(10),
        ..LifecycleConfig::default()
    });
    m.start();
    let err = error(Some(503), true, false);
    m.handle(
        0,
        Event::Failed {
            error: err,
            meta: meta(503, None),
        },
    );
    assert_eq!(
        m.handle(5, Event::BackoffDecided(Some(Duration::from_nanos(6)))),
        Action::Finish(Outcome::Failed)
    );
}

#[test]
fn the_attempt_count_goes_on_from_first_attempt() {
    let mut m = machine(LifecycleConfig {
        limited: false,
        first_attempt: 3,
        ..LifecycleConfig::default()
    });
    m.start();
    let err = error(None, true, false);
    assert!(matches!(
        m.handle(
            0,
            Event::Failed {
                error: err,
                meta: ResponseMeta::default()
            }
        ),
        Action::Backoff { attempt: 3, .. }
    ));
}

#[test]
fn the_estimate_is_the_providers_admission_rule() {
    use crate::provider::admission::{AdmissionRule, RequestSize};
    let size = RequestSize {
        prompt_tokens: 100,
        prompt_chars: 600,
        max_tokens: None,
        n: 2,
    };
    let mut m = RequestLifecycle::new(&AdmissionRule::AZURE, &size, LifecycleConfig::default());
    assert_eq!(
        m.start(),
        Action::Acquire(Cost::request(150 + 32).with_split(150, 32))
    );
    let mut m = RequestLifecycle::new(&AdmissionRule::OPENAI, &size, LifecycleConfig::default());
    assert_eq!(
        m.start(),
        Action::Acquire(Cost::request(150 + 2048).with_split(150, 2048))
    );
}

#[test]
#[cfg(not(debug_assertions))]
fn an_event_out_of_protocol_finishes_as_failed() {
    let mut m = machine(LifecycleConfig::default());
    m.start();
    assert_eq!(
        m.handle(0, Event::TimerFired),
        Action::Finish(Outcome::Failed)
    );
}

#[test]
#[should_panic(expected = "lifecycle got")]
#[cfg(debug_assertions)]
fn an_event_out_of_protocol_is_a_driver_bug() {
    let mut m = machine(LifecycleConfig::default());
    m.start();
    m.handle(0, Event::TimerFired);
}
