//! A three-node NATS cluster with JetStream for the tests and the benchmark: each node on free
//! ports (client, cluster, monitoring) with its own store directory; killed on drop. Fails
//! with a message naming the package to install.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `nats-server` of the cluster.
pub struct NatsNode {
    pub name: String,
    /// Its address (127.0.0.1, or its host's in a network namespace).
    pub ip: String,
    pub port: u16,
    /// What runs it (`ip netns exec <ns>`), if anything.
    prefix: Vec<String>,
    pub monitor: u16,
    conf: PathBuf,
    log: PathBuf,
    pub child: Option<Child>,
}

impl NatsNode {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg("nats-server");
                c
            }
            None => Command::new("nats-server"),
        };
        let child = cmd
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start nats-server ({e}): install it with `apt-get install nats-server`"
                )
            });
        self.child = Some(child);
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `/healthz` answers 200: the server runs and JetStream on it is current.
    pub fn healthy(&self) -> bool {
        let Ok(mut s) = TcpStream::connect((self.ip.as_str(), self.monitor)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = "GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n";
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200")
    }
}

/// Three nodes, routes between all of them.
pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl NatsCluster {
    /// Starts three nodes on 127.0.0.1 under `dir` and waits until each is healthy.
    pub fn start(dir: &Path) -> NatsCluster {
        let hosts = (0..3).map(|_| ("127.0.0.1".to_owned(), Vec::new())).collect();
        NatsCluster::start_on(dir, hosts)
    }

    /// Starts one node per `(address, prefix)` (a network namespace's address and `ip netns
    /// exec <ns>`; on 127.0.0.1 each node gets free ports, elsewhere the standard ones).
    pub fn start_on(dir: &Path, hosts: Vec<(String, Vec<String>)>) -> NatsCluster {
        let ports: Vec<(u16, u16, u16)> = hosts
            .iter()
            .map(|(ip, _)| {
                if ip == "127.0.0.1" {
                    (free_port(), free_port(), free_port())
                } else {
                    (4222, 6222, 8222)
                }
            })
            .collect();
        let mut nodes = Vec::new();
        for (i, ((ip, prefix), (port, cluster, monitor))) in
            hosts.into_iter().zip(&ports).enumerate()
        {
            let name = format!("n{}", i + 1);
            let store = dir.join(format!("nats-{name}"));
            std::fs::create_dir_all(&store).unwrap();
            let routes: Vec<String> = ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(j, p)| format!("nats-route://{}:{}", route_ip(&ip, j, i), p.1))
                .collect();
            let conf = dir.join(format!("nats-{name}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "server_name: {name}\nlisten: {ip}:{port}\nhttp: {ip}:{monitor}\n\
                     jetstream {{ store_dir: {store:?}, max_memory_store: 64MB, max_file_store: 4GB }}\n\
                     cluster {{ name: hx, listen: {ip}:{cluster}, routes: [{}] }}\n",
                    routes.join(", ")
                ),
            )
            .unwrap();
            let log = dir.join(format!("nats-{name}.log"));
            let mut node = NatsNode {
                name,
                ip,
                port: *port,
                prefix,
                monitor: *monitor,
                conf,
                log,
                child: None,
            };
            node.spawn();
            nodes.push(node);
        }
        let c = NatsCluster { nodes };
        let up =
            super::ha::wait_for(Duration::from_secs(60), || c.nodes.iter().all(NatsNode::healthy));
        assert!(up, "the NATS cluster did not become healthy: {}", c.logs());
        c
    }

    /// `nats://<ip>:<p1>,nats://<ip>:<p2>,…` (every node).
    pub fn url(&self) -> String {
        let urls: Vec<String> =
            self.nodes.iter().map(|n| format!("nats://{}:{}", n.ip, n.port)).collect();
        urls.join(",")
    }

    /// Starts node `i` again (after a kill), with its data.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].spawn();
    }

    /// Every node's log, for a failure message.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(&n.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                format!("--- {}\n{}", n.name, tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The address node `j` is reached at from node `i` whose address is `ip_i`: on 127.0.0.1
/// every node shares it; in namespaces `10.x.0.<k>` are consecutive from the first.
fn route_ip(ip_i: &str, j: usize, i: usize) -> String {
    if ip_i == "127.0.0.1" {
        return ip_i.to_owned();
    }
    let (net, last) = ip_i.rsplit_once('.').expect("an IPv4 address");
    let last: usize = last.parse().expect("an IPv4 address");
    format!("{net}.{}", last - i + j)
}

/// A view of the JetStream journal at `url` (the test bridge key, 5 s a call).
pub fn log(url: &str) -> hundredx::replication::nats::NatsLog {
    let cfg = hundredx::replication::NatsJournal { url: url.to_owned(), replicas: 3 };
    let key = redis_bridge::test_support::test_key();
    hundredx::replication::nats::NatsLog::new(cfg, key, Duration::from_secs(5))
}

/// Every record of the journal from the start, in order (retried for up to a minute while a
/// stream leader is being elected after a fault).
pub fn read_records(log: &mut hundredx::replication::nats::NatsLog) -> Vec<(u64, Vec<u8>)> {
    use hundredx::replication::ReplicatedLog;
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let after = out.last().map_or(0, |e| e.0);
        let read = match log.read_after(after, 10_000, Duration::ZERO) {
            Ok(read) => read,
            Err(e) if Instant::now() < deadline => {
                eprintln!("reading the journal: {e}; retrying");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            Err(e) => panic!("reading the journal: {e}"),
        };
        if read.entries.is_empty() {
            return out;
        }
        out.extend(read.entries);
    }
}

/// Every command in the JetStream journal at `url`, in order.
pub fn read_journal(url: &str) -> Vec<(u64, engine_core::command::Command)> {
    read_records(&mut log(url))
        .into_iter()
        .map(|(seq, bytes)| {
            let (rseq, cmd) =
                engine_core::persist::RecordReader::new(&bytes).next().unwrap().unwrap();
            assert_eq!(rseq, seq, "a record at its own sequence");
            (seq, cmd)
        })
        .collect()
}
