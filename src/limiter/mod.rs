//! The unified rate limiter: one provider-agnostic contract for every provider, strategy
//! and backend.
//!
//! A caller asks [`RateLimiter::acquire`] before a request with an estimate of what it
//! costs (one request plus its tokens), sends the request, then hands the [`Permit`] back to
//! [`RateLimiter::record_usage`] with the actual usage and whatever the server reported in
//! its headers ([`ResponseMeta`]). On an error it asks [`RateLimiter::backoff_delay`] how
//! long to wait. No provider name, error type, header name or limit value appears here:
//! limits come from [`config`], headers are turned into [`ResponseMeta`] by the provider
//! layer's header profiles (`provider::headers`), and errors reach the limiter as neutral [`ErrorInfo`].
//!
//! Threads and tasks share one limiter through an `Arc`; processes and machines share one
//! through the Redis backend.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Nanos;

pub mod algorithm;
pub mod backend;
pub mod backoff;
pub mod config;
pub mod conformance;
pub mod gcra;
pub mod invariants;
pub mod keyed;
pub mod leaky_bucket;
pub mod lease;
pub mod meta;
pub mod multi;
mod params;
pub mod redis;
pub mod sliding_counter;
pub mod sliding_log;
pub mod token_bucket;

pub use backoff::{BackoffConfig, BackoffStrategy, ErrorInfo};
pub use config::{
    Backend, ChargeAt, ChargeTime, ConfigError, KeyRule, Limit, LimiterConfig, Limits,
    RateLimitConfig, RateLimitType, Refund, Strategy, TokenAccounting, Unit,
};
pub use keyed::{KeyHandle, KeyedLimiter};
pub use meta::ResponseMeta;

/// What one request costs, in every unit a limit can count: requests, total tokens, and —
/// when the caller knows the split — input (prompt) and output (completion) tokens.
///
/// `tokens` is what total-token dimensions (`tpm`, `tokens`) count. `input_tokens` and
/// `output_tokens` are what input- and output-token dimensions (`itpm`, `otpm`, …) count;
/// `None` means the split is unknown, and such a dimension then counts the whole `tokens`
/// (an upper bound: never more permissive than the truth). [`Cost::with_split`] sets both
/// parts and keeps `total = input + output`; a caller that builds the struct by hand may
/// count a total apart from its parts (e.g. cached input counted in the total only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Cost {
    /// Requests (1 for one API call).
    pub requests: u64,
    /// Tokens (prompt estimate + `max_tokens` × `n` before the call; actual usage after).
    pub tokens: u64,
    /// Input tokens (the prompt estimate before the call; actual prompt usage after);
    /// `None` = unknown, counted as `tokens` by input-token dimensions.
    pub input_tokens: Option<u64>,
    /// Output tokens (`max_tokens` × `n` before the call; actual completion usage after);
    /// `None` = unknown, counted as `tokens` by output-token dimensions.
    pub output_tokens: Option<u64>,
}

impl Cost {
    /// Nothing.
    pub const ZERO: Cost = Cost {
        requests: 0,
        tokens: 0,
        input_tokens: None,
        output_tokens: None,
    };

    /// One request carrying `tokens` tokens (split unknown).
    pub fn request(tokens: u64) -> Self {
        Self {
            requests: 1,
            tokens,
            ..Self::ZERO
        }
    }

    /// Tokens only, no request (e.g. usage reported after the fact; split unknown).
    pub fn tokens(tokens: u64) -> Self {
        Self {
            tokens,
            ..Self::ZERO
        }
    }

    /// The same cost with its tokens split into `input` and `output` tokens; the total
    /// `tokens` becomes `input + output` (saturating).
    pub fn with_split(self, input: u64, output: u64) -> Self {
        Self {
            tokens: input.saturating_add(output),
            input_tokens: Some(input),
            output_tokens: Some(output),
            ..self
        }
    }

    /// Input tokens as input-token dimensions count them: the known part, else `tokens`.
    pub fn input(&self) -> u64 {
        self.input_tokens.unwrap_or(self.tokens)
    }

