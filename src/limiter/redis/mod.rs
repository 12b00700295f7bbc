//! Process- and machine-wide limits through Redis: the [`RateLimiter`] contract with its
//! state in Redis, so every worker process and every machine spends one shared quota.
//!
//! Why it is built this way:
//! - **One script, one round trip.** Every strategy (token bucket, GCRA, sliding-window
//!   log, sliding-window counter; a leaky bucket runs as GCRA with zero tolerance) is Lua
//!   in `lua/limiter.lua`. A `try_acquire` checks every dimension of the key and the
//!   key's shared pause, and commits to all dimensions or none, in one call: `FCALL` of
//!   the script loaded as a function library (Redis ≥ 7), else `EVALSHA` (see
//!   [`RedisSettings::functions`]); the script is loaded again when the server lost it
//!   (`Function not found`, `NOSCRIPT`).
//! - **Concurrent attempts share a call.** One process's concurrent admission attempts on
//!   one key (`try_acquire`, [`RedisLimiter::decide`], `acquire`'s head waiter) are
//!   coalesced: at most one admission call per key is in flight; whoever arrives meanwhile
//!   joins the next call, which decides every waiting attempt in order, each all-or-nothing
//!   and answered with its own exact wait, refusing dimension and server time — the
//!   outcomes of a sequential run at that instant. An uncontended caller goes alone at
//!   once. One key's Redis keys share a hash slot, so a batch is valid on Redis Cluster.
//!   [`RedisLimiter::admission_calls`] counts calls and attempts.
//! - **Cheap per call.** Redis runs scripts on its one thread, so the script's CPU per
//!   call bounds every process's throughput: numbers travel and rest as packed doubles
//!   (no decimal printing and parsing), a key's scalar state is one string read with
//!   `GET` and written with `SET … PX` (no separate `PEXPIRE`), and as a function library
//!   the helpers and the parsed plans are built once instead of on every call.
//! - **Redis's clock, never the client's.** The script reads `TIME`; client clocks only
//!   time the client's own waits, so a skewed machine cannot spend more than its share.
//!   Server time has microsecond resolution: waits are exact to the microsecond (denied
//!   one µs before `retry_after`, admitted at it).
//! - **Exact integers.** Bucket levels are kept in scaled units (`window_µs / gcd` per
//!   token, refill `amount / gcd` per µs), so non-integer rates stay exact in Lua's
//!   doubles; limits too large for that are refused at connect.
//! - **Same meaning as the in-memory limiter.** Limits come from
//!   [`LimiterConfig::config_for`] and [`RateLimitConfig::dimensions`](crate::limiter::RateLimitConfig::dimensions); reconciliation,
//!   pauses and server-reported remaining counts behave as documented on the trait.
//! - **Failure is a policy** ([`FailurePolicy`]): every call is bounded by a timeout, a
//!   failed Redis is probed once per probe interval, and in between calls deny, admit, or
//!   run on an in-process limiter, without waiting on the dead server.
//! - **Connected now or on first use.** [`RedisLimiter::connect`] reaches Redis at once
//!   (and fails under `fail_closed` when it cannot); [`RedisLimiter::lazy`] builds in
//!   synchronous code, outside a runtime, and connects on the first call (the hub's
//!   synchronous constructors use it). Either way later outages follow the policy.
//! - **No busy polling.** `acquire` queues FIFO per key in this process; only the head
//!   waiter calls Redis, and it sleeps (through the injected [`Clock`]) for the returned
//!   `retry_after` plus jitter.
//!
//! Strategy notes (what differs from, or is not obvious in, the in-memory strategies):
//! - **token bucket / GCRA**: identical arrival curve (any interval `t` admits at most
//!   `burst + rate · t`); GCRA keeps its theoretical arrival time as whole µs plus a
//!   remainder in `1/rate` µs, so it is exact too.
//! - **leaky bucket**: mapped to GCRA with zero tolerance — a request is admitted only when
//!   the previous schedule has drained, then holds the next `cost · window / amount`; for
//!   unit costs this is GCRA with burst 1. Capacity is the window's amount. There is no
//!   queue that schedules ahead in Redis: `acquire` waits for the returned slot instead.
//! - **sliding-window log**: one ZSET entry `(time, cost)` per admission; a refund or an
//!   extra charge rewrites the permit's own entry (found by its sequence number) while it
//!   is in the window; after-the-fact charges without an entry are added at `now`.
//! - **sliding-window counter**: fixed windows aligned to multiples of the window on
//!   Redis's clock; estimate `prev · (W − e) / W + cur`. Each fixed window admits at most
//!   the amount; a sliding window of length `W` can admit up to (not including) twice the
//!   amount (`prev` packed at the end of its window, weighted almost to zero). Refunds go
//!   to the window the permit was admitted in.
//! - **concurrency**: a ZSET of leases per key, released by `record_usage` (in the same
//!   round trip) or by dropping the permit (a spawned call); a lease of a process that died
//!   expires after `lease_ttl`. When every slot is taken, `retry_after` is the earliest lease
//!   expiry capped at `concurrency_retry`: slots freed elsewhere are found by asking again.
//!
//! Keys: `<prefix>:{<provider>/<model>[/<deployment>]}` (a string: the key's scalar state,
//! packed; a key of another type left by an older version is read as absent and
//! replaced) and `…:<strategy>:<dimension>` (a sorted set for sliding-log entries and
//! concurrency leases). The braces are a Redis Cluster hash tag: one key's state lives on
//! one node, so the limiter runs unchanged on Redis Cluster ([`RedisSettings::cluster`]),
//! each call going to the node that owns its key's slot. Every key expires after `idle_ttl` without writes (never sooner than two
//! windows).

