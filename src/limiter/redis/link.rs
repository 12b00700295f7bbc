//! The one way the limiter talks to Redis: the script, loaded as a function library and
//! called by `FCALL` (Redis ≥ 7), or loaded as a script and called by `EVALSHA` where
//! functions are unavailable or turned off — loaded again on `Function not found` /
//! `NOSCRIPT` —, every call bounded by the configured timeout, and a health gate that,
//! once a call failed, lets only one probe call through per probe interval so that a dead
//! Redis costs the other callers nothing but the failure policy.
//!
//! Why a function library: an `EVALSHA` script runs its whole chunk on every call, so the
//! script's helper functions are created anew each time; a library builds them (and its
//! cache of parsed plans) once, which takes about half the script's Redis CPU per call.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, Pipeline, RedisFuture, Value};

use crate::clock::{nanos, Clock, Nanos};

/// The limiter's Lua script (all strategies and operations in one file).
pub(crate) const SCRIPT: &str = include_str!("lua/limiter.lua");

/// How the script is called: `FCALL <function>` or `EVALSHA <sha>`.
const MODE_FUNCTION: u8 = 0;
const MODE_SCRIPT: u8 = 1;

/// Why a Redis call did not produce an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisFailure {
    /// The call took longer than the configured timeout.
    #[error("redis call timed out after {0:?}")]
    Timeout(Duration),
    /// Redis (or the connection to it) returned an error.
    #[error("redis error: {0}")]
    Redis(String),
    /// The script's reply did not have the expected shape (a bug or a foreign script).
    #[error("unexpected reply from the limiter script: {0}")]
    Reply(String),
    /// Redis failed recently; calls skip it until the next probe.
    #[error("redis unreachable ({0}); next probe pending")]
    Skipped(String),
}

#[derive(Debug, Default)]
struct Health {
    /// The failure that took Redis down, and when the next probe may run (client clock).
    down: Option<(String, Nanos)>,
}

/// Where the limiter's state lives: one server, or a cluster's seed nodes.
#[derive(Clone)]
enum Target {
    Single(redis::Client),
    Cluster(ClusterClient),
}