    /// Output tokens as output-token dimensions count them: the known part, else `tokens`.
    pub fn output(&self) -> u64 {
        self.output_tokens.unwrap_or(self.tokens)
    }

    /// What a dimension counting in `unit` counts of this cost.
    pub fn in_unit(&self, unit: Unit) -> u64 {
        match unit {
            Unit::Requests => self.requests,
            Unit::Tokens => self.tokens,
            Unit::InputTokens => self.input(),
            Unit::OutputTokens => self.output(),
        }
    }

    /// Whether it counts nothing in any unit.
    pub fn is_zero(&self) -> bool {
        Unit::ALL.iter().all(|&u| self.in_unit(u) == 0)
    }
}

/// The identity that limits apply to: provider + model, optionally a deployment (Azure) or
/// tenant. Cheap to clone (shared strings).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LimitKey {
    /// Provider id as configured, e.g. `"openai"`; the limiter attaches no meaning to it.
    pub provider: Arc<str>,
    /// Model name; `"*"` when the limit is per provider only.
    pub model: Arc<str>,
    /// Deployment or tenant, when limits are per deployment.
    pub deployment: Option<Arc<str>>,
}

impl LimitKey {
    /// A key for `provider` and `model`.
    pub fn new(provider: impl Into<Arc<str>>, model: impl Into<Arc<str>>) -> Self {
        Self {
            provider: provider.into(),
            model: model.into(),
            deployment: None,
        }
    }

    /// A key for a whole provider (model `"*"`), as the hub specification's
    /// `check_limit(provider)` uses.
    pub fn provider(provider: impl Into<Arc<str>>) -> Self {
        Self::new(provider, "*")
    }

    /// The same key, narrowed to one deployment or tenant.
    pub fn with_deployment(mut self, deployment: impl Into<Arc<str>>) -> Self {
        self.deployment = Some(deployment.into());
        self
    }
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider, self.model)?;
        if let Some(d) = &self.deployment {
            write!(f, "/{d}")?;
        }
        Ok(())
    }
}

/// Proof that a request was admitted. Hand it back to [`RateLimiter::record_usage`] after
/// the response; dropping it instead keeps the charge (and frees any concurrency slot).
///
/// A permit of the in-memory limiter carries its key's state (the handle the admission
/// went through), not a copy of the key: `record_usage` then finds the state without a
/// lookup, and the permit's end is counted there without an allocation.
pub struct Permit {
    key: PermitKey,
    charged: Cost,
    admitted_at: Nanos,
    waited: Duration,
    /// Released (dropped) when the permit is recorded or dropped: a concurrency slot, or
    /// the lease a leased permit spent (see [`lease`]).
    guard: Option<Box<dyn std::any::Any + Send + Sync>>,
    /// Reconciled to the actual usage whatever the key's accounting: a lease given back.
    exact: bool,
}

/// What a permit knows its key by.
enum PermitKey {
    /// The key itself (the Redis backend; `update_usage`'s permit of nothing).
    Key(LimitKey),
    /// The owner of the key's state, which knows the key and is told when the permit ends.
    Held(Held),
}

/// The state a permit was admitted on, as the in-memory limiter keeps it: knows its key and
/// is told when a permit ends — recorded or dropped, whichever comes first, exactly once —
/// which is how it counts permits in flight and frees concurrency slots. Held as a shared
/// `Arc` (one reference count per permit, no allocation).
pub(crate) trait PermitOwner: Send + Sync + std::any::Any {
    /// The key the state belongs to.
    fn key(&self) -> &LimitKey;

    /// One permit of this owner (one that counts: of at least one request) has ended.
    fn permit_ended(&self);
}

/// A permit's owner; tells it when dropped with its permit, if the permit counts.
struct Held {
    owner: Arc<dyn PermitOwner>,
    counted: bool,
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.counted {
            self.owner.permit_ended();
        }
    }
}