mod api;
mod batch;
mod link;
mod ops;
mod plan;
mod ticket;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::Clock;
use crate::limiter::config::{ConfigError, LimiterConfig};
use crate::limiter::keyed::KeyedLimiter;
use crate::limiter::{Cost, Denial, LimitKey, Permit, RateLimiter};

pub use crate::limiter::backend::{FailurePolicy, RedisSettings, SettingsError};
pub use link::RedisFailure;

use link::Link;
use ops::Change;
use plan::KeyPlan;
use ticket::KeyLocal;

/// Why [`RedisLimiter::connect`] failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConnectError {
    /// The Redis settings are out of range.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A key's limits cannot run on Redis (or are invalid).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The URL is not a Redis URL the client understands.
    #[error("invalid redis url {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Redis did not answer at connect and the policy is `fail_closed`.
    #[error("redis at {url} unreachable: {reason}")]
    Unreachable {
        /// The URL as given.
        url: String,
        /// What failed.
        reason: String,
    },
    /// `local_fallback` was asked for without a local limiter to fall back to.
    #[error("failure_policy = \"local_fallback\" needs a local limiter")]
    NoFallback,
}

/// A try-acquire decision and the Redis time at which it was made.
#[derive(Debug)]
pub struct Decision {
    /// The permit, or why not.
    pub outcome: Result<Permit, Denial>,
    /// Redis's clock when the script decided, µs since the Unix epoch; `None` when Redis
    /// did not decide (capacity check, failure policy, queued waiters).
    pub server_time_us: Option<i64>,
}

/// The Redis-backed [`RateLimiter`]. Cheap to share through an `Arc`; one per process is
/// enough (it multiplexes one connection).
#[derive(Debug, Clone)]
pub struct RedisLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: LimiterConfig,
    settings: RedisSettings,
    clock: Arc<dyn Clock>,
    link: Link,
    local: Option<Arc<dyn RateLimiter>>,
    keys: Mutex<HashMap<LimitKey, Arc<KeyEntry>>>,
    /// Client-clock time of the last fail-open warning.
    last_open_warning: AtomicU64,
}

#[derive(Debug)]
struct KeyEntry {
    plan: KeyPlan,
    local: Arc<KeyLocal>,
    /// Coalesces this process's concurrent admission attempts on the key.
    batch: batch::Batcher,
}

