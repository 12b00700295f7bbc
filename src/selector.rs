//! Provider selection (hub specification §ProviderSelector): which provider (or Azure
//! deployment) a request goes to, and in what order the others are tried after it.
//! [`PrioritySelector`], [`RoundRobinSelector`], [`WeightedSelector`] and the LLM-aware
//! [`MostHeadroomSelector`], which asks the shared limiter how many requests of this
//! request's estimated size each candidate can still take. Unhealthy candidates, and those
//! cooling down (after a 429 or an outage) until a time of the injected clock, are skipped.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::clock::{Clock, Nanos};
use crate::limiter::{Cost, LimitKey, RateLimiter};
use crate::provider::admission::{AdmissionRule, RequestSize};
use crate::provider::CompletionRequest;

/// One provider or deployment a request may go to.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The provider id requests are sent to.
    pub provider_id: String,
    /// The limiter key its requests are charged to.
    pub key: LimitKey,
    /// Lower is preferred ([`PrioritySelector`]).
    pub priority: u32,
    /// Relative share of traffic ([`WeightedSelector`]); 0 never selects it.
    pub weight: u32,
    /// False after a failed health check.
    pub healthy: bool,
    /// Skipped while the clock is before this time (nanoseconds), e.g. after a 429.
    pub cooling_until: Option<Nanos>,
}

impl Candidate {
    /// A healthy candidate with priority 0 and weight 1.
    pub fn new(provider_id: impl Into<String>, key: LimitKey) -> Self {
        Self {
            provider_id: provider_id.into(),
            key,
            priority: 0,
            weight: 1,
            healthy: true,
            cooling_until: None,
        }
    }

    /// Whether it may be chosen at `now` (nanoseconds).
    pub fn is_available(&self, now: Nanos) -> bool {
        self.healthy && !matches!(self.cooling_until, Some(t) if t > now)
    }
}

/// Orders candidates for a request: the first is the choice, the rest the fallbacks.
#[async_trait]
pub trait ProviderSelector: Send + Sync + fmt::Debug {
    /// Available candidates' provider ids, best first; unavailable ones are left out.
    async fn rank(&self, request: &CompletionRequest, candidates: &[Candidate]) -> Vec<String>;

    /// The best available candidate, `None` when none is available.
    async fn select(
        &self,
        request: &CompletionRequest,
        candidates: &[Candidate],
    ) -> Option<String> {
        self.rank(request, candidates).await.into_iter().next()
    }
}

fn available<'a>(clock: &dyn Clock, candidates: &'a [Candidate]) -> Vec<&'a Candidate> {
    let now = clock.now();
    candidates.iter().filter(|c| c.is_available(now)).collect()
}

/// By priority (lower first; ties keep the given order): a fallback chain.
#[derive(Debug, Clone)]
pub struct PrioritySelector {
    clock: Arc<dyn Clock>,
}

impl PrioritySelector {
    /// Reads availability times from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock }
    }
}

#[async_trait]
impl ProviderSelector for PrioritySelector {
    async fn rank(&self, _r: &CompletionRequest, candidates: &[Candidate]) -> Vec<String> {
        let mut c = available(&*self.clock, candidates);
        c.sort_by_key(|c| c.priority);
        c.into_iter().map(|c| c.provider_id.clone()).collect()
    }
}

/// Each call starts one further along the available candidates.
#[derive(Debug)]
pub struct RoundRobinSelector {
    clock: Arc<dyn Clock>,
    next: AtomicUsize,
}

impl RoundRobinSelector {
    /// Reads availability times from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            next: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl ProviderSelector for RoundRobinSelector {
    async fn rank(&self, _r: &CompletionRequest, candidates: &[Candidate]) -> Vec<String> {
        let c = available(&*self.clock, candidates);
        if c.is_empty() {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % c.len();
        c[start..]
            .iter()
            .chain(&c[..start])
            .map(|c| c.provider_id.clone())
            .collect()
    }
}

/// Smooth weighted round robin (as nginx): over any `Σ weights` consecutive calls with
/// the same candidates, each is first exactly `weight` times, interleaved.
#[derive(Debug)]
pub struct WeightedSelector {
    clock: Arc<dyn Clock>,
    current: Mutex<HashMap<String, i64>>,
}

impl WeightedSelector {
    /// Reads availability times from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            current: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl ProviderSelector for WeightedSelector {
    async fn rank(&self, _r: &CompletionRequest, candidates: &[Candidate]) -> Vec<String> {
        let c: Vec<&Candidate> = available(&*self.clock, candidates)
            .into_iter()
            .filter(|c| c.weight > 0)
            .collect();
        if c.is_empty() {
            return Vec::new();
        }
        let total: i64 = c.iter().map(|c| i64::from(c.weight)).sum();
        let mut current = self.current.lock();
        for x in &c {
            *current.entry(x.provider_id.clone()).or_default() += i64::from(x.weight);
        }
        let mut ranked: Vec<(i64, usize, &Candidate)> = c
            .iter()
            .enumerate()
            .map(|(i, x)| (current[&x.provider_id], i, *x))
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        if let Some(best) = current.get_mut(&ranked[0].2.provider_id) {
            *best -= total;
        }
        ranked
            .into_iter()
            .map(|(_, _, c)| c.provider_id.clone())
            .collect()
    }
}

/// The LLM-aware choice: most requests of this request's estimated size (tiktoken prompt
/// tokens plus `max_tokens × n`) that the limiter says each candidate's key can still admit now —
/// the minimum over its request and token dimensions; an unlimited key counts as
/// unbounded. Ties keep the given order; a key whose stats cannot be read ranks last.
#[derive(Debug, Clone)]
pub struct MostHeadroomSelector {
    limiter: Arc<dyn RateLimiter>,
    clock: Arc<dyn Clock>,
}

impl MostHeadroomSelector {
    /// Asks `limiter` (the one the requests will be charged to); availability by `clock`.
    pub fn new(limiter: Arc<dyn RateLimiter>, clock: Arc<dyn Clock>) -> Self {
        Self { limiter, clock }
    }