impl Permit {
    /// A permit for `charged` on `key`, admitted at `admitted_at` after waiting `waited`.
    pub(crate) fn new(key: LimitKey, charged: Cost, admitted_at: Nanos, waited: Duration) -> Self {
        Self {
            key: PermitKey::Key(key),
            charged,
            admitted_at,
            waited,
            guard: None,
            exact: false,
        }
    }

    /// A permit held on `owner`'s state; `owner` is told once when it is recorded or
    /// dropped if `counted`.
    pub(crate) fn held(
        owner: Arc<dyn PermitOwner>,
        counted: bool,
        charged: Cost,
        admitted_at: Nanos,
        waited: Duration,
    ) -> Self {
        Self {
            key: PermitKey::Held(Held { owner, counted }),
            charged,
            admitted_at,
            waited,
            guard: None,
            exact: false,
        }
    }

    /// Attaches a guard that is dropped with the permit (e.g. to return a concurrency slot).
    pub(crate) fn with_guard(mut self, guard: Box<dyn std::any::Any + Send + Sync>) -> Self {
        self.guard = Some(guard);
        self
    }

    /// The same permit, reconciled by `record_usage` to the actual usage whatever the key's
    /// [`TokenAccounting`]: a lease's slice given back (what it did not spend is not a
    /// provider's charge).
    pub(crate) fn exact(mut self) -> Self {
        self.exact = true;
        self
    }

    /// Whether it is [`exact`](Self::exact).
    pub(crate) fn is_exact(&self) -> bool {
        self.exact
    }

    /// How `record_usage` reconciles this permit: `accounting`, unless it is [`exact`](Self::exact).
    pub(crate) fn accounting(&self, accounting: TokenAccounting) -> TokenAccounting {
        if self.exact {
            TokenAccounting::Actual
        } else {
            accounting
        }
    }

    /// The state the permit is held on, for the limiter that made it.
    pub(crate) fn owner(&self) -> Option<&dyn PermitOwner> {
        match &self.key {
            PermitKey::Held(held) => Some(&*held.owner),
            PermitKey::Key(_) => None,
        }
    }

    /// The key the permit was admitted on.
    pub fn key(&self) -> &LimitKey {
        match &self.key {
            PermitKey::Key(key) => key,
            PermitKey::Held(held) => held.owner.key(),
        }
    }

    /// What was charged at admission: the estimate, with the token units the key charges at
    /// usage set to zero ([`ChargeAt::admission_cost`]).
    pub fn charged(&self) -> Cost {
        self.charged
    }

    /// When it was admitted, on the limiter's clock.
    pub fn admitted_at(&self) -> Nanos {
        self.admitted_at
    }

    /// How long `acquire` waited for it (zero for `try_acquire`).
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counted = matches!(&self.key, PermitKey::Held(h) if h.counted);
        f.debug_struct("Permit")
            .field("key", self.key())
            .field("charged", &self.charged)
            .field("admitted_at", &self.admitted_at)
            .field("waited", &self.waited)
            .field("guarded", &(self.guard.is_some() || counted))
            .finish()
    }
}

/// Why [`RateLimiter::try_acquire`] did not admit: data, with the exact wait where there is
/// one. "Not now" ([`Wait`](Self::Wait), [`Paused`](Self::Paused)) is kept apart from
/// "never" ([`Exceeds`](Self::Exceeds)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// `dimension` refused; every dimension admits the estimate after exactly `retry_after`
    /// if nothing else is admitted meanwhile (still refused just before it).
    Wait {
        /// The dimension that refused (the one with the longest wait).
        dimension: RateLimitType,
        /// The exact time until the estimate fits.
        retry_after: Duration,
    },
    /// The key is paused by a server-reported retry-after or a 429.
    Paused {
        /// Time until the pause ends.
        retry_after: Duration,
    },
    /// The estimate can never fit: it is larger than the dimension's capacity.
    Exceeds {
        /// The dimension whose capacity is too small.
        dimension: RateLimitType,
        /// The estimate's cost in that dimension's unit.
        cost: u64,
        /// The dimension's capacity (bucket size or window amount).
        capacity: u64,
    },
    /// Every concurrency slot is taken: retry when a permit is recorded or dropped.
    Saturated {
        /// Permits in flight (= the `Concurrent` limit).
        in_flight: u64,
    },
    /// `acquire` waiters are queued ahead (FIFO); `try_acquire` does not jump the queue.
    Queued {
        /// How many wait.
        waiting: usize,
    },
    /// The limiter could not decide (a shared backend is unreachable and the failure
    /// policy is to deny).
    Unavailable {
        /// What failed.
        reason: String,
    },
}

