//! A throwaway `redis-server` for tests and benchmarks: a free port, a given directory, no
//! persistence, killed on drop. Fails with a message naming the package to install.

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
