//! Hosts on one machine for fault tests: each a network namespace with a veth into a bridge in
//! the test's own namespace (which is a host too: `10.<net>.0.1`, where the test, Redis and the
//! clients run). Partitions are blackhole routes inside the namespaces, so any pair of hosts can
//! be cut in either direction and healed. Everything is removed on drop. Needs root and
//! iproute2 (`apt-get install iproute2`).

use std::process::Command;

/// A bridge and its hosts.
pub struct Net {
    /// Second octet of every address: unique per test process.
    pub octet: u8,
    bridge: String,
    /// `(namespace, address)` of each host but the root.
    pub hosts: Vec<(String, String)>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `ip` ({e}): install iproute2 (`apt-get install iproute2`)")
    });
    assert!(
        out.status.success(),
        "ip {}: {} (network namespaces need root)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    /// A bridge with `n` hosts `10.<octet>.0.2 ..`; the root is `10.<octet>.0.1`.
    pub fn new(n: usize) -> Net {
        // Unique per process and test: two suites may run at once on one machine.
        let octet = u8::try_from(std::process::id() % 200 + 20).unwrap();
        let tag = format!("hx{octet}");
        let bridge = format!("{tag}br");
        let _ = Command::new("ip").args(["link", "del", &bridge]).output();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["addr", "add", &format!("10.{octet}.0.1/24"), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        let mut net = Net { octet, bridge, hosts: Vec::new() };
        for i in 0..n {
            let ns = format!("{tag}h{i}");
            let addr = format!("10.{octet}.0.{}", i + 2);
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
            ip(&["netns", "add", &ns]);
            let (outer, inner) = (format!("{tag}v{i}"), format!("{tag}i{i}"));
            let _ = Command::new("ip").args(["link", "del", &outer]).output();
            ip(&["link", "add", &outer, "type", "veth", "peer", "name", &inner]);
            ip(&["link", "set", &inner, "netns", &ns]);
            ip(&["link", "set", &outer, "master", &net.bridge]);
            ip(&["link", "set", &outer, "up"]);
            ip(&["netns", "exec", &ns, "ip", "addr", "add", &format!("{addr}/24"), "dev", &inner]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", &inner, "up"]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
            net.hosts.push((ns, addr));
        }
        net
    }

    /// The root's address (the test, Redis, the clients).
    pub fn root(&self) -> String {
        format!("10.{}.0.1", self.octet)
    }

    /// The command prefix that runs a program on host `i`.
    pub fn on(&self, i: usize) -> Vec<String> {
        ["ip", "netns", "exec"]
            .iter()
            .map(|s| (*s).to_owned())
            .chain([self.hosts[i].0.clone()])
            .collect()
    }

    /// Cuts host `a` off from `b` (an address: a host's or the root's), both ways.
    pub fn cut(&self, a: usize, b: &str) {
        let (ns, addr) = &self.hosts[a];
        ip(&["netns", "exec", ns, "ip", "route", "add", "blackhole", &format!("{b}/32")]);
        if let Some(j) = self.hosts.iter().position(|h| h.1 == b) {
            let other = &self.hosts[j].0;
            ip(&["netns", "exec", other, "ip", "route", "add", "blackhole", &format!("{addr}/32")]);
        } else {
            // The root: it routes to the host through the bridge; a blackhole there cuts it.
            ip(&["route", "add", "blackhole", &format!("{addr}/32")]);
        }
    }

    /// Removes every cut.
    pub fn heal(&self) {
        for (ns, _) in &self.hosts {
            let _ = Command::new("ip")
                .args(["netns", "exec", ns, "ip", "route", "flush", "type", "blackhole"])
                .output();
        }
        for (_, addr) in &self.hosts {
            let _ = Command::new("ip")
                .args(["route", "del", "blackhole", &format!("{addr}/32")])
                .output();
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.heal();
        for (i, (ns, _)) in self.hosts.iter().enumerate() {
            // Whatever still runs in the namespace goes with it.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).output();
                }
            }
            let _ =
                Command::new("ip").args(["link", "del", &format!("hx{}v{i}", self.octet)]).output();
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).output();
    }
}