impl Denial {
    /// The time after which trying again can succeed; `None` for never / unknown.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Wait { retry_after, .. } | Self::Paused { retry_after } => Some(*retry_after),
            Self::Exceeds { .. }
            | Self::Saturated { .. }
            | Self::Queued { .. }
            | Self::Unavailable { .. } => None,
        }
    }

    /// The refusing dimension, where one refused.
    pub fn dimension(&self) -> Option<RateLimitType> {
        match self {
            Self::Wait { dimension, .. } | Self::Exceeds { dimension, .. } => Some(*dimension),
            Self::Saturated { .. } => Some(RateLimitType::Concurrent),
            Self::Paused { .. } | Self::Queued { .. } | Self::Unavailable { .. } => None,
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Wait {
                dimension,
                retry_after,
            } => write!(f, "{dimension} exhausted; retry after {retry_after:?}"),
            Self::Paused { retry_after } => {
                write!(f, "paused by the server; retry after {retry_after:?}")
            }
            Self::Exceeds {
                dimension,
                cost,
                capacity,
            } => write!(
                f,
                "cost {cost} can never fit {dimension} (capacity {capacity})"
            ),
            Self::Saturated { in_flight } => {
                write!(f, "all {in_flight} concurrency slots are in use")
            }
            Self::Queued { waiting } => write!(f, "{waiting} requests are queued ahead"),
            Self::Unavailable { reason } => write!(f, "limiter unavailable: {reason}"),
        }
    }
}

/// Why [`RateLimiter::acquire`] (or another call) failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitError {
    /// The estimate can never fit the dimension; waiting would hang forever.
    #[error("request on {key} costing {cost} can never fit {dimension}: capacity is {capacity}")]
    Exceeds {
        /// The key.
        key: LimitKey,
        /// The dimension whose capacity is too small.
        dimension: RateLimitType,
        /// The estimate's cost in that dimension's unit.
        cost: u64,
        /// The dimension's capacity.
        capacity: u64,
    },
    /// `acquire` would have waited longer than the configured `max_wait`.
    #[error("request on {key} would wait {needed:?}, longer than max_wait {max_wait:?}")]
    Timeout {
        /// The key.
        key: LimitKey,
        /// The wait the request needed when it gave up (at least).
        needed: Duration,
        /// The configured limit.
        max_wait: Duration,
    },
    /// Too many requests already wait on the key.
    #[error("request on {key} refused: {waiting} requests already wait (max_waiters)")]
    QueueFull {
        /// The key.
        key: LimitKey,
        /// How many wait.
        waiting: usize,
    },
    /// A shared backend failed and the failure policy is to deny.
    #[error("limiter backend unavailable for {key}: {reason}")]
    Unavailable {
        /// The key.
        key: LimitKey,
        /// What failed.
        reason: String,
    },
    /// A call that answers at once ([`RateLimiter::check_limit`]) was refused for now:
    /// the denial says why and, where there is one, the exact wait (e.g. `Wait` with the
    /// refusing dimension and `retry_after`).
    #[error("request on {key} denied now: {denial}")]
    Denied {
        /// The key.
        key: LimitKey,
        /// Why, with the refusing dimension and the wait where there is one.
        denial: Denial,
    },
}

