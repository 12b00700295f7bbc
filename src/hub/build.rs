//! From a checked [`HubConfig`] to a [`Hub`]: providers through the plugin registry, the
//! shared limiter, the selector, and the middleware slots in the configured order.

use std::sync::Arc;

use parking_lot::Mutex;

use super::config::{HubConfig, MiddlewareKind, SelectorKind};
use super::{Cooldown, Entry, Hub, HubOptions, Slot};
use crate::cache::MemoryCache;
use crate::harness::scenario::error::Problem;
use crate::limiter::RateLimiter;
use crate::metrics::{FanOut, HdrMetrics, MetricsCollector, MetricsMiddleware};
use crate::middleware::{
    AuthMiddleware, CacheMiddleware, CredentialSource, GovernorMiddleware, LoggingMiddleware,
    Middleware, ProviderSet, StaticCredentials,
};
use crate::selector::{
    MostHeadroomSelector, PrioritySelector, ProviderSelector, RoundRobinSelector, WeightedSelector,
};

/// Builds the hub; a failure names the config field it comes from.
pub(super) fn assemble(config: HubConfig, options: HubOptions) -> Result<Hub, Problem> {
    let HubOptions {
        clock,
        plugins,
        credentials,
        metrics: sink,
    } = options;
    let mut providers = ProviderSet::new();
    let mut entries = Vec::new();
    for (i, p) in config.providers.iter().enumerate() {
        let map = p.config_map();
        let provider = plugins
            .create(&p.kind, &map, clock.clone())
            .map_err(|e| match e {
                crate::plugin::PluginError::Unknown(_) => Problem::new(
                    format!("provider[{i}].kind"),
                    format!("{e} (registered: {})", plugins.names().join(", ")),
                ),
                crate::plugin::PluginError::Config { .. } => {
                    Problem::new(format!("provider[{i}].config"), e)
                }
            })?;
        if provider.provider_id() != p.id {
            return Err(Problem::new(
                format!("provider[{i}].kind"),
                format!(
                    "plugin `{}` built provider `{}`, not `{}`",
                    p.kind,
                    provider.provider_id(),
                    p.id
                ),
            ));
        }
        providers.insert(p.id.clone(), provider);
        entries.push(Entry {
            id: p.id.clone(),
            priority: p.priority,
            weight: p.weight,
            healthy: true,
            cooling_until: None,
        });
    }

    let limiter: Arc<dyn RateLimiter> = super::limits::build(&config.limits, clock.clone())?;
    // Rate limiting and retries are one governed step (one request lifecycle), placed
    // where the first of `rate_limit` / `retry` is listed.
    let limits = config.middleware.contains(&MiddlewareKind::RateLimit);
    let retries = config.middleware.contains(&MiddlewareKind::Retry);
    let mut governor = GovernorMiddleware::new(limiter.clone(), clock.clone())
        .with_limits(limits)
        .with_retries(retries);
    for p in &config.providers {
        let deployment = p
            .deployment
            .clone()
            .or_else(|| p.config.get("deployment").map(|v| v.to_string()));
        if let Some(d) = deployment {
            governor = governor.with_deployment(p.id.clone(), d);
        }
    }
    let governor = Arc::new(governor);

    let selector: Arc<dyn ProviderSelector> = match config.selector {
        SelectorKind::Priority => Arc::new(PrioritySelector::new(clock.clone())),
        SelectorKind::RoundRobin => Arc::new(RoundRobinSelector::new(clock.clone())),
        SelectorKind::Weighted => Arc::new(WeightedSelector::new(clock.clone())),
        SelectorKind::MostHeadroom => {
            Arc::new(MostHeadroomSelector::new(limiter.clone(), clock.clone()))
        }
    };

    let metrics = Arc::new(HdrMetrics::new());
    let reports: Arc<dyn MetricsCollector> = match sink {
        Some(sink) => Arc::new(FanOut::new([
            metrics.clone() as Arc<dyn MetricsCollector>,
            sink,
        ])),
        None => metrics.clone(),
    };
    let credentials: Arc<dyn CredentialSource> = credentials.unwrap_or_else(|| {
        Arc::new(StaticCredentials::new(
            config.auth.keys.iter().map(|(p, k)| (p.clone(), k.clone())),
        ))
    });
    let mut kinds = config.middleware.clone();
    if !kinds.contains(&MiddlewareKind::Metrics) {
        kinds.insert(0, MiddlewareKind::Metrics);
    }
    let entries = Arc::new(Mutex::new(entries));
    let mut cache = None;
    let mut slots = Vec::with_capacity(kinds.len() + 1);
    let mut governed = false;
    for kind in kinds {
        let m: Arc<dyn Middleware> = match kind {
            MiddlewareKind::Fallback => {
                slots.push(Slot::Fallback);
                continue;
            }
            MiddlewareKind::Auth => Arc::new(AuthMiddleware::new(credentials.clone())),
            MiddlewareKind::Logging => Arc::new(LoggingMiddleware::new(clock.clone())),
            MiddlewareKind::Metrics => {
                Arc::new(MetricsMiddleware::new(reports.clone(), clock.clone()))
            }
            MiddlewareKind::RateLimit | MiddlewareKind::Retry => {
                if std::mem::replace(&mut governed, true) {
                    continue;
                }
                governor.clone()
            }
            MiddlewareKind::Cache => {
                let store = Arc::new(MemoryCache::new(config.cache.bytes, clock.clone()));
                cache = Some(store.clone());
                Arc::new(CacheMiddleware::new(store, config.cache.ttl))
            }
        };
        slots.push(Slot::Fixed(m));
    }
    // Innermost: a provider that answers 429 is skipped by the selector until its
    // retry-after has passed.
    slots.push(Slot::Fixed(Arc::new(Cooldown {
        entries: entries.clone(),
        clock: clock.clone(),
    })));

    Ok(Hub {
        providers,
        entries,
        selector,
        limiter,
        governor,
        slots,
        metrics,
        cache,
        clock,
    })
}