    /// How many requests costing `tokens` tokens (split unknown) `key` can still admit now.
    pub async fn headroom(&self, key: &LimitKey, tokens: u64) -> Option<u64> {
        self.headroom_for(key, Cost::request(tokens)).await
    }

    /// How many requests costing `cost` `key` can still admit now, over every rate
    /// dimension (requests, total, input and output tokens); `u64::MAX` when none limits it.
    pub async fn headroom_for(&self, key: &LimitKey, cost: Cost) -> Option<u64> {
        let stats = self.limiter.usage_stats(key).await.ok()?;
        Some(stats.admissions_left(cost).unwrap_or(u64::MAX))
    }
}

#[async_trait]
impl ProviderSelector for MostHeadroomSelector {
    async fn rank(&self, request: &CompletionRequest, candidates: &[Candidate]) -> Vec<String> {
        let cost = AdmissionRule::OPENAI.estimate(&RequestSize::of(request));
        let mut scored = Vec::new();
        for (i, c) in available(&*self.clock, candidates).into_iter().enumerate() {
            let room = self.headroom_for(&c.key, cost).await;
            scored.push((room, i, c));
        }
        // `None` (unreadable) sorts below every `Some`.
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        scored
            .into_iter()
            .map(|(_, _, c)| c.provider_id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::limiter::{Cost, KeyedLimiter, LimiterConfig};
    use crate::provider::Message;

    fn clock() -> Arc<ManualClock> {
        Arc::new(ManualClock::new(0))
    }

    fn request(max_tokens: u32) -> CompletionRequest {
        CompletionRequest::new("gpt-4o-mini", vec![Message::user("hello")])
            .with_max_tokens(max_tokens)
    }

    fn cands() -> Vec<Candidate> {
        ["east", "west", "north"]
            .iter()
            .map(|d| {
                Candidate::new(
                    *d,
                    LimitKey::new("azure", "gpt-4o-mini").with_deployment(*d),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn priority_orders_by_priority_and_skips_unhealthy_and_cooling_down() {
        let clock = clock();
        let s = PrioritySelector::new(clock.clone());
        let mut c = cands();
        c[0].priority = 2;
        c[1].priority = 1;
        c[2].priority = 3;
        assert_eq!(s.rank(&request(1), &c).await, ["west", "east", "north"]);
        c[1].cooling_until = Some(1_000);
        c[0].healthy = false;
        assert_eq!(s.rank(&request(1), &c).await, ["north"]);
        clock.advance(std::time::Duration::from_nanos(1_000));
        assert_eq!(s.rank(&request(1), &c).await, ["west", "north"]);
    }

    #[tokio::test]
    async fn round_robin_starts_one_further_each_call() {
        let s = RoundRobinSelector::new(clock());
        let c = cands();
        let mut firsts = Vec::new();
        for _ in 0..4 {
            firsts.push(s.select(&request(1), &c).await.expect("some"));
        }
        assert_eq!(firsts, ["east", "west", "north", "east"]);
    }

    #[tokio::test]
    async fn weighted_selection_gives_each_its_weight_in_every_cycle() {
        let s = WeightedSelector::new(clock());
        let mut c = cands();
        c[0].weight = 3;
        c[1].weight = 1;
        c[2].weight = 0;
        let mut firsts = Vec::new();
        for _ in 0..8 {
            firsts.push(s.select(&request(1), &c).await.expect("some"));
        }
        assert_eq!(
            firsts,
            ["east", "east", "west", "east", "east", "east", "west", "east"]
        );
    }

    #[tokio::test]
    async fn most_headroom_picks_the_deployment_with_the_most_room_for_this_request() {
        let clock = clock();
        let config = LimiterConfig::from_toml(
            r#"
            [[key]]
            provider = "azure"
            deployment = "east"
            limit = { limits = { rpm = 100, tpm = 10000 } }
            [[key]]
            provider = "azure"
            deployment = "west"
            limit = { limits = { rpm = 3, tpm = 100000 } }
            [[key]]
            provider = "azure"
            deployment = "north"
            limit = { limits = { rpm = 100, tpm = 2500 } }
            "#,
        )
        .expect("valid");
        let limiter = Arc::new(KeyedLimiter::new(config, clock.clone()).expect("valid"));
        let s = MostHeadroomSelector::new(limiter.clone(), clock.clone());
        let c = cands();
        // 997-token requests (7 prompt + 990): east fits 10, west 3 (its RPM), north 2.
        assert_eq!(s.rank(&request(990), &c).await, ["east", "west", "north"]);
        // 17-token requests: east and north are bound by 100 RPM (tie: given order), west by 3.
        assert_eq!(s.rank(&request(10), &c).await[0], "east");
        // Spend most of east's tokens: west (3 left) now beats east (1 left).
        let east = c[0].key.clone();
        limiter
            .try_acquire_now(&east, Cost::request(8_500))
            .expect("fits");
        assert_eq!(s.rank(&request(990), &c).await[0], "west");
        let mut cooled = c.clone();
        cooled[1].cooling_until = Some(5);
        // Cooling down removes west; north (2 left) beats east (1 left).
        assert_eq!(s.rank(&request(990), &cooled).await, ["north", "east"]);
    }
}
