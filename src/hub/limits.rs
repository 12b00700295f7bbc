//! The hub's shared limiter from the `[limits]` table: checked with errors that name the
//! field, and built without waiting — in memory (`backend = "memory"`, the default), or in
//! Redis (`backend = "redis"` with a `[limits.redis]` table), shared by every hub process
//! on that server. The Redis limiter connects on its first call, so the hub's synchronous
//! constructors work for both; a Redis that does not answer then gets the configured
//! `failure_policy` (`fail_closed` by default: requests fail naming the failure).
//!
//! ```toml
//! [limits]
//! backend = "redis"
//!
//! [limits.redis]                   # crate::limiter::redis::RedisSettings
//! url = "redis://127.0.0.1:6379/0"
//! failure_policy = "local_fallback"
//!
//! [[limits.key]]
//! provider = "primary"
//! limit = { limits = { rpm = 500, tpm = 30000 } }
//! ```

use std::sync::Arc;

use crate::clock::Clock;
use crate::harness::scenario::error::Problem;
use crate::limiter::redis::{ConnectError, RedisLimiter, RedisSettings, SettingsError};
use crate::limiter::{Backend, BuildError, LimiterConfig, RateLimiter};

/// Checks every rule's limits and, with `backend = "redis"`, the Redis settings and that
/// every rule can run on Redis; the problem names the field (`limits.key[1].limit`,
/// `limits.redis.timeout`).
pub(super) fn check(limits: &LimiterConfig) -> Result<(), Problem> {
    let rules = || {
        limits
            .default
            .iter()
            .map(|d| ("limits.default".to_owned(), d))
            .chain(
                limits
                    .keys
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (format!("limits.key[{i}].limit"), &r.limit)),
            )
    };
    for (field, limit) in rules() {
        limit.dimensions().map_err(|e| Problem::new(field, e))?;
    }
    if limits.backend == Backend::Redis {
        let settings = redis_settings(limits)?;
        for (field, limit) in rules() {
            RedisLimiter::check_rule(limit, settings).map_err(|e| Problem::new(field, e))?;
        }
    }
    Ok(())
}

/// The Redis settings, checked; a problem when the table is missing or a value is out of
/// range.
fn redis_settings(limits: &LimiterConfig) -> Result<&RedisSettings, Problem> {
    let settings = limits.redis.as_ref().ok_or_else(|| {
        Problem::new(
            "limits.redis",
            "backend = \"redis\" needs a [limits.redis] table with at least `url`",
        )
    })?;
    settings.validate().map_err(settings_problem)?;
    Ok(settings)
}

fn settings_problem(e: SettingsError) -> Problem {
    match &e {
        SettingsError::Invalid { field, .. } => Problem::new(format!("limits.redis.{field}"), e),
        SettingsError::Toml(_) => Problem::new("limits.redis", e),
    }
}

/// The limiter `limits` describes, reading `clock`; never waits (Redis is reached on the
/// first call). Fails only on configuration, naming the field.
pub(super) fn build(
    limits: &LimiterConfig,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn RateLimiter>, Problem> {
    if limits.backend == Backend::Redis {
        redis_settings(limits)?;
    }
    crate::limiter::build_lazy(limits.clone(), clock).map_err(|e| match e {
        BuildError::Redis(ConnectError::Url { .. }) => Problem::new("limits.redis.url", e),
        BuildError::Redis(ConnectError::Settings(s)) => settings_problem(s),
        BuildError::Redis(_) => Problem::new("limits.redis", e),
        BuildError::Config(_) => Problem::new("limits", e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::limiter::LimitKey;

    fn limits(text: &str) -> LimiterConfig {
        toml::from_str(text).expect("schema-valid limits")
    }

    fn clock() -> Arc<dyn Clock> {
        Arc::new(ManualClock::new(0))
    }

    #[test]
    fn redis_without_its_table_names_limits_redis() {
        let l = limits("backend = \"redis\"");
        assert_eq!(check(&l).unwrap_err().path, "limits.redis");
        assert_eq!(build(&l, clock()).unwrap_err().path, "limits.redis");
    }

    #[test]
    fn bad_redis_settings_name_their_field() {
        let l =
            limits("backend = \"redis\"\n[redis]\nurl = \"redis://127.0.0.1:1\"\ntimeout = \"0s\"");
        let p = check(&l).unwrap_err();
        assert_eq!(p.path, "limits.redis.timeout");
        assert!(p.message.contains("longer than zero"), "{}", p.message);
        let l = limits("backend = \"redis\"\n[redis]\nurl = \"http://127.0.0.1:1\"");
        check(&l).expect("the url is checked when the client is made");
        let p = build(&l, clock()).unwrap_err();
        assert_eq!(p.path, "limits.redis.url");
    }

    #[test]
    fn a_rule_too_large_for_redis_is_named() {
        let l = limits(
            "backend = \"redis\"\n[redis]\nurl = \"redis://127.0.0.1:1\"\n\
             [[key]]\nprovider = \"a\"\nlimit = { limits = { rpm = 5 } }\n\
             [[key]]\nprovider = \"b\"\nlimit = { limits = { tpm = 150000001 } }",
        );
        let p = check(&l).unwrap_err();
        assert_eq!(p.path, "limits.key[1].limit");
        assert!(p.message.contains("exact arithmetic"), "{}", p.message);
        // The same rule is fine in memory.
        let mut memory = l.clone();
        memory.backend = Backend::Memory;
        check(&memory).expect("no redis limits in memory");
    }

    #[test]
    fn hub_config_errors_point_at_the_redis_field() {
        let text = "[[provider]]\nid = \"a\"\nkind = \"openai\"\n\
                    [limits]\nbackend = \"redis\"\n\
                    [limits.redis]\nurl = \"redis://127.0.0.1:1\"\ntimeout = \"0s\"\n";
        let e = super::super::config::load(text, "hub.toml", |_| Ok(())).unwrap_err();
        assert_eq!(
            (e.line(), e.field()),
            (Some(8), Some("limits.redis.timeout")),
            "{e}"
        );
        let text = "[[provider]]\nid = \"a\"\nkind = \"openai\"\n[limits]\nbackend = \"redis\"\n";
        let e = super::super::config::load(text, "hub.toml", |_| Ok(())).unwrap_err();
        assert_eq!(
            (e.line(), e.field()),
            (Some(4), Some("limits.redis")),
            "{e}"
        );
    }

    #[test]
    fn the_redis_limiter_builds_without_a_runtime_or_a_server() {
        // No tokio runtime here, and nothing listens on port 1: building must not connect.
        let l = limits(
            "backend = \"redis\"\n[redis]\nurl = \"redis://127.0.0.1:1\"\n\
             [[key]]\nprovider = \"a\"\nlimit = { limits = { rpm = 5 } }",
        );
        check(&l).expect("valid");
        let limiter = build(&l, clock()).expect("built without connecting");
        // Its first call is where Redis is reached: fail_closed then denies, naming it.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let denial = rt
            .block_on(
                limiter.try_acquire(&LimitKey::new("a", "m"), crate::limiter::Cost::request(1)),
            )
            .expect_err("no server: fail_closed denies");
        assert!(
            matches!(&denial, crate::limiter::Denial::Unavailable { reason } if reason.contains("redis")),
            "{denial:?}"
        );
    }
}
