//! Admission: a request's estimate reserved on the upstream key's limits and the tenant's
//! own limits, all or nothing, with a queue that shares contended quota between tenants
//! by weight (deficit round robin by tokens) and gives up at each request's deadline.
//!
//! **All or nothing over two keys.** The limiter admits one key's dimensions atomically,
//! not two keys. A reservation therefore takes the tenant's key first, then the
//! upstream's; when the upstream refuses, the tenant's permit is given back whole with
//! [`RateLimiter::give_back`] (refunded exactly, whatever the key's accounting) before
//! anything else is decided. Between the two calls the tenant's charge is briefly held:
//! another request of the same tenant may see it, never the upstream.
//!
//! **Queue.** While nobody waits for an upstream key (a *lane*), a request tries at once.
//! A tenant whose head is refused by the tenant's *own* limits is skipped until they
//! admit it, so one tenant's limit never holds back the others on the same upstream.
//! Otherwise — or when refused for now — it joins its tenant's FIFO in the lane, and one
//! dispatcher task per lane admits the waiters in deficit-round-robin order: each round a
//! tenant's deficit grows by `quantum × weight` tokens and it may take requests whose
//! estimates fit in it; the dispatcher sleeps exactly until the refusing limit's wait
//! (or until a reservation is given back or a new request arrives). A waiter whose
//! deadline passes is refused with the exact wait its estimate needs now — the wait after
//! which it is admitted if nothing else is meanwhile (zero when it would fit now: it is
//! still not admitted out of its turn).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

use crate::clock::{nanos, Clock, Nanos};
use crate::limiter::{Cost, Denial, LimitKey, Permit, RateLimitType, RateLimiter};

/// What a request asks of admission.
#[derive(Debug, Clone)]
pub struct Ask {
    /// The upstream key (its lane).
    pub upstream: LimitKey,
    /// The tenant's own key, when the tenant has limits.
    pub tenant_key: Option<LimitKey>,
    /// The tenant's name (its queue in the lane).
    pub tenant: Arc<str>,
    /// The tenant's weight (≥ 1).
    pub weight: u32,
    /// The estimate to reserve.
    pub cost: Cost,
    /// When to give up waiting (admission clock, ns).
    pub deadline: Nanos,
}

/// A reservation: permits on the upstream key and on the tenant's key.
#[derive(Debug)]
pub struct Ticket {
    /// The upstream key's permit.
    pub upstream: Permit,
    /// The tenant key's permit, when the tenant has limits.
    pub tenant: Option<Permit>,
    /// Time spent waiting for it.
    pub waited: Duration,
}

/// Which key refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The upstream key's limits.
    Upstream,
    /// The tenant's own limits.
    Tenant,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The estimate can never fit `dimension` (capacity below the cost).
    NeverFits {
        /// Which key.
        side: Side,
        /// The dimension.
        dimension: RateLimitType,
        /// The estimate in that dimension's unit.
        cost: u64,
        /// The dimension's capacity.
        capacity: u64,
    },
    /// The deadline passed; the estimate fits after exactly `retry_after` if nothing else
    /// is admitted meanwhile (`None`: no exact wait is known, e.g. full concurrency slots).
    Timeout {
        /// Which key refused last.
        side: Side,
        /// The refusing dimension, when one refused.
        dimension: Option<RateLimitType>,
        /// The exact wait.
        retry_after: Option<Duration>,
        /// Time spent waiting.
        waited: Duration,
    },
    /// The limiter's backend is unavailable and its policy denies.
    Unavailable {
        /// What failed.
        reason: String,
    },
}

/// One waiter.
#[derive(Debug)]
struct Waiter {
    ask: Ask,
    arrived: Nanos,
    reply: oneshot::Sender<Result<Ticket, Refusal>>,
}

/// A tenant's FIFO in a lane.
#[derive(Debug, Default)]
struct TenantQueue {
    deficit: u64,
    weight: u64,
    waiters: VecDeque<Waiter>,
}