impl LimitError {
    /// The error for a [`Denial`] that `acquire` cannot wait out (`Exceeds`, `Unavailable`);
    /// `None` for denials that only mean "not yet".
    pub fn from_denial(key: &LimitKey, denial: &Denial) -> Option<Self> {
        match denial {
            Denial::Exceeds {
                dimension,
                cost,
                capacity,
            } => Some(Self::Exceeds {
                key: key.clone(),
                dimension: *dimension,
                cost: *cost,
                capacity: *capacity,
            }),
            Denial::Unavailable { reason } => Some(Self::Unavailable {
                key: key.clone(),
                reason: reason.clone(),
            }),
            Denial::Wait { .. }
            | Denial::Paused { .. }
            | Denial::Saturated { .. }
            | Denial::Queued { .. } => None,
        }
    }
}

/// How one dimension of a key stands now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimensionUsage {
    /// The dimension.
    pub dimension: RateLimitType,
    /// Its capacity (bucket size / window amount / slots).
    pub capacity: u64,
    /// What could be admitted now, in the dimension's unit.
    pub remaining: u64,
    /// Time until the dimension is back to full capacity if nothing more is admitted.
    pub reset_after: Duration,
}

/// A snapshot of a key's state, for monitoring and for choosing the provider with the
/// most headroom.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageStats {
    /// One entry per configured dimension; empty for an unlimited key.
    pub dimensions: Vec<DimensionUsage>,
    /// Permits admitted and not yet recorded or dropped.
    pub in_flight: u64,
    /// Requests admitted since the key was created or reset.
    pub admitted: u64,
    /// `try_acquire` refusals (and `acquire` failures) since then.
    pub denied: u64,
    /// Net tokens charged (estimates, reconciled with actual usage) since then.
    pub tokens_charged: u64,
    /// Time left of a server-imposed pause, if the key is paused.
    pub paused_for: Option<Duration>,
}

impl UsageStats {
    /// Requests that could be admitted now: the smallest remaining over request dimensions
    /// (`None` when no request dimension is configured).
    pub fn requests_remaining(&self) -> Option<u64> {
        self.remaining_in(Unit::Requests)
    }

    /// Tokens that could be admitted now (`None` when no token dimension is configured).
    pub fn tokens_remaining(&self) -> Option<u64> {
        self.remaining_in(Unit::Tokens)
    }

    /// Input tokens that could be admitted now (`None` when no input-token dimension is
    /// configured).
    pub fn input_tokens_remaining(&self) -> Option<u64> {
        self.remaining_in(Unit::InputTokens)
    }

    /// Output tokens that could be admitted now (`None` when no output-token dimension is
    /// configured).
    pub fn output_tokens_remaining(&self) -> Option<u64> {
        self.remaining_in(Unit::OutputTokens)
    }

    /// How many more requests costing `cost` each could be admitted now: the smallest
    /// `remaining / part` over the rate dimensions, each dividing by the part of `cost` it
    /// counts (at least 1); `None` when no rate dimension is configured.
    pub fn admissions_left(&self, cost: Cost) -> Option<u64> {
        self.dimensions
            .iter()
            .filter(|d| d.dimension != RateLimitType::Concurrent)
            .map(|d| d.remaining / d.dimension.cost_of(cost).max(1))
            .min()
    }

    /// Time until every dimension is full again.
    pub fn reset_after(&self) -> Duration {
        self.dimensions
            .iter()
            .map(|d| d.reset_after)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    fn remaining_in(&self, unit: Unit) -> Option<u64> {
        self.dimensions
            .iter()
            .filter(|d| d.dimension.unit() == unit && d.dimension != RateLimitType::Concurrent)
            .map(|d| d.remaining)
            .min()
    }
}

/// What `record_usage` did with one permit: the reconciliation, for logs and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// The key.
    pub key: LimitKey,
    /// Tokens charged at admission.
    pub estimated_tokens: u64,
    /// Tokens actually used, as reported.
    pub actual_tokens: u64,
    /// Tokens given back (positive) or charged on top (negative) by the reconciliation.
    pub refunded_tokens: i64,
    /// When the permit was admitted, on the limiter's clock.
    pub admitted_at: Nanos,
    /// When the usage was recorded, on the limiter's clock.
    pub recorded_at: Nanos,
    /// The pause applied to the key because the server reported a retry-after, if any.
    pub paused_for: Option<Duration>,
}