/// A connection to the [`Target`]: one multiplexed, reconnecting connection to the server,
/// or a cluster connection that routes each call to the node owning its keys' slot (and
/// `FUNCTION LOAD`/`SCRIPT LOAD` to every primary).
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// Connection, script and health of one limiter.
pub(crate) struct Link {
    target: Target,
    manager: Mutex<Option<Connection>>,
    connecting: tokio::sync::Mutex<()>,
    /// Whether the script (or library) was loaded once: until then, a call loads it first.
    loaded: AtomicBool,
    /// One first load at a time.
    loading: tokio::sync::Mutex<()>,
    sha: String,
    timeout: Duration,
    probe_interval: Duration,
    clock: Arc<dyn Clock>,
    health: Mutex<Health>,
    probing: AtomicBool,
    reloads: AtomicU64,
    /// `MODE_FUNCTION` or `MODE_SCRIPT`: the configured preference, then what loading
    /// settled on (a server that refuses functions turns it to `MODE_SCRIPT` for good).
    mode: AtomicU8,
    /// The library's (and its one function's) name: `hub_limiter_<sha prefix>`, so that
    /// processes running different script versions never replace each other's.
    function: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "Single",
            Self::Cluster(_) => "Cluster",
        })
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("target", &self.target)
            .field("sha", &self.sha)
            .field("function", &self.function)
            .field("timeout", &self.timeout)
            .field("health", &*self.health.lock())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A link to `url` (not connected yet: the first call connects and loads the script);
    /// `functions` = try the function library first; `cluster` = `url` lists a Redis
    /// Cluster's seed nodes, comma-separated.
    pub fn new(
        url: &str,
        timeout: Duration,
        probe_interval: Duration,
        clock: Arc<dyn Clock>,
        functions: bool,
        cluster: bool,
    ) -> Result<Self, RedisFailure> {
        let invalid = |e: redis::RedisError| RedisFailure::Redis(e.to_string());
        let target = if cluster {
            let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
            let client = ClusterClientBuilder::new(nodes)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(1)
                .build()
                .map_err(invalid)?;
            Target::Cluster(client)
        } else {
            Target::Single(redis::Client::open(url).map_err(invalid)?)
        };
        let sha = redis::Script::new(SCRIPT).get_hash().to_owned();
        let function = format!("hub_limiter_{}", &sha[..16]);
        Ok(Self {
            target,
            manager: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            loaded: AtomicBool::new(false),
            loading: tokio::sync::Mutex::new(()),
            sha,
            timeout,
            probe_interval,
            clock,
            health: Mutex::new(Health::default()),
            probing: AtomicBool::new(false),
            reloads: AtomicU64::new(0),
            mode: AtomicU8::new(if functions {
                MODE_FUNCTION
            } else {
                MODE_SCRIPT
            }),
            function,
        })
    }

    /// Whether calls go through `FCALL` (else `EVALSHA`).
    pub fn uses_functions(&self) -> bool {
        self.mode.load(Ordering::Relaxed) == MODE_FUNCTION
    }

    /// How often the script had to be loaded again (`Function not found`, `NOSCRIPT`).
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Whether the last call failed (and the gate is closed until the next probe).
    pub fn is_down(&self) -> bool {
        self.health.lock().down.is_some()
    }

    /// A connection, establishing it (once, bounded by the timeout) if needed.
    async fn connection(&self) -> Result<Connection, RedisFailure> {
        if let Some(m) = self.manager.lock().clone() {
            return Ok(m);
        }
        let _one = self.connecting.lock().await;
        if let Some(m) = self.manager.lock().clone() {
            return Ok(m);
        }
        let connect = async {
            match &self.target {
                Target::Single(client) => {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(self.timeout)
                        .set_response_timeout(self.timeout)
                        .set_number_of_retries(1)
                        .set_factor(10)
                        .set_max_delay(self.timeout.as_millis().max(1) as u64);
                    ConnectionManager::new_with_config(client.clone(), config)
                        .await
                        .map(Connection::Single)
                }
                Target::Cluster(client) => {
                    client.get_async_connection().await.map(Connection::Cluster)
                }
            }
        };
        let manager = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| RedisFailure::Timeout(self.timeout))?
            .map_err(|e| RedisFailure::Redis(e.to_string()))?;
        *self.manager.lock() = Some(manager.clone());
        Ok(manager)
    }

    /// Loads the script (at connect or before the first call, and after `Function not
    /// found` / `NOSCRIPT`): as a function library when enabled and the server accepts it,
    /// else as a script (a server without `FUNCTION`, or whose ACL forbids it, answers
    /// with an error reply, and the link falls back to `EVALSHA` for good).
    pub async fn load_script(&self) -> Result<(), RedisFailure> {
        self.load().await?;
        self.loaded.store(true, Ordering::Release);
        Ok(())
    }

    /// Loads the script unless it was loaded once already (a lazily built limiter's first
    /// call; one load at a time). A server that lost it later is handled by `call`.
    async fn ensure_loaded(&self) -> Result<(), RedisFailure> {
        if self.loaded.load(Ordering::Acquire) {
            return Ok(());
        }
        let _one = self.loading.lock().await;
        if self.loaded.load(Ordering::Acquire) {
            return Ok(());
        }
        self.load_script().await
    }

    async fn load(&self) -> Result<(), RedisFailure> {
        let mut con = self.connection().await?;
        if self.uses_functions() {
            let library = format!(
                "#!lua name={name}\nlocal FUNCTION_NAME = '{name}'\n{SCRIPT}",
                name = self.function
            );
            let mut cmd = redis::cmd("FUNCTION");
            cmd.arg("LOAD").arg("REPLACE").arg(library);
            let loaded = tokio::time::timeout(self.timeout, cmd.query_async::<String>(&mut con))
                .await
                .map_err(|_| RedisFailure::Timeout(self.timeout))?;
            match loaded {
                Ok(name) if name == self.function => return Ok(()),
                Ok(name) => {
                    return Err(RedisFailure::Reply(format!(
                        "library {name} loaded instead of {}",
                        self.function
                    )))
                }
                Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => {
                    return Err(RedisFailure::Redis(e.to_string()))
                }
                Err(e) => {
                    tracing::info!(error = %e, "redis functions unavailable; using EVALSHA");
                    self.mode.store(MODE_SCRIPT, Ordering::Relaxed);
                }
            }
        }
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(SCRIPT);
        let sha = tokio::time::timeout(self.timeout, cmd.query_async::<String>(&mut con))
            .await
            .map_err(|_| RedisFailure::Timeout(self.timeout))?
            .map_err(|e| RedisFailure::Redis(e.to_string()))?;
        if sha != self.sha {
            return Err(RedisFailure::Reply(format!(
                "script sha {sha} differs from the local {}",
                self.sha
            )));
        }
        Ok(())
    }

    /// Runs the script's `op` on `keys` with the key's idle TTL (ms, decimal), its plan
    /// and the op's packed values, through the health gate: a closed gate fails at once
    /// with [`RedisFailure::Skipped`]; an answer opens it, a failure closes it for one
    /// probe interval.
    pub async fn call(
        &self,
        keys: &[String],
        op: &str,
        ttl_ms: &str,
        plan: &[u8],
        values: &[u8],
    ) -> Result<Vec<i64>, RedisFailure> {
        let probing = self.pass_gate()?;
        // Reopens the probe slot however this call ends (also when its future is dropped).
        let _probe = ProbeSlot(probing.then_some(&self.probing));
        let call = async {
            self.ensure_loaded().await?;
            let mut reloaded = false;
            loop {
                let mut cmd = if self.uses_functions() {
                    let mut c = redis::cmd("FCALL");
                    c.arg(&self.function);
                    c
                } else {
                    let mut c = redis::cmd("EVALSHA");
                    c.arg(&self.sha);
                    c
                };
                cmd.arg(keys.len())
                    .arg(keys)
                    .arg(op)
                    .arg(ttl_ms)
                    .arg(plan)
                    .arg(values);
                match self.eval(&cmd).await {
                    Err(Missing) if !reloaded => {
                        self.reloads.fetch_add(1, Ordering::Relaxed);
                        self.load_script().await?;
                        reloaded = true;
                    }
                    Err(Missing) => {
                        return Err(RedisFailure::Reply(
                            "the limiter script is missing right after loading it".into(),
                        ))
                    }
                    Ok(result) => return result,
                }
            }
        };
        let result = tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or(Err(RedisFailure::Timeout(self.timeout)));
        self.observe(&result);
        result
    }

    /// Ok(true) when this call is the probe of a closed gate.
    fn pass_gate(&self) -> Result<bool, RedisFailure> {
        let health = self.health.lock();
        match &health.down {
            None => Ok(false),
            Some((reason, next)) => {
                if self.clock.now() >= *next
                    && self
                        .probing
                        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    Ok(true)
                } else {
                    Err(RedisFailure::Skipped(reason.clone()))
                }
            }
        }
    }

    fn observe(&self, result: &Result<Vec<i64>, RedisFailure>) {
        let mut health = self.health.lock();
        match result {
            Ok(_) => {
                if let Some((reason, _)) = health.down.take() {
                    tracing::info!(%reason, "redis limiter backend is back");
                }
            }
            // A script that answered with an error is a bug, not an outage; still deny
            // through the failure policy, but keep calling.
            Err(RedisFailure::Reply(_)) => {}
            Err(e) => {
                if health.down.is_none() {
                    tracing::warn!(error = %e, "redis limiter backend failed");
                }
                let next = self.clock.now().saturating_add(nanos(self.probe_interval));
                health.down = Some((e.to_string(), next));
            }
        }
    }

    /// One call: `Err(Missing)` when the server does not have the script or function
    /// (flushed, restarted without persistence, failed over), for the caller to load it.
    async fn eval(&self, cmd: &redis::Cmd) -> Result<Result<Vec<i64>, RedisFailure>, Missing> {
        let mut con = match self.connection().await {
            Ok(con) => con,
            Err(e) => return Ok(Err(e)),
        };
        Ok(match cmd.query_async::<Value>(&mut con).await {
            Ok(v) => ints(v),
            Err(e) if e.kind() == ErrorKind::NoScriptError => return Err(Missing),
            Err(e)
                if e.kind() == ErrorKind::ResponseError
                    && e.detail().is_some_and(|d| d.contains("Function not found")) =>
            {
                return Err(Missing)
            }
            Err(e)
                if e.kind() == ErrorKind::ExtensionError
                    || e.kind() == ErrorKind::ResponseError =>
            {
                Err(RedisFailure::Reply(e.to_string()))
            }
            Err(e) => Err(RedisFailure::Redis(e.to_string())),
        })
    }
}

/// The server does not know the script or function.
#[derive(Debug)]
struct Missing;

struct ProbeSlot<'a>(Option<&'a AtomicBool>);

impl Drop for ProbeSlot<'_> {
    fn drop(&mut self) {
        if let Some(flag) = self.0 {
            flag.store(false, Ordering::Release);
        }
    }
}

fn ints(v: Value) -> Result<Vec<i64>, RedisFailure> {
    match v {
        Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Value::Int(n) => Ok(n),
                other => Err(RedisFailure::Reply(format!("{other:?}"))),
            })
            .collect(),
        other => Err(RedisFailure::Reply(format!("{other:?}"))),
    }
}
