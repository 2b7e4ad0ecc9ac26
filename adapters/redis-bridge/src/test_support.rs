//! A throwaway `redis-server` for tests and benchmarks: a free port, a given directory, no
//! persistence, killed on drop. Fails with a message naming the package to install. And a
//! throwaway Sentinel deployment: [`RedisHa`] (primary, replica, three sentinels).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// `redis://127.0.0.1:<port>/`.
    pub url: String,
}

impl RedisServer {
    /// Starts one on a free port, keeping its files in `dir`.
    pub fn start(dir: &Path) -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free local port");
        RedisServer::start_on(dir, port)
    }

    /// Starts one on `port` (e.g. to restart a killed one where clients expect it).
    pub fn start_on(dir: &Path, port: u16) -> RedisServer {
        RedisServer::start_with(dir, port, &["--port", &port.to_string()])
    }

    /// Starts one listening on `port` with `args` (which must make it listen there: `--port`,
    /// or `--port 0 --tls-port <port>` with TLS files, plus e.g. `--aclfile`).
    pub fn start_with(dir: &Path, port: u16, args: &[&str]) -> RedisServer {
        let child = Command::new("redis-server")
            .args(args)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install it with `apt-get install redis-server`")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { child, port, url: format!("redis://127.0.0.1:{port}/") }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// The master name the sentinels of [`RedisHa`] monitor.
pub const HA_MASTER: &str = "hundredx";

/// Primary + replica + three sentinels (quorum 2, a master is down after 1 s), each on a free
/// port with its own directory under the given one; all killed on drop.
#[derive(Debug)]
pub struct RedisHa {
    /// The data nodes by port: either may be the master after a failover.
    pub nodes: Vec<(u16, Option<RedisServer>)>,
    sentinels: Vec<Child>,
    /// Ports of the sentinels.
    pub sentinel_ports: Vec<u16>,
    /// `redis+sentinel://127.0.0.1:<p1>,…/hundredx`.
    pub url: String,
    dir: std::path::PathBuf,
}

impl RedisHa {
    /// Starts it and waits until every sentinel knows the master and its replica.
    pub fn start(dir: &Path) -> RedisHa {
        let (p1, p2) = (free_port(), free_port());
        let d1 = dir.join(format!("redis-{p1}"));
        let d2 = dir.join(format!("redis-{p2}"));
        for d in [&d1, &d2] {
            std::fs::create_dir_all(d).expect("redis dir");
        }
        let primary = RedisServer::start_on(&d1, p1);
        let replica = RedisServer::start_with(
            &d2,
            p2,
            &["--port", &p2.to_string(), "--replicaof", "127.0.0.1", &p1.to_string()],
        );
        let mut sentinels = Vec::new();
        let mut ports = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let conf = dir.join(format!("sentinel-{port}.conf"));
            let text = format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {HA_MASTER} 127.0.0.1 {p1} 2\n\
                 sentinel down-after-milliseconds {HA_MASTER} 1000\n\
                 sentinel failover-timeout {HA_MASTER} 4000\n\
                 sentinel parallel-syncs {HA_MASTER} 1\n",
                dir.display()
            );
            std::fs::write(&conf, text).expect("sentinel config");
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start redis-server --sentinel ({e}): install redis-server")
                });
            sentinels.push(child);
            ports.push(port);
        }
        let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let ha = RedisHa {
            nodes: vec![(p1, Some(primary)), (p2, Some(replica))],
            sentinels,
            sentinel_ports: ports,
            url: format!("redis+sentinel://{}/{HA_MASTER}", hosts.join(",")),
            dir: dir.to_path_buf(),
        };
        ha.wait_until(Duration::from_secs(20), |m, replicas| m == p1 && replicas >= 1);
        ha
    }

    /// The master's port as the sentinels see it, and how many replicas they know.
    fn ask(port: u16) -> Option<(u16, usize)> {
        let c = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
        let mut con = c.get_connection_with_timeout(Duration::from_millis(300)).ok()?;
        let (_, mport): (String, u16) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(HA_MASTER)
            .query(&mut con)
            .ok()?;
        let replicas: Vec<redis::Value> =
            redis::cmd("SENTINEL").arg("replicas").arg(HA_MASTER).query(&mut con).ok()?;
        let up = replicas
            .iter()
            .filter(|r| format!("{r:?}").contains("flags") && !format!("{r:?}").contains("s_down"))
            .count();
        Some((mport, up))
    }

    /// Waits until every sentinel's view satisfies `ok(master port, replicas up)`.
    pub fn wait_until(&self, within: Duration, ok: impl Fn(u16, usize) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            let views: Vec<_> = self.sentinel_ports.iter().map(|&p| RedisHa::ask(p)).collect();
            if views.iter().all(|v| v.is_some_and(|(m, r)| ok(m, r))) {
                return;
            }
            assert!(Instant::now() < deadline, "sentinels never agreed: {views:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The master's port (as the first sentinel that answers says).
    pub fn master_port(&self) -> u16 {
        self.sentinel_ports.iter().find_map(|&p| RedisHa::ask(p)).expect("a sentinel answers").0
    }

    /// SIGKILLs the data node on `port`.
    pub fn kill(&mut self, port: u16) {
        for (p, node) in &mut self.nodes {
            if *p == port {
                *node = None;
            }
        }
    }

    /// Starts the data node on `port` again, empty, as a replica of the current master (as a
    /// supervisor would). Started as a master instead, it would wait for the sentinels to
    /// demote it: they act on a node's reported role only after it has held for 8 s, probe
    /// replicas every 10 s, and pause for 30 s when a loaded machine delays their timer
    /// (TILT) — up to a minute before `WAIT 1` can succeed again.
    pub fn restart(&mut self, port: u16) {
        let d = self.dir.join(format!("redis-{port}"));
        let master = self.master_port().to_string();
        let args = ["--port", &port.to_string(), "--replicaof", "127.0.0.1", &master];
        for (p, node) in &mut self.nodes {
            if *p == port {
                *node = Some(RedisServer::start_with(&d, port, &args));
            }
        }
    }
}

impl Drop for RedisHa {
    fn drop(&mut self) {
        for s in &mut self.sentinels {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

/// The bridge secret tests and benchmarks share with the processes they start (as
/// `HUNDREDX_BRIDGE_SECRET`). Never a production secret.
pub const TEST_BRIDGE_SECRET: &str = "test-only-bridge-secret-0123456789abcdef";

/// [`TEST_BRIDGE_SECRET`] as a key.
pub fn test_key() -> crate::signing::BridgeKey {
    crate::signing::BridgeKey::new(TEST_BRIDGE_SECRET.as_bytes())
        .unwrap_or_else(|e| unreachable!("the test secret is long enough: {e}"))
}

/// A target for a plain local `redis://` URL.
pub fn target(url: &str) -> crate::target::RedisTarget {
    crate::target::RedisTarget::new(url)
}