/// The unified limiter contract. Implementations: the in-memory keyed limiter and the
/// Redis-backed one; both are `Send + Sync` and meant to be shared through an `Arc`.
#[async_trait]
pub trait RateLimiter: Send + Sync + fmt::Debug {
    /// Waits (FIFO per key, cancellation-safe: dropping the future gives its place back)
    /// until every dimension admits `estimate` all-or-nothing. Fails at once with
    /// [`LimitError::Exceeds`] when the estimate can never fit, with
    /// [`LimitError::Timeout`] when the wait would exceed `max_wait`, with
    /// [`LimitError::QueueFull`] past `max_waiters`.
    async fn acquire(&self, key: &LimitKey, estimate: Cost) -> Result<Permit, LimitError>;

    /// Admits `estimate` now or refuses with the refusing dimension and the exact wait.
    /// Never waits. Does not jump the queue: refuses while `acquire` waiters are queued.
    async fn try_acquire(&self, key: &LimitKey, estimate: Cost) -> Result<Permit, Denial>;

    /// Reconciles the permit's estimate with `actual` per the key's [`TokenAccounting`],
    /// frees its concurrency slot, and applies what the server reported in `meta`: a
    /// retry-after pauses the key; remaining counts below the local view lower it (the
    /// local view is never more permissive than the server's).
    async fn record_usage(
        &self,
        permit: Permit,
        actual: Cost,
        meta: &ResponseMeta,
    ) -> Result<UsageRecord, LimitError>;

    /// Gives an admission that was not used back whole: every unit `permit` charged is
    /// refunded, whatever the key's [`TokenAccounting`], and its concurrency slot freed —
    /// for a reservation taken together with others, all-or-nothing, when another one
    /// refused. The default records zero usage on the permit marked to reconcile exactly
    /// (whatever the accounting), which both built-in backends and the leased limiter honour.
    async fn give_back(&self, permit: Permit) -> Result<(), LimitError> {
        self.record_usage(permit.exact(), Cost::ZERO, &ResponseMeta::default())
            .await
            .map(drop)
    }

    /// The delay before retry number `attempt` (1 = first retry) after `error`, or `None`
    /// when the error is not retryable or the key's retry budget is spent. A server
    /// retry-after wins over the configured backoff; a rate-limit error pauses the whole
    /// key (all waiters) for the returned delay.
    async fn backoff_delay(
        &self,
        key: &LimitKey,
        attempt: u32,
        error: &ErrorInfo,
    ) -> Option<Duration>;

    /// The key's state now.
    async fn usage_stats(&self, key: &LimitKey) -> Result<UsageStats, LimitError>;

    /// Back to full capacity, no pause, counters zeroed.
    async fn reset(&self, key: &LimitKey) -> Result<(), LimitError>;

    /// Hub-specification name: admits one request on the provider-wide key
    /// ([`LimitKey::provider`]) now, as [`try_acquire`](Self::try_acquire) does, or answers
    /// at once why not — never waits. Admitted, the charge is kept (the permit is dropped).
    /// Refused for now (a dimension's wait, a pause, full slots, queued waiters):
    /// [`LimitError::Denied`] carrying the [`Denial`] (refusing dimension, exact wait).
    /// Never admissible: [`LimitError::Exceeds`]; a shared backend down under `fail_closed`:
    /// [`LimitError::Unavailable`] — as `acquire` would fail.
    async fn check_limit(&self, provider: &str) -> Result<(), LimitError> {
        let key = LimitKey::provider(provider);
        match self.try_acquire(&key, Cost::request(0)).await {
            Ok(permit) => {
                drop(permit);
                Ok(())
            }
            Err(denial) => Err(LimitError::from_denial(&key, &denial)
                .unwrap_or(LimitError::Denied { key, denial })),
        }
    }