impl RedisLimiter {
    /// Connects with `config`'s limits and `settings`, reading client time (for waits
    /// only) from `clock`. Under `local_fallback` the fallback is an in-memory
    /// [`KeyedLimiter`] with the same config and clock. See
    /// [`connect_with_local`](Self::connect_with_local) for what is checked.
    pub async fn connect(
        config: LimiterConfig,
        settings: RedisSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConnectError> {
        let local = Self::fallback_for(&config, &settings, &clock)?;
        Self::connect_with_local(config, settings, clock, local).await
    }

    /// Builds the limiter without reaching Redis, so it can be made in synchronous code
    /// and outside a runtime: the first call (inside a tokio runtime) connects and loads
    /// the script, bounded by the configured timeout; a Redis that does not answer then
    /// gets the failure policy, as any later outage does (`fail_closed` denies naming the
    /// failure). Checks what [`connect_with_local`](Self::connect_with_local) checks
    /// before it calls Redis; under `local_fallback` the fallback is an in-memory
    /// [`KeyedLimiter`] with the same config and clock.
    pub fn lazy(
        config: LimiterConfig,
        settings: RedisSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConnectError> {
        let local = Self::fallback_for(&config, &settings, &clock)?;
        Self::prepare(config, settings, clock, local)
    }

    /// Checks that one rule's `limit` can run on Redis under `settings`: valid, and small
    /// enough for the script's exact arithmetic. [`connect`](Self::connect) and [`lazy`](Self::lazy)
    /// check every rule this way; a caller can check one rule to name it in an error.
    pub fn check_rule(
        limit: &crate::limiter::RateLimitConfig,
        settings: &RedisSettings,
    ) -> Result<(), ConfigError> {
        KeyPlan::new(&LimitKey::new("*", "*"), Some(limit), settings).map(drop)
    }

    /// The in-memory limiter `local_fallback` switches to; `None` under other policies.
    fn fallback_for(
        config: &LimiterConfig,
        settings: &RedisSettings,
        clock: &Arc<dyn Clock>,
    ) -> Result<Option<Arc<dyn RateLimiter>>, ConnectError> {
        Ok(match settings.failure_policy {
            FailurePolicy::LocalFallback => {
                Some(Arc::new(KeyedLimiter::new(config.clone(), clock.clone())?)
                    as Arc<dyn RateLimiter>)
            }
            _ => None,
        })
    }

    /// Connects with `config`'s limits and `settings`; `local` is the in-process limiter
    /// (same config and clock) that `local_fallback` switches to. Checks every key rule
    /// against what the script can keep exact, and loads the script. When Redis does not
    /// answer, fails with [`ConnectError::Unreachable`] under `fail_closed`; under the other
    /// policies it starts in the failed state and probes Redis as calls come.
    pub async fn connect_with_local(
        config: LimiterConfig,
        settings: RedisSettings,
        clock: Arc<dyn Clock>,
        local: Option<Arc<dyn RateLimiter>>,
    ) -> Result<Self, ConnectError> {
        let limiter = Self::prepare(config, settings, clock, local)?;
        let settings = &limiter.inner.settings;
        if let Err(e) = limiter.inner.link.load_script().await {
            if settings.failure_policy == FailurePolicy::FailClosed {
                return Err(ConnectError::Unreachable {
                    url: settings.url.clone(),
                    reason: e.to_string(),
                });
            }
            tracing::warn!(url = %settings.url, error = %e,
                policy = ?settings.failure_policy, "redis unreachable at start");
        }
        Ok(limiter)
    }

    /// The limiter, checked and not connected: the settings, every rule against what the
    /// script can keep exact, the fallback's presence, the URL.
    fn prepare(
        config: LimiterConfig,
        settings: RedisSettings,
        clock: Arc<dyn Clock>,
        local: Option<Arc<dyn RateLimiter>>,
    ) -> Result<Self, ConnectError> {
        settings.validate()?;
        for limit in config
            .keys
            .iter()
            .map(|r| &r.limit)
            .chain(config.default.as_ref())
        {
            Self::check_rule(limit, &settings)?;
        }
        if settings.failure_policy == FailurePolicy::LocalFallback && local.is_none() {
            return Err(ConnectError::NoFallback);
        }
        let link = Link::new(
            &settings.url,
            settings.timeout,
            settings.probe_interval,
            clock.clone(),
            settings.functions,
            settings.cluster,
        )
        .map_err(|e| ConnectError::Url {
            url: settings.url.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                settings,
                clock,
                link,
                local,
                keys: Mutex::new(HashMap::new()),
                last_open_warning: AtomicU64::new(0),
            }),
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &RedisSettings {
        &self.inner.settings
    }

    /// How many times the script was loaded again after Redis had lost it (`Function not
    /// found`, `NOSCRIPT`: a flush, a restart without persistence, a failover).
    pub fn script_reloads(&self) -> u64 {
        self.inner.link.reloads()
    }

    /// Whether the script is called as a function (`FCALL`, Redis ≥ 7) rather than with
    /// `EVALSHA`.
    pub fn uses_functions(&self) -> bool {
        self.inner.link.uses_functions()
    }

    /// Admission script calls this limiter sent and the admission attempts they decided,
    /// over every key so far: concurrent attempts on one key share a call (see the module
    /// doc), so `attempts / calls` is the mean batch size.
    pub fn admission_calls(&self) -> (u64, u64) {
        self.inner
            .keys
            .lock()
            .values()
            .map(|e| e.batch.counts())
            .fold((0, 0), |(c, a), (dc, da)| (c + dc, a + da))
    }

    /// Whether the last Redis call failed (calls apply the failure policy until a probe
    /// succeeds).
    pub fn is_degraded(&self) -> bool {
        self.inner.link.is_down()
    }

    /// [`try_acquire`](RateLimiter::try_acquire) that also reports the Redis time of the
    /// decision (for admission logs that must share one clock across processes).
    pub async fn decide(&self, key: &LimitKey, estimate: Cost) -> Decision {
        let entry = match self.inner.entry(key) {
            Ok(e) => e,
            Err(outcome) => {
                return Decision {
                    outcome: Err(outcome),
                    server_time_us: None,
                }
            }
        };
        if entry.local.waiters.load(Ordering::Acquire) > 0 {
            if let Some(denial) = self.inner.queued_denial(&entry) {
                return Decision {
                    outcome: Err(denial),
                    server_time_us: None,
                };
            }
        }
        self.inner
            .admit(&entry, estimate, true, Duration::ZERO)
            .await
    }
}

impl Inner {
    /// The key's plan and local state, resolved on first use.
    fn entry(&self, key: &LimitKey) -> Result<Arc<KeyEntry>, Denial> {
        if let Some(e) = self.keys.lock().get(key) {
            return Ok(e.clone());
        }
        let plan = KeyPlan::new(key, self.config.config_for(key), &self.settings).map_err(|e| {
            Denial::Unavailable {
                reason: e.to_string(),
            }
        })?;
        let entry = Arc::new(KeyEntry {
            plan,
            local: Arc::new(KeyLocal::default()),
            batch: batch::Batcher::default(),
        });
        Ok(self.keys.lock().entry(key.clone()).or_insert(entry).clone())
    }

    /// The head waiter's denial, its wait shortened by the time since, while it lasts.
    fn queued_denial(&self, entry: &KeyEntry) -> Option<Denial> {
        let (denial, until) = entry.local.head.lock().clone()?;
        let left = Duration::from_nanos(until.checked_sub(self.clock.now())?);
        if left.is_zero() {
            return None;
        }
        Some(match denial {
            Denial::Wait { dimension, .. } => Denial::Wait {
                dimension,
                retry_after: left,
            },
            Denial::Paused { .. } => Denial::Paused { retry_after: left },
            other => other,
        })
    }
}