#[derive(Debug, Default)]
struct LaneState {
    queues: HashMap<Arc<str>, TenantQueue>,
    /// Tenants with waiters, in round-robin order; the front's turn is on.
    active: VecDeque<Arc<str>>,
    /// The tenant whose turn is open (its round's quantum added).
    turn: Option<Arc<str>>,
    /// Tenants whose own limits refused their head: skipped until then (`None`: until
    /// the dispatcher is woken, e.g. by a record freeing a concurrency slot), so one
    /// tenant's limit never holds the others back.
    blocked: HashMap<Arc<str>, Option<Nanos>>,
    waiting: usize,
    running: bool,
}

#[derive(Debug, Default)]
struct Lane {
    state: Mutex<LaneState>,
    wake: Notify,
}

/// The admission queue of every upstream key; see the module docs.
#[derive(Debug)]
pub struct Admission {
    limiter: Arc<dyn RateLimiter>,
    clock: Arc<dyn Clock>,
    quantum: u64,
    lanes: Mutex<HashMap<LimitKey, Arc<Lane>>>,
}

/// What one try over both keys gave.
// Built and matched once per attempt and never stored: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Tried {
    Admitted(Permit, Option<Permit>),
    Refused(Side, Denial),
}

impl Admission {
    /// Admission on `limiter`, waiting on `clock`; `quantum` is deficit round robin's
    /// tokens per round for weight 1.
    pub fn new(limiter: Arc<dyn RateLimiter>, clock: Arc<dyn Clock>, quantum: u64) -> Arc<Self> {
        Arc::new(Self {
            limiter,
            clock,
            quantum: quantum.max(1),
            lanes: Mutex::new(HashMap::new()),
        })
    }

    /// The limiter reservations are made on.
    pub fn limiter(&self) -> &Arc<dyn RateLimiter> {
        &self.limiter
    }

    /// Requests waiting for `upstream` now.
    pub fn waiting(&self, upstream: &LimitKey) -> usize {
        self.lanes
            .lock()
            .get(upstream)
            .map_or(0, |l| l.state.lock().waiting)
    }

    /// Tells `upstream`'s dispatcher that capacity may have come back (a reservation was
    /// recorded or given back).
    pub fn notify(&self, upstream: &LimitKey) {
        if let Some(lane) = self.lanes.lock().get(upstream) {
            lane.wake.notify_one();
        }
    }

    /// Wakes every lane's dispatcher (a tenant's reservation, which any lane may be
    /// waiting for, was recorded or given back).
    pub fn notify_all(&self) {
        for lane in self.lanes.lock().values() {
            lane.wake.notify_one();
        }
    }

    /// Tries `ask` once over both keys, without waiting or queueing: the decision a
    /// shadow-mode gateway records.
    pub async fn probe(&self, ask: &Ask) -> Result<Ticket, (Side, Denial)> {
        match self.try_both(ask).await {
            Tried::Admitted(upstream, tenant) => Ok(Ticket {
                upstream,
                tenant,
                waited: Duration::ZERO,
            }),
            Tried::Refused(side, d) => Err((side, d)),
        }
    }

    /// Reserves `ask`'s estimate on both keys, waiting in the lane's fair queue until its
    /// deadline. Cancel-safe: dropping the future leaves the queue, and a reservation
    /// made for it meanwhile is given back.
    pub async fn admit(self: &Arc<Self>, ask: Ask) -> Result<Ticket, Refusal> {
        let arrived = self.clock.now();
        let lane = self.lane(&ask.upstream);
        if lane.state.lock().waiting == 0 {
            match self.try_both(&ask).await {
                Tried::Admitted(upstream, tenant) => {
                    return Ok(Ticket {
                        upstream,
                        tenant,
                        waited: Duration::ZERO,
                    })
                }
                Tried::Refused(side, d) => {
                    if let Some(r) = final_refusal(side, &d) {
                        return Err(r);
                    }
                    if self.clock.now() >= ask.deadline {
                        return Err(timeout(side, &d, Duration::ZERO));
                    }
                }
            }
        }
        let (tx, rx) = oneshot::channel();
        let spawn = {
            let mut guard = lane.state.lock();
            let st = &mut *guard;
            let tenant = ask.tenant.clone();
            let q = st.queues.entry(tenant.clone()).or_default();
            q.weight = u64::from(ask.weight.max(1));
            if q.waiters.is_empty() {
                st.active.push_back(tenant);
            }
            q.waiters.push_back(Waiter {
                ask,
                arrived,
                reply: tx,
            });
            st.waiting += 1;
            !std::mem::replace(&mut st.running, true)
        };
        if spawn {
            let me = self.clone();
            let lane = lane.clone();
            tokio::spawn(async move { me.dispatch(lane).await });
        } else {
            lane.wake.notify_one();
        }
        match rx.await {
            Ok(result) => result,
            // The dispatcher is gone (the runtime is shutting down).
            Err(_) => Err(Refusal::Unavailable {
                reason: "the admission queue stopped".into(),
            }),
        }
    }

