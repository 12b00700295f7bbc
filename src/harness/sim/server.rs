//! The simulated server: the mock's own quota engine for the scenario's provider behind
//! one interface, answering an attempt as the mock would (admitted with its headers'
//! view, or a 429 with its retry-after) and reconciling the engine when a response ends.
//!
//! [`for_scenario`] is the one place the simulator picks an engine by provider: the
//! OpenAI dialect (OpenAI's RPM/TPM, Azure's TPM with short RPM windows) or Anthropic's
//! RPM/ITPM/OTPM buckets.

use std::fmt;
use std::time::Duration;

use mock_providers::provider::anthropic::{
    AnthropicCost, AnthropicDecision, AnthropicLimits, AnthropicQuota, AnthropicSnapshot,
};
use mock_providers::quota::{
    AzureLimits, AzureQuota, Decision, OpenAiLimits, OpenAiQuota, QuotaEngine, Replenish,
};
use mock_providers::MockConfig;

use crate::clock::Nanos;
use crate::limiter::ResponseMeta;
use crate::provider::admission::RequestSize;

use super::super::scenario::{ProviderKind, Scenario};
use super::{ceil_ms, meta};

/// One attempt as the server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sent {
    /// Tokens of the prompt's text (one user message).
    pub content_tokens: u64,
    /// Characters of the prompt's text.
    pub prompt_chars: u64,
    /// The request's `max_tokens`.
    pub max_tokens: u64,
}

/// The server's answer to an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// Admitted: the prompt tokens its usage will report, and its headers' view.
    Admitted {
        /// Input tokens as the server counts them (its usage's input).
        prompt_tokens: u64,
        /// What the connector reads from the response's headers.
        meta: ResponseMeta,
    },
    /// A 429.
    Throttled {
        /// The `retry-after` the connector reads (`None` when the server sends none).
        retry_after: Option<Duration>,
        /// The request can never be admitted (not retryable).
        too_large: bool,
        /// What the connector reads from the response's headers.
        meta: ResponseMeta,
    },
}

/// A provider's quota as the simulator drives it.
pub(super) trait SimServer: fmt::Debug + Send {
    /// Answers `sent` at `now`, charging the quota when admitted.
    fn admit(&mut self, now: Nanos, sent: &Sent) -> Answer;

    /// The admitted `sent` ended at `now` having generated `output` tokens.
    fn complete(&mut self, now: Nanos, sent: &Sent, output: u64);
}

/// The server of `s`'s provider, from the embedded mock's configuration `mock` (as
/// [`super::super::target::mock_config`] builds it).
pub(super) fn for_scenario(s: &Scenario, mock: &MockConfig) -> Box<dyn SimServer> {
    match s.provider.kind {
        ProviderKind::Openai => {
            let m = &mock.models[0];
            Box::new(OpenAiDialect {
                engine: Box::new(OpenAiQuota::new(OpenAiLimits {
                    rpm: m.rpm,
                    tpm: m.tpm,
                    replenish: Replenish::Continuous,
                })),
                azure: false,
            })
        }
        ProviderKind::Azure => {
            let d = &mock.deployments[0];
            let mut limits = AzureLimits::from_tpm(d.tpm, d.rpm_window);
            if let Some(rpm) = s.provider.quota.as_ref().and_then(|q| q.rpm) {
                limits.rpm = rpm;
            }
            Box::new(OpenAiDialect {
                engine: Box::new(AzureQuota::new(limits)),
                azure: true,
            })
        }
        ProviderKind::Anthropic => {
            let m = &mock.anthropic.models[0];
            Box::new(Anthropic {
                quota: AnthropicQuota::new(AnthropicLimits {
                    rpm: m.rpm,
                    itpm: m.itpm,
                    otpm: m.otpm,
                    rpm_interval: mock.anthropic.rpm_interval,
                    otpm_rule: mock.anthropic.otpm_rule,
                }),
            })
        }
    }
}

/// OpenAI and Azure: one engine charging the estimate (prompt characters / 4 +
/// `max_tokens`) at admission, nothing at the end.
#[derive(Debug)]
struct OpenAiDialect {
    engine: Box<dyn QuotaEngine>,
    azure: bool,
}

impl SimServer for OpenAiDialect {
    fn admit(&mut self, now: Nanos, sent: &Sent) -> Answer {
        match self
            .engine
            .try_admit(now, sent.prompt_chars.div_ceil(4) + sent.max_tokens)
        {
            Decision::Admitted(a) => Answer::Admitted {
                prompt_tokens: RequestSize::user_message(
                    sent.content_tokens,
                    sent.prompt_chars,
                    None,
                )
                .prompt_tokens,
                meta: meta(&a.snapshot, self.azure, 200, None),
            },
            Decision::Throttled(th) => {
                let retry_after = th.retry_after.map(ceil_ms);
                Answer::Throttled {
                    retry_after,
                    too_large: th.too_large(),
                    meta: meta(&th.snapshot, self.azure, 429, retry_after),
                }
            }
        }
    }

    fn complete(&mut self, _now: Nanos, _sent: &Sent, _output: u64) {}
}

/// Anthropic: requests, input and output token buckets; the input charged exactly (the
/// mock's count: 1 + 3 of framing + the text's tokens for one user message), the output
/// per the mock's OTPM rule and reconciled when the response ends.
#[derive(Debug)]
struct Anthropic {
    quota: AnthropicQuota,
}

/// The mock's framing tokens around one user message's text.
const ANTHROPIC_FRAMING: u64 = 1 + 3;

impl Anthropic {
    fn cost(sent: &Sent) -> AnthropicCost {
        AnthropicCost {
            input: sent.content_tokens + ANTHROPIC_FRAMING,
            max_tokens: sent.max_tokens,
        }
    }
}

