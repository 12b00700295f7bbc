//! A private three-primary Redis Cluster for one test: three `redis-server
//! --cluster-enabled yes` on free loopback ports (each port + 10 000, the cluster bus, free
//! too), joined by `redis-cli --cluster create … --cluster-replicas 0`, killed when dropped.
//!
//! Like [`RedisServer`](super::redis_server::RedisServer), [`RedisCluster::start_or_skip`]
//! prints a SKIP line and returns `None` when `redis-server`/`redis-cli` are missing, except
//! under `CI=true`, where that is a failure.

#![allow(dead_code)] // each test file uses a different part of the helper

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Three running cluster primaries.
#[derive(Debug)]
pub struct RedisCluster {
    children: Vec<Child>,
    ports: Vec<u16>,
    dir: PathBuf,
}

static STARTED: AtomicUsize = AtomicUsize::new(0);

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(name).is_file()))
}

/// A free port whose cluster-bus port (+10 000) is free as well.
fn free_port_pair() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
        let port = l.local_addr().expect("local addr").port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl RedisCluster {
    /// Starts and joins three primaries, or returns `None` after printing the skip line
    /// when the binaries are missing (panics instead when `CI=true`).
    pub fn start_or_skip() -> Option<Self> {
        if !on_path("redis-server") || !on_path("redis-cli") {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("redis-server/redis-cli not on PATH, and CI=true requires the cluster test");
            }
            println!("SKIP: redis-server or redis-cli not found on PATH");
            return None;
        }
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("hub-cluster-{}-{n}", std::process::id()));
        let mut cluster = Self {
            children: Vec::new(),
            ports: Vec::new(),
            dir,
        };
        for i in 0..3 {
            let port = free_port_pair();
            let node_dir = cluster.dir.join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir).expect("create the node's temp dir");
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"])
                .args(["--cluster-config-file", "nodes.conf"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            cluster.children.push(child);
            cluster.ports.push(port);
        }
        for &port in &cluster.ports {
            wait_for(
                || command(port, &["PING"]).is_some_and(|r| r == "PONG"),
                "PONG",
            );
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run redis-cli --cluster create");
        assert!(created.success(), "redis-cli --cluster create failed");
        for &port in &cluster.ports {
            wait_for(
                || {
                    command(port, &["CLUSTER", "INFO"])
                        .is_some_and(|info| info.contains("cluster_state:ok"))
                },
                "cluster_state:ok",
            );
        }
        Some(cluster)
    }

    /// Seed URLs of every node, comma-separated (what `RedisSettings::cluster` expects).
    pub fn url(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The primaries' ports.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// How many keys the node on `port` holds (`DBSIZE`).
    pub fn dbsize(&self, port: u16) -> u64 {
        command(port, &["DBSIZE"])
            .and_then(|r| r.parse().ok())
            .expect("DBSIZE answers an integer")
    }

    /// The cluster's temp dir.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `ready` every 20 ms for up to 20 s (start-up, not a correctness wait).
fn wait_for(mut ready: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis cluster: no {what} within 20 s");
}

/// Sends one command (RESP array of bulk strings) and returns a simple, integer or bulk
/// reply as text; `None` when the node does not answer or answers an error.
fn command(port: u16, args: &[&str]) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).ok()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let line = line.trim_end();
    match line.as_bytes().first()? {
        b'+' | b':' => Some(line[1..].to_owned()),
        b'$' => {
            let len: usize = line[1..].parse().ok()?;
            let mut body = vec![0u8; len + 2];
            std::io::Read::read_exact(&mut r, &mut body).ok()?;
            body.truncate(len);
            String::from_utf8(body).ok()
        }
        _ => None,
    }
}