    fn lane(&self, key: &LimitKey) -> Arc<Lane> {
        self.lanes.lock().entry(key.clone()).or_default().clone()
    }

    async fn try_both(&self, ask: &Ask) -> Tried {
        let tenant = match &ask.tenant_key {
            Some(k) => match self.limiter.try_acquire(k, ask.cost).await {
                Ok(p) => Some(p),
                Err(d) => return Tried::Refused(Side::Tenant, d),
            },
            None => None,
        };
        match self.limiter.try_acquire(&ask.upstream, ask.cost).await {
            Ok(p) => Tried::Admitted(p, tenant),
            Err(d) => {
                if let Some(p) = tenant {
                    self.give_back(p).await;
                }
                Tried::Refused(Side::Upstream, d)
            }
        }
    }

    async fn give_back(&self, permit: Permit) {
        if let Err(e) = self.limiter.give_back(permit).await {
            tracing::warn!(error = %e, "a reservation could not be given back");
        }
    }

    /// Gives a whole ticket back (its request was never sent).
    pub async fn give_back_ticket(&self, ticket: Ticket) {
        self.give_back(ticket.upstream).await;
        if let Some(p) = ticket.tenant {
            self.give_back(p).await;
        }
    }

    /// The lane's dispatcher: runs while anyone waits.
    async fn dispatch(self: Arc<Self>, lane: Arc<Lane>) {
        loop {
            let now = self.clock.now();
            for w in self.expired(&lane, now) {
                self.refuse_expired(w, now).await;
            }
            let head = match self.pick(&lane, now) {
                Pick::Empty => return,
                Pick::Blocked(until) => {
                    self.sleep(&lane, until).await;
                    continue;
                }
                Pick::Head(head) => head,
            };
            match self.try_both(&head.ask).await {
                Tried::Admitted(upstream, tenant) => {
                    let now = self.clock.now();
                    let w = self.pop(&lane, &head.tenant, head.ask.cost.tokens);
                    let ticket = Ticket {
                        upstream,
                        tenant,
                        waited: Duration::from_nanos(now.saturating_sub(head.arrived)),
                    };
                    match w {
                        Some(w) => {
                            if let Err(Ok(t)) = w.reply.send(Ok(ticket)) {
                                self.give_back_ticket(t).await;
                            }
                        }
                        None => self.give_back_ticket(ticket).await,
                    }
                }
                Tried::Refused(side, d) => {
                    if let Some(r) = final_refusal(side, &d) {
                        if let Some(w) = self.pop(&lane, &head.tenant, 0) {
                            let _ = w.reply.send(Err(r));
                        }
                        continue;
                    }
                    let now = self.clock.now();
                    let until = d.retry_after().map(|w| now.saturating_add(nanos(w).max(1)));
                    if side == Side::Tenant {
                        // Only this tenant must wait: the others go on.
                        lane.state.lock().blocked.insert(head.tenant.clone(), until);
                        continue;
                    }
                    self.sleep(&lane, until).await;
                }
            }
        }
    }

