//! How the Redis limiter reaches Redis and what it does when Redis cannot answer.
//!
//! Kept apart from the limits themselves ([`LimiterConfig`](crate::limiter::LimiterConfig)):
//! the same limits run on the in-memory or the Redis backend, and only these settings
//! differ. They live outside [`redis`](super::redis) because the configuration holds them
//! (its `[redis]` table) and the Redis limiter reads the configuration: the configuration
//! depends on this module, never on the Redis limiter. [`redis`](super::redis) re-exports
//! them under their old paths.

use std::time::Duration;

use serde::Deserialize;

use crate::units::de_duration;

/// What the limiter does when a Redis call fails or times out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Deny: `try_acquire` returns `Denial::Unavailable`, the other calls
    /// `LimitError::Unavailable`, each naming what failed. The safe default: no request
    /// goes out without the shared quota's consent.
    #[default]
    FailClosed,
    /// Admit every request (and log a `tracing` warning when Redis is lost and while it
    /// stays lost): availability over the limit.
    FailOpen,
    /// Switch to an in-process limiter with the same config, and back to Redis once a probe
    /// call succeeds. The local limiter starts full: while Redis is away every process
    /// spends its own copy of the quota.
    LocalFallback,
}

/// Connection and behaviour settings of the Redis backend, as written in TOML:
///
/// ```toml
/// url = "redis://127.0.0.1:6379/0"
/// key_prefix = "hub:rl"
/// timeout = "250ms"
/// failure_policy = "local_fallback"
/// idle_ttl = "10m"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// The server, e.g. `redis://127.0.0.1:6379/0` (`rediss://` is not supported: the crate
    /// is built without TLS).
    pub url: String,
    /// Prefix of every key the limiter writes (`<prefix>:{<provider>/<model>[/<deployment>]}…`).
    /// Default `hub:rl`.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// Longest one Redis call (connect, script call) may take before it counts as failed.
    /// Default 250 ms.
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// What to do when Redis fails. Default `fail_closed`.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// A key's state expires after this long without a write. Never shorter than twice the
    /// key's longest window (nor a concurrency lease), whatever is written here, so expiry
    /// can only forget state that no longer limits anything. Default 10 min.
    #[serde(default = "default_idle_ttl", deserialize_with = "de_duration")]
    pub idle_ttl: Duration,
    /// After a failure, how long calls skip Redis (and apply the failure policy at once)
    /// before one call probes it again. Default 1 s.
    #[serde(default = "default_probe_interval", deserialize_with = "de_duration")]
    pub probe_interval: Duration,
    /// `acquire` sleeps for a denial's `retry_after` plus a random extra of up to this
    /// fraction of it, `[0, 1]`, so waiters in many processes do not call Redis in lockstep.
    /// Default 0.05.
    #[serde(default = "default_wait_jitter")]
    pub wait_jitter: f64,
    /// A concurrency slot held by a process that died is freed after this long. Default
    /// 10 min; must exceed the longest request.
    #[serde(default = "default_lease_ttl", deserialize_with = "de_duration")]
    pub lease_ttl: Duration,
    /// When every concurrency slot is taken, the denial's `retry_after` (slots are freed by
    /// other processes at unknown times): at most this long. Default 50 ms.
    #[serde(
        default = "default_concurrency_retry",
        deserialize_with = "de_duration"
    )]
    pub concurrency_retry: Duration,
    /// Load the limiter script as a function library and call it with `FCALL` when the
    /// server supports it (Redis ≥ 7; about half the Redis CPU per call of `EVALSHA`);
    /// servers without functions, or whose ACL refuses `FUNCTION LOAD`, get `EVALSHA`
    /// anyway. `false` = always `EVALSHA`. Default `true`.
    #[serde(default = "default_functions")]
    pub functions: bool,
    /// The server is a Redis Cluster: `url` lists seed nodes, comma-separated (e.g.
    /// `redis://10.0.0.1:7000,redis://10.0.0.2:7000`); calls go to the node owning the
    /// key's hash slot (every key of one limit key shares one slot, see the key layout in
    /// [`RedisLimiter`](crate::limiter::redis::RedisLimiter)) and the script is loaded on
    /// every primary. Default `false` (one server at `url`).
    #[serde(default)]
    pub cluster: bool,
    /// Opt-in leased capacity (`[redis.leased_capacity]`, not to be confused with
    /// `lease_ttl`'s concurrency leases): each process admits from slices of a key's
    /// capacity leased from Redis instead of one script call per request, with the
    /// overshoot bound stated in [`lease`](crate::limiter::lease). Default: none.
    #[serde(default)]
    pub leased_capacity: Option<crate::limiter::lease::LeaseSettings>,
}