impl SimServer for Anthropic {
    fn admit(&mut self, now: Nanos, sent: &Sent) -> Answer {
        let cost = Self::cost(sent);
        match self.quota.try_admit(now, cost) {
            AnthropicDecision::Admitted(snapshot) => Answer::Admitted {
                prompt_tokens: cost.input,
                meta: anthropic_meta(&snapshot, 200, None),
            },
            AnthropicDecision::Throttled(th) => {
                // The mock sends whole seconds, rounded up.
                let retry_after = th
                    .retry_after
                    .map(|w| Duration::from_secs(w.as_nanos().div_ceil(1_000_000_000) as u64));
                Answer::Throttled {
                    retry_after,
                    too_large: th.retry_after.is_none(),
                    meta: anthropic_meta(&th.snapshot, 429, retry_after),
                }
            }
        }
    }

    fn complete(&mut self, now: Nanos, sent: &Sent, output: u64) {
        self.quota.complete(now, Self::cost(sent), output);
    }
}

/// What the Anthropic connector reads from the mock's headers for `q` (resets are whole
/// seconds, rounded up, as RFC 3339 times carry them; `tokens-*` is input plus output).
fn anthropic_meta(
    q: &AnthropicSnapshot,
    status: u16,
    retry_after: Option<Duration>,
) -> ResponseMeta {
    let secs = |d: Duration| Duration::from_secs(d.as_nanos().div_ceil(1_000_000_000) as u64);
    ResponseMeta {
        status: Some(status),
        limit_requests: Some(q.requests.limit),
        limit_tokens: Some(q.input.limit.saturating_add(q.output.limit)),
        remaining_requests: Some(q.requests.remaining),
        remaining_tokens: Some(q.input.remaining.saturating_add(q.output.remaining)),
        remaining_input_tokens: Some(q.input.remaining),
        remaining_output_tokens: Some(q.output.remaining),
        reset_requests: Some(secs(q.requests.reset)),
        reset_tokens: Some(secs(q.input.reset.max(q.output.reset))),
        retry_after,
        should_retry: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use mock_providers::provider::anthropic::headers as mock;
    use mock_providers::provider::anthropic::Bucket;

    use super::*;
    use crate::provider::anthropic::headers::parse_at;

    /// The simulator's Anthropic view equals what the connector reads from the mock's own
    /// headers for the same snapshot (at whole seconds, where RFC 3339 loses nothing).
    #[test]
    fn anthropic_meta_is_what_the_connector_reads_from_the_mocks_headers() {
        let switches = mock::Switches {
            rate_limit: true,
            retry_after: true,
            request_id: true,
            round_token_remaining: false,
        };
        let epoch_unix = 1_750_000_000u64;
        for (i, now_s) in [0u64, 7, 59, 3_600].into_iter().enumerate() {
            let now = now_s * 1_000_000_000;
            let bucket = |limit: u64, used: u64, reset_ms: u64| Bucket {
                limit,
                remaining: limit - used,
                reset: Duration::from_millis(reset_ms),
            };
            let q = AnthropicSnapshot {
                requests: bucket(50, i as u64, 1_200 * i as u64 + 1),
                input: bucket(30_000, 1_000 * i as u64, 999),
                output: bucket(8_000, 500 + i as u64, 4_001),
            };
            let wall_now = UNIX_EPOCH + Duration::from_secs(epoch_unix + now_s);
            for (status, retry) in [(200u16, None), (429, Some(Duration::from_millis(2_500)))] {
                let mut h = http::HeaderMap::new();
                mock::rate_limit(switches, &q, epoch_unix, now, &mut h);
                if let Some(w) = retry {
                    mock::retry_after(switches, w, &mut h);
                }
                let read = parse_at(Some(status), &h, wall_now);
                let retry_read =
                    retry.map(|w| Duration::from_secs(w.as_nanos().div_ceil(1_000_000_000) as u64));
                assert_eq!(
                    anthropic_meta(&q, status, retry_read),
                    read,
                    "{status} {q:?}"
                );
            }
        }
    }

    /// Admission charges the mock's exact input and `max_tokens`; the end refunds the
    /// unused output; a request over OTPM is refused with a whole-second retry-after.
    #[test]
    fn the_anthropic_server_reserves_max_tokens_and_refunds_at_the_end() {
        let mut server = Anthropic {
            quota: AnthropicQuota::new(AnthropicLimits {
                rpm: 100,
                itpm: 10_000,
                otpm: 1_000,
                rpm_interval: None,
                otpm_rule: Default::default(),
            }),
        };
        let sent = Sent {
            content_tokens: 96,
            prompt_chars: 384,
            max_tokens: 600,
        };
        let Answer::Admitted {
            prompt_tokens,
            meta,
        } = server.admit(0, &sent)
        else {
            panic!("fits")
        };
        assert_eq!(prompt_tokens, 100);
        assert_eq!(meta.remaining_input_tokens, Some(9_900));
        assert_eq!(meta.remaining_output_tokens, Some(400));
        let Answer::Throttled {
            retry_after,
            too_large,
            meta,
        } = server.admit(0, &sent)
        else {
            panic!("600 more output tokens do not fit")
        };
        assert!(!too_large);
        // 200 tokens at 1 000 per minute: 12 s.
        assert_eq!(retry_after, Some(Duration::from_secs(12)));
        assert_eq!(meta.status, Some(429));
        server.complete(0, &sent, 100);
        assert!(matches!(server.admit(0, &sent), Answer::Admitted { .. }));
        let huge = Sent {
            max_tokens: 1_001,
            ..sent
        };
        assert!(matches!(
            server.admit(0, &huge),
            Answer::Throttled {
                too_large: true,
                retry_after: None,
                ..
            }
        ));
    }
}