    /// Sleeps until `until`, the earliest deadline, or a wake-up, whichever is first;
    /// then tenants blocked until a wake-up are tried again.
    async fn sleep(&self, lane: &Lane, until: Option<Nanos>) {
        let deadline = self.earliest_deadline(lane);
        let wake_at = match (until, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let notified = lane.wake.notified();
        match wake_at {
            Some(t) => {
                tokio::select! {
                    _ = self.clock.sleep_until(t) => {}
                    _ = notified => {}
                }
            }
            None => notified.await,
        }
        lane.state.lock().blocked.retain(|_, until| until.is_some());
    }

    /// Removes waiters whose deadline passed or whose request is gone; the first are
    /// returned to be refused.
    fn expired(&self, lane: &Lane, now: Nanos) -> Vec<Waiter> {
        let mut guard = lane.state.lock();
        let st = &mut *guard;
        let mut out = Vec::new();
        let mut removed = 0;
        for q in st.queues.values_mut() {
            let mut kept = VecDeque::with_capacity(q.waiters.len());
            for w in q.waiters.drain(..) {
                if w.reply.is_closed() {
                    removed += 1;
                } else if w.ask.deadline <= now {
                    removed += 1;
                    out.push(w);
                } else {
                    kept.push_back(w);
                }
            }
            q.waiters = kept;
        }
        st.waiting -= removed;
        let LaneState {
            queues,
            active,
            turn,
            ..
        } = st;
        active.retain(|t| queues.get(t).is_some_and(|q| !q.waiters.is_empty()));
        queues.retain(|_, q| !q.waiters.is_empty());
        if turn.as_ref().is_some_and(|t| !queues.contains_key(t)) {
            *turn = None;
        }
        out
    }

    /// Refuses a waiter whose deadline passed, with the exact wait its estimate needs now.
    /// It is not admitted even if it fits now: that would pass the tenants whose turn it
    /// is; a probe that admits is given back and the wait is zero.
    async fn refuse_expired(&self, w: Waiter, now: Nanos) {
        let waited = Duration::from_nanos(now.saturating_sub(w.arrived));
        let r = match self.try_both(&w.ask).await {
            Tried::Admitted(upstream, tenant) => {
                self.give_back_ticket(Ticket {
                    upstream,
                    tenant,
                    waited,
                })
                .await;
                Refusal::Timeout {
                    side: Side::Upstream,
                    dimension: None,
                    retry_after: Some(Duration::ZERO),
                    waited,
                }
            }
            Tried::Refused(side, d) => {
                final_refusal(side, &d).unwrap_or_else(|| timeout(side, &d, waited))
            }
        };
        let _ = w.reply.send(Err(r));
    }

    fn earliest_deadline(&self, lane: &Lane) -> Option<Nanos> {
        let st = lane.state.lock();
        st.queues
            .values()
            .flat_map(|q| q.waiters.iter().map(|w| w.ask.deadline))
            .min()
    }

    /// The next waiter in deficit-round-robin order (left in its queue), skipping tenants
    /// blocked by their own limits; [`Pick::Empty`] when the lane is empty, which also
    /// ends the dispatcher's run. A tenant's turn opens with its quantum × weight added to
    /// its deficit; it is served while its head fits the deficit; then the turn passes to
    /// the next tenant.
    fn pick(&self, lane: &Lane, now: Nanos) -> Pick {
        let mut guard = lane.state.lock();
        let st = &mut *guard;
        st.blocked.retain(|_, until| until.is_none_or(|t| t > now));
        let mut skipped = 0;
        loop {
            let Some(tenant) = st.active.front().cloned() else {
                st.running = false;
                st.turn = None;
                return Pick::Empty;
            };
            let alone = st.active.len() == 1;
            let Some(q) = st.queues.get_mut(&tenant).filter(|q| !q.waiters.is_empty()) else {
                st.active.pop_front();
                st.turn = None;
                continue;
            };
            if st.blocked.contains_key(&tenant) {
                skipped += 1;
                if skipped >= st.active.len() {
                    // Everyone waits for their own limits: until the first is free.
                    let until = st
                        .active
                        .iter()
                        .filter_map(|t| st.blocked.get(t).copied().flatten())
                        .min();
                    return Pick::Blocked(until);
                }
                st.active.rotate_left(1);
                st.turn = None;
                continue;
            }
            skipped = 0;
            let share = self.quantum.saturating_mul(q.weight);
            if st.turn.as_ref() != Some(&tenant) {
                q.deficit = q.deficit.saturating_add(share);
                st.turn = Some(tenant.clone());
            }
            let Some(w) = q.waiters.front() else {
                continue;
            };
            let cost = w.ask.cost.tokens;
            if cost <= q.deficit {
                return Pick::Head(Head {
                    tenant,
                    ask: w.ask.clone(),
                    arrived: w.arrived,
                });
            }
            if alone {
                // Nobody to pass the turn to: as many rounds as the head needs at once.
                let rounds = (cost - q.deficit).div_ceil(share);
                q.deficit = q.deficit.saturating_add(rounds.saturating_mul(share));
            } else {
                st.active.rotate_left(1);
                st.turn = None;
            }
        }
    }

    /// Removes the head of `tenant`'s queue, charging `tokens` to its deficit.
    fn pop(&self, lane: &Lane, tenant: &Arc<str>, tokens: u64) -> Option<Waiter> {
        let mut guard = lane.state.lock();
        let st = &mut *guard;
        let q = st.queues.get_mut(tenant)?;
        let w = q.waiters.pop_front()?;
        q.deficit = q.deficit.saturating_sub(tokens);
        let empty = q.waiters.is_empty();
        if empty {
            q.deficit = 0;
            st.active.retain(|t| t != tenant);
            if st.turn.as_ref() == Some(tenant) {
                st.turn = None;
            }
        }
        st.waiting -= 1;
        Some(w)
    }
}

/// What [`Admission::pick`] found.
enum Pick {
    /// The waiter to try.
    Head(Head),
    /// Every waiting tenant is blocked by its own limits, until this instant (`None`: a
    /// wake-up).
    Blocked(Option<Nanos>),
    /// Nobody waits.
    Empty,
}

/// The waiter at the head of the round.
struct Head {
    tenant: Arc<str>,
    ask: Ask,
    arrived: Nanos,
}

/// A denial no wait can cure, as a refusal.
fn final_refusal(side: Side, d: &Denial) -> Option<Refusal> {
    match d {
        Denial::Exceeds {
            dimension,
            cost,
            capacity,
        } => Some(Refusal::NeverFits {
            side,
            dimension: *dimension,
            cost: *cost,
            capacity: *capacity,
        }),
        Denial::Unavailable { reason } => Some(Refusal::Unavailable {
            reason: reason.clone(),
        }),
        _ => None,
    }
}

fn timeout(side: Side, d: &Denial, waited: Duration) -> Refusal {
    Refusal::Timeout {
        side,
        dimension: d.dimension(),
        retry_after: d.retry_after(),
        waited,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TokioClock;
    use crate::limiter::{KeyedLimiter, LimiterConfig};

    fn limiter(text: &str) -> Arc<dyn RateLimiter> {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        Arc::new(
            KeyedLimiter::new(LimiterConfig::from_toml(text).expect("valid"), clock)
                .expect("builds"),
        )
    }

    fn ask(tenant: &str, tokens: u64, deadline: Nanos) -> Ask {
        Ask {
            upstream: LimitKey::new("up", "m"),
            tenant_key: None,
            tenant: tenant.into(),
            weight: 1,
            cost: Cost::request(tokens),
            deadline,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_by_the_upstream_gives_the_tenants_reservation_back_exactly() {
        // The tenant's tokens are accounted by estimate: a plain record would keep them.
        let l = limiter(
            "[[key]]\nprovider = \"up\"\nlimit = { limits = { tpm = 100 } }\n\
             [[key]]\nprovider = \"tenant\"\nlimit = { limits = { tpm = 1000 }, accounting = \"estimate\" }\n",
        );
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let a = Admission::new(l.clone(), clock.clone(), 100);
        let tk = LimitKey::new("tenant", "*").with_deployment("t");
        let mut x = ask("t", 80, clock.now());
        x.tenant_key = Some(tk.clone());
        let t = a.admit(x.clone()).await.expect("fits both");
        assert_eq!(
            l.usage_stats(&tk).await.unwrap().tokens_remaining(),
            Some(920)
        );
        let r = a.admit(x).await.expect_err("the upstream has 20 left");
        assert!(
            matches!(
                r,
                Refusal::Timeout {
                    side: Side::Upstream,
                    ..
                }
            ),
            "{r:?}"
        );
        assert_eq!(
            l.usage_stats(&tk).await.unwrap().tokens_remaining(),
            Some(920),
            "the tenant's second reservation was given back whole"
        );
        drop(t);
    }
}