fn default_prefix() -> String {
    "hub:rl".to_owned()
}
fn default_timeout() -> Duration {
    Duration::from_millis(250)
}
fn default_idle_ttl() -> Duration {
    Duration::from_secs(600)
}
fn default_probe_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_wait_jitter() -> f64 {
    0.05
}
fn default_lease_ttl() -> Duration {
    Duration::from_secs(600)
}
fn default_concurrency_retry() -> Duration {
    Duration::from_millis(50)
}
fn default_functions() -> bool {
    true
}

impl RedisSettings {
    /// Settings for `url` with every other field at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: default_prefix(),
            timeout: default_timeout(),
            failure_policy: FailurePolicy::default(),
            idle_ttl: default_idle_ttl(),
            probe_interval: default_probe_interval(),
            wait_jitter: default_wait_jitter(),
            lease_ttl: default_lease_ttl(),
            concurrency_retry: default_concurrency_retry(),
            functions: default_functions(),
            cluster: false,
            leased_capacity: None,
        }
    }

    /// The same settings for a Redis Cluster reached through `url`'s comma-separated seed
    /// nodes.
    pub fn clustered(mut self) -> Self {
        self.cluster = true;
        self
    }

    /// The same settings with `policy` as the failure policy.
    pub fn with_failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }

    /// The same settings with `prefix` as the key prefix.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Parses settings from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, SettingsError> {
        let s: Self = toml::from_str(text).map_err(|e| SettingsError::Toml(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    /// Checks the ranges documented on each field.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let bad = |field, value: String, reason| SettingsError::Invalid {
            field,
            value,
            reason,
        };
        if self.timeout.is_zero() {
            return Err(bad("timeout", "0".into(), "must be longer than zero"));
        }
        if !(0.0..=1.0).contains(&self.wait_jitter) {
            return Err(bad(
                "wait_jitter",
                self.wait_jitter.to_string(),
                "must be in [0, 1]",
            ));
        }
        if self.lease_ttl.is_zero() {
            return Err(bad("lease_ttl", "0".into(), "must be longer than zero"));
        }
        if self.key_prefix.is_empty() {
            return Err(bad("key_prefix", "\"\"".into(), "must not be empty"));
        }
        if let Some(lease) = &self.leased_capacity {
            if let Err(e) = lease.validate() {
                return Err(bad(
                    "leased_capacity",
                    format!("{lease:?}"),
                    match e {
                        crate::limiter::lease::LeaseError::Share(_) => "share must be in (0, 1]",
                        crate::limiter::lease::LeaseError::Lifetime => "lifetime must be positive",
                    },
                ));
            }
        }
        Ok(())
    }
}

/// Settings that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    /// A field's value is out of its documented range.
    #[error("invalid redis setting `{field}` = {value}: {reason}")]
    Invalid {
        /// The field's name as written in the file.
        field: &'static str,
        /// The offending value, rendered.
        value: String,
        /// What the value must be.
        reason: &'static str,
    },
    /// The TOML text did not parse or did not match the schema.
    #[error("{0}")]
    Toml(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_human_durations_and_defaults() {
        let s = RedisSettings::from_toml(
            "url = \"redis://127.0.0.1:7000\"\ntimeout = \"100ms\"\nfailure_policy = \"fail_open\"",
        )
        .unwrap();
        assert_eq!(s.timeout, Duration::from_millis(100));
        assert_eq!(s.failure_policy, FailurePolicy::FailOpen);
        assert_eq!(s.key_prefix, "hub:rl");
        assert_eq!(s.idle_ttl, Duration::from_secs(600));
    }

    #[test]
    fn rejects_unknown_fields_and_bad_values() {
        let e = RedisSettings::from_toml("url = \"redis://x\"\nprefix = \"a\"").unwrap_err();
        assert!(e.to_string().contains("prefix"), "{e}");
        let e = RedisSettings::from_toml("url = \"redis://x\"\nwait_jitter = 2.0").unwrap_err();
        assert!(e.to_string().contains("wait_jitter"), "{e}");
        let e = RedisSettings::from_toml("url = \"redis://x\"\nfailure_policy = \"maybe\"")
            .unwrap_err();
        assert!(e.to_string().contains("maybe"), "{e}");
    }
}