    /// Hub-specification name: charges `tokens` used on the provider-wide key after the
    /// fact. No estimate was made, so all of it is charged, whatever the key's
    /// [`TokenAccounting`] (see [`TokenAccounting::reconcile`]), on every backend.
    async fn update_usage(&self, provider: &str, tokens: u64) -> Result<(), LimitError> {
        let key = LimitKey::provider(provider);
        let permit = Permit::new(key, Cost::ZERO, 0, Duration::ZERO);
        self.record_usage(permit, Cost::tokens(tokens), &ResponseMeta::default())
            .await
            .map(drop)
    }

    /// Hub-specification name: the provider-wide key's stats, `None` if they cannot be read.
    async fn get_usage(&self, provider: &str) -> Option<UsageStats> {
        self.usage_stats(&LimitKey::provider(provider)).await.ok()
    }
}

/// A limiter could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A limit or setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The Redis backend could not be set up.
    #[error("redis backend: {0}")]
    Redis(#[from] redis::ConnectError),
}

/// Builds the limiter `config` describes: in memory, or in Redis (`backend = "redis"`),
/// reading time from `clock`.
pub async fn build(
    config: LimiterConfig,
    clock: Arc<dyn crate::clock::Clock>,
) -> Result<Arc<dyn RateLimiter>, BuildError> {
    match (config.backend, config.redis.clone()) {
        (Backend::Redis, Some(settings)) => {
            let lease = settings.leased_capacity;
            let shared = Arc::new(
                redis::RedisLimiter::connect(config.clone(), settings, clock.clone()).await?,
            );
            Ok(leased(shared, config, lease, clock))
        }
        (Backend::Redis, None) => Err(ConfigError::Invalid {
            field: "backend",
            value: "redis".into(),
            reason: "needs a [redis] table with at least `url`",
        }
        .into()),
        (Backend::Memory, _) => Ok(Arc::new(KeyedLimiter::new(config, clock)?)),
    }
}

/// [`build`] without waiting, for synchronous code and outside a runtime: the Redis backend
/// is made with [`RedisLimiter::lazy`](redis::RedisLimiter::lazy) and connects on its
/// first call (a Redis that does not answer then gets the configured failure policy).
/// Fails only on configuration: settings or limits out of range, a bad URL, no `[redis]`
/// table with `backend = "redis"`.
pub fn build_lazy(
    config: LimiterConfig,
    clock: Arc<dyn crate::clock::Clock>,
) -> Result<Arc<dyn RateLimiter>, BuildError> {
    match (config.backend, config.redis.clone()) {
        (Backend::Redis, Some(settings)) => {
            let lease = settings.leased_capacity;
            let shared = Arc::new(redis::RedisLimiter::lazy(
                config.clone(),
                settings,
                clock.clone(),
            )?);
            Ok(leased(shared, config, lease, clock))
        }
        (Backend::Redis, None) => Err(ConfigError::Invalid {
            field: "backend",
            value: "redis".into(),
            reason: "needs a [redis] table with at least `url`",
        }
        .into()),
        (Backend::Memory, _) => Ok(Arc::new(KeyedLimiter::new(config, clock)?)),
    }
}

/// `shared`, or a [`LeasedLimiter`](lease::LeasedLimiter) over it when `lease` is set
/// (settings already validated with the Redis settings).
fn leased(
    shared: Arc<dyn RateLimiter>,
    config: LimiterConfig,
    lease: Option<lease::LeaseSettings>,
    clock: Arc<dyn crate::clock::Clock>,
) -> Arc<dyn RateLimiter> {
    match lease.map(|l| lease::LeasedLimiter::new(shared.clone(), config, l, clock)) {
        Some(Ok(leased)) => Arc::new(leased),
        // Validated with the Redis settings before the shared limiter was built.
        Some(Err(_)) | None => shared,
    }
}
