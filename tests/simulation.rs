//! Deterministic simulation of the replication protocol on JetStream, in the spirit of
//! TigerBeetle's VOPR: the real log logic (`hundredx::replication::nats::NatsLog`: appends
//! fenced by the expected last sequence, the retry by message id, the takeover's seal, the
//! lease by revision, reads by binary search and from a cursor) over an in-memory JetStream
//! (`SimJs`: one stream with JetStream's expected-last-sequence and deduplication rules, one
//! key-value bucket with compare-and-set by revision), driven by a seeded scheduler with three
//! engine nodes running the real engine (`engine_core::state::Engine`).
//!
//! Faults, all from the seed: a call refused before it reaches the stream (unavailable); a
//! publish stored but its acknowledgement lost; a publish delayed and stored later, after other
//! nodes' calls (a stale leader's append arriving after a takeover); a node cut off for a while;
//! a node crashing and losing the unsynced tail of its local journal, then restarting as a
//! standby with a new lease token; arbitrary interleavings (the scheduler picks who runs).
//!
//! Invariants after every step: the journal is dense from 1; every acknowledged request is in
//! it exactly once and no request id twice; every node's local journal is a prefix of it. At
//! the end: every node's state equals a replay of the journal up to where it is, and the
//! conservation identity holds. A failure names its seed and step; `HUNDREDX_SIM_SEED=<n>`
//! replays it alone. `HUNDREDX_SIM_SEEDS` / `HUNDREDX_SIM_STEPS` set the run's size
//! (`scripts/simulate` for long runs).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use engine_core::event::Output;
use engine_core::persist::{MAX_RECORD_BYTES, RecordReader, encode_record};
use engine_core::prelude::*;
use hundredx::replication::ReplicatedLog;
use hundredx::replication::journal::{AppendError, LogError};
use hundredx::replication::nats::{Msg, NatsLog, StreamState, Transport};

/// xorshift64*, the only source of choice.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1_000) < per_mille
    }
}

/// A publish on its way: stored when the scheduler delivers it.
struct InFlight {
    headers: HeaderMap,
    payload: Bytes,
    id: String,
    after: u64,
}

/// JetStream, in memory: one stream and one bucket, plus the faults.
struct SimJs {
    rng: Rng,
    /// Stream sequence → message (deleted ones removed).
    stream: Vec<Option<Msg>>,
    ids: HashMap<String, u64>,
    kv: HashMap<String, (Bytes, u64)>,
    revision: u64,
    in_flight: Vec<InFlight>,
    /// Messages deleted or purged, and the first still held (kept as they change: the state
    /// is asked for at every read).
    removed: u64,
    first: u64,
    /// Nodes cut off, by node, until which step.
    cut_until: Vec<u64>,
    step: u64,
}

impl SimJs {
    fn last(&self) -> u64 {
        self.stream.len() as u64
    }

    fn recount(&mut self) {
        self.removed = self.stream.iter().filter(|m| m.is_none()).count() as u64;
        self.first = self.stream.iter().flatten().next().map_or(self.last() + 1, |m| m.sequence);
    }

    /// JetStream's rules: a known id answers its sequence; then the expected last sequence.
    fn store(&mut self, f: InFlight) -> Option<u64> {
        if let Some(seq) = self.ids.get(&f.id) {
            return Some(*seq);
        }
        if f.after != self.last() {
            return None;
        }
        let sequence = self.last() + 1;
        self.stream.push(Some(Msg { sequence, headers: f.headers, payload: f.payload }));
        self.ids.insert(f.id, sequence);
        Some(sequence)
    }
}

/// One node's connection to [`SimJs`].
struct SimLink {
    js: Arc<Mutex<SimJs>>,
    node: usize,
}

impl SimLink {
    /// Refused before reaching the stream: the node is cut off, or (rarely) unavailable.
    fn gate(&self) -> Result<std::sync::MutexGuard<'_, SimJs>, LogError> {
        let mut js = self.js.lock().unwrap();
        if js.cut_until[self.node] > js.step || js.rng.chance(20) {
            return Err(LogError::Nats("sim: unavailable".into()));
        }
        Ok(js)
    }
}

impl Transport for SimLink {
    fn state(&mut self) -> Result<StreamState, LogError> {
        let js = self.gate()?;
        Ok(StreamState {
            messages: js.last() - js.removed,
            first_sequence: js.first,
            last_sequence: js.last(),
        })
    }

    fn get(&mut self, seq: u64) -> Result<Option<Msg>, LogError> {
        let js = self.gate()?;
        let i = usize::try_from(seq).unwrap_or(usize::MAX).wrapping_sub(1);
        Ok(js.stream.get(i).cloned().flatten())
    }

    fn follow(&mut self, from: u64, max: usize, _wait: Duration) -> Result<Vec<Msg>, LogError> {
        let js = self.gate()?;
        let start = usize::try_from(from.max(1) - 1).unwrap();
        Ok(js.stream.iter().skip(start).flatten().take(max).cloned().collect())
    }

    fn publish(
        &mut self,
        headers: HeaderMap,
        payload: Bytes,
        id: &str,
        after: u64,
    ) -> Result<Option<u64>, LogError> {
        let mut js = self.gate()?;
        let f = InFlight { headers, payload, id: id.to_owned(), after };
        if js.rng.chance(60) {
            js.in_flight.push(f); // stored later, if at all: the caller times out
            return Err(LogError::Nats("sim: no acknowledgement yet".into()));
        }
        let stored = js.store(f);
        if js.rng.chance(40) {
            return Err(LogError::Nats("sim: acknowledgement lost".into()));
        }
        Ok(stored)
    }

    fn delete(&mut self, seq: u64) -> Result<(), LogError> {
        let mut js = self.gate()?;
        if let Some(m) = js.stream.get_mut(usize::try_from(seq - 1).unwrap())
            && m.take().is_some()
        {
            js.removed += 1;
            js.recount();
        }
        Ok(())
    }

    fn purge_below(&mut self, seq: u64) -> Result<(), LogError> {
        let mut js = self.gate()?;
        for m in js.stream.iter_mut().take(usize::try_from(seq.saturating_sub(1)).unwrap()) {
            *m = None;
        }
        js.recount();
        Ok(())
    }

    fn entry(&mut self, key: &str) -> Result<Option<(Bytes, u64)>, LogError> {
        Ok(self.gate()?.kv.get(key).cloned())
    }

    fn swap(&mut self, key: &str, value: Bytes, revision: u64) -> Result<bool, LogError> {
        let mut js = self.gate()?;
        let now = js.kv.get(key).map_or(0, |e| e.1);
        if now != revision {
            return Ok(false);
        }
        js.revision += 1;
        let r = js.revision;
        js.kv.insert(key.to_owned(), (value, r));
        Ok(true)
    }

    fn put(&mut self, key: &str, value: Bytes) -> Result<(), LogError> {
        let mut js = self.gate()?;
        js.revision += 1;
        let r = js.revision;
        js.kv.insert(key.to_owned(), (value, r));
        Ok(())
    }

    fn remove(&mut self, key: &str, revision: Option<u64>) -> Result<(), LogError> {
        let mut js = self.gate()?;
        if revision.is_none_or(|r| js.kv.get(key).is_some_and(|e| e.1 == r)) {
            js.kv.remove(key);
        }
        Ok(())
    }

    fn keys(&mut self) -> Result<Vec<String>, LogError> {
        Ok(self.gate()?.kv.keys().cloned().collect())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Down,
    Standby,
    /// Won the lease: reading to the end, then sealing.
    Finishing,
    Leading,
}

/// An engine node: the real engine, its local journal (commands, the synced prefix), and two
/// views of the log as the real process has (the input stage's and the standby's/lease's).
struct Node {
    role: Role,
    incarnation: u64,
    token: String,
    engine: Engine,
    local: Vec<Command>,
    synced: usize,
    stage: NatsLog<SimLink>,
    log: NatsLog<SimLink>,
    /// A leader's batch not yet acknowledged by the log.
    pending: Vec<Command>,
}

/// Every node's starting state: four accounts, outside the journal. With their ids, as the
/// engine gave them.
fn genesis() -> (Engine, Vec<AccountId>) {
    let cfg = hundredx::config_file::load_engine(None).unwrap();
    let mut e = Engine::new(cfg).unwrap();
    let accounts = (0..4)
        .map(|i| {
            let login = Login::new(&format!("sim{i}@x")).unwrap();
            let kind = CommandKind::CreateAccount { login, credential: Credential::empty() };
            let out = e.apply_collect(&Command::new(RequestId(0), 1, kind));
            out.iter()
                .find_map(|o| match o {
                    Output::Change(r) => match r.change {
                        engine_core::event::Change::AccountCreated { account, .. } => Some(account),
                        _ => None,
                    },
                    _ => None,
                })
                .unwrap_or_else(|| panic!("a genesis account: {out:?}"))
        })
        .collect();
    (e, accounts)
}

/// One seed's world.
struct World {
    seed: u64,
    rng: Rng,
    js: Arc<Mutex<SimJs>>,
    nodes: Vec<Node>,
    accounts: Vec<AccountId>,
    next_request: u64,
    acked: Vec<u64>,
    acked_checked: usize,
    prefix_checked: [usize; 3],
    /// The journal as decoded so far, and the stream sequence read up to.
    journal: Vec<Command>,
    read_upto: u64,
    ids_in_journal: HashSet<u64>,
    key: redis_bridge::signing::BridgeKey,
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let js = Arc::new(Mutex::new(SimJs {
            rng: Rng(rng.next() | 1),
            stream: Vec::new(),
            ids: HashMap::new(),
            kv: HashMap::new(),
            revision: 0,
            in_flight: Vec::new(),
            removed: 0,
            first: 1,
            cut_until: vec![0; 3],
            step: 0,
        }));
        let key = redis_bridge::test_support::test_key();
        let (_, accounts) = genesis();
        let mut w = World {
            seed,
            rng,
            js,
            nodes: Vec::new(),
            accounts,
            next_request: 1,
            acked: Vec::new(),
            acked_checked: 0,
            prefix_checked: [0; 3],
            journal: Vec::new(),
            read_upto: 0,
            ids_in_journal: HashSet::new(),
            key,
        };
        for i in 0..3 {
            let node = w.fresh_node(i, 0, Vec::new());
            w.nodes.push(node);
        }
        w
    }

    fn link(&self, node: usize) -> SimLink {
        SimLink { js: Arc::clone(&self.js), node }
    }

    /// A node (re)started from its local journal, as a standby.
    fn fresh_node(&self, i: usize, incarnation: u64, local: Vec<Command>) -> Node {
        let (mut engine, _) = genesis();
        for c in &local {
            let _ = engine.apply_collect(c);
        }
        Node {
            role: Role::Standby,
            incarnation,
            token: format!("engine-{i}:{incarnation}"),
            engine,
            synced: local.len(),
            local,
            stage: NatsLog::with_transport(self.link(i), self.key.clone()),
            log: NatsLog::with_transport(self.link(i), self.key.clone()),
            pending: Vec::new(),
        }
    }

    fn fail(&self, step: u64, what: &str) -> ! {
        panic!(
            "seed {} step {step}: {what} (HUNDREDX_SIM_SEED={} reproduces it)",
            self.seed, self.seed
        );
    }

    /// A client's next command, with a unique request id.
    fn command(&mut self, ts: u64) -> Command {
        let account = self.accounts[usize::try_from(self.rng.below(4)).unwrap()];
        let kind = match self.rng.below(10) {
            0..=3 => CommandKind::Deposit { account, amount: Usdc::from_whole(5), key: None },
            4..=5 => CommandKind::Withdraw { account, amount: Usdc::from_whole(3), key: None },
            6..=7 => CommandKind::PriceTick(Tick {
                market: MarketId(0),
                bid: Price(6_000_000 + i64::try_from(self.rng.below(400_000)).unwrap()),
                ask: Price(6_400_100),
                update_id: ts,
                exchange_time_us: ts / 1_000,
            }),
            _ => CommandKind::OpenPosition(OpenRequest::new(
                account,
                MarketId(0),
                if self.rng.below(2) == 0 { Side::Long } else { Side::Short },
                u32::try_from(self.rng.below(50) + 1).unwrap(),
                Size::Margin(Usdc::from_whole(2)),
            )),
        };
        let id = self.next_request;
        self.next_request += 1;
        Command::new(RequestId(id), ts, kind)
    }

    /// Applies log records `(seq, bytes)` to node `i` after `applied`; a gap is a violation.
    fn follow(&mut self, i: usize, step: u64, entries: Vec<(u64, Vec<u8>)>) {
        for (seq, bytes) in entries {
            let n = &mut self.nodes[i];
            let expect = n.local.len() as u64 + 1;
            if seq != expect {
                self.fail(step, &format!("node {i} read record {seq} after {}", expect - 1));
            }
            let (_, cmd) = RecordReader::new(&bytes).next().unwrap().unwrap();
            let _ = n.engine.apply_collect(&cmd);
            n.local.push(cmd);
            n.synced = n.local.len();
        }
    }

    /// One step of node `i`, by its role.
    fn run_node(&mut self, i: usize, step: u64) {
        let role = self.nodes[i].role;
        match role {
            Role::Down => {
                if self.rng.chance(300) {
                    let n = &self.nodes[i];
                    let local = n.local[..n.synced].to_vec();
                    let inc = n.incarnation + 1;
                    self.nodes[i] = self.fresh_node(i, inc, local);
                }
            }
            Role::Standby => {
                let applied = self.nodes[i].local.len() as u64;
                if let Ok(read) = self.nodes[i].log.read_after(applied, 16, Duration::ZERO) {
                    self.follow(i, step, read.entries);
                }
                let token = self.nodes[i].token.clone();
                // A lease of zero: taken whenever the holder did not renew between two looks.
                if self.rng.chance(200)
                    && matches!(self.nodes[i].log.try_lead(&token, Duration::ZERO), Ok(true))
                {
                    self.nodes[i].role = Role::Finishing;
                }
            }
            Role::Finishing => self.finish(i, step),
            Role::Leading => self.lead(i, step),
        }
    }

    fn finish(&mut self, i: usize, step: u64) {
        let applied = self.nodes[i].local.len() as u64;
        let Ok(read) = self.nodes[i].log.read_after(applied, 16, Duration::ZERO) else { return };
        if !read.entries.is_empty() {
            return self.follow(i, step, read.entries);
        }
        let token = self.nodes[i].token.clone();
        match self.nodes[i].log.seal(&token, applied) {
            Ok(true) => self.nodes[i].role = Role::Leading,
            Ok(false) | Err(AppendError::Unavailable(_) | AppendError::NotReplicated(_)) => {}
            Err(AppendError::Fenced(_) | AppendError::Lease) => self.depose(i),
            Err(AppendError::Gap(g)) => self.fail(step, &format!("seal found a gap: {g}")),
        }
    }

    fn lead(&mut self, i: usize, step: u64) {
        let token = self.nodes[i].token.clone();
        if self.rng.chance(150) {
            let kept = self.nodes[i].log.keep(&token, Duration::ZERO);
            if let Ok(hundredx::replication::journal::Kept::Lost(_)) = kept {
                return self.depose(i);
            }
        }
        if self.nodes[i].pending.is_empty() {
            let n = self.rng.below(4) + 1;
            for _ in 0..n {
                let cmd = self.command(step * 1_000_000);
                self.nodes[i].pending.push(cmd);
            }
        }
        let first = self.nodes[i].local.len() as u64 + 1;
        let mut buf = [0u8; MAX_RECORD_BYTES];
        let encoded: Vec<(u64, Vec<u8>)> = self.nodes[i]
            .pending
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let seq = first + k as u64;
                let len = encode_record(seq, c, &mut buf);
                (seq, buf[..len].to_vec())
            })
            .collect();
        let refs: Vec<(u64, &[u8])> = encoded.iter().map(|(s, b)| (*s, b.as_slice())).collect();
        match self.nodes[i].stage.append(&token, &refs, 0, Duration::ZERO) {
            Ok(()) => {
                // Acknowledged by the log: applied, journaled locally, answered.
                let batch = std::mem::take(&mut self.nodes[i].pending);
                for c in batch {
                    let _ = self.nodes[i].engine.apply_collect(&c);
                    self.acked.push(c.request_id.0);
                    self.nodes[i].local.push(c);
                }
                if self.rng.chance(700) {
                    self.nodes[i].synced = self.nodes[i].local.len();
                }
            }
            Err(AppendError::Fenced(_) | AppendError::Lease) => self.depose(i),
            Err(AppendError::Gap(g)) => self.fail(step, &format!("node {i}: gap: {g}")),
            Err(_) => {} // not acknowledged: the same batch again later
        }
    }

    /// Exits (75) and comes back as a standby from its local journal.
    fn depose(&mut self, i: usize) {
        let n = &self.nodes[i];
        let local = n.local.clone();
        let inc = n.incarnation + 1;
        self.nodes[i] = self.fresh_node(i, inc, local);
    }

    /// The world's own events: deliveries of publishes in flight, cuts, crashes.
    fn weather(&mut self, step: u64) {
        let mut js = self.js.lock().unwrap();
        js.step = step;
        if !js.in_flight.is_empty() && js.rng.chance(300) {
            let len = js.in_flight.len() as u64;
            let k = usize::try_from(js.rng.below(len)).unwrap();
            let f = js.in_flight.swap_remove(k);
            if js.rng.chance(800) {
                let _ = js.store(f);
            } // else lost for good
        }
        if js.rng.chance(5) {
            let n = usize::try_from(js.rng.below(3)).unwrap();
            js.cut_until[n] = step + js.rng.below(200);
        }
        drop(js);
        if self.rng.chance(4) {
            let i = usize::try_from(self.rng.below(3)).unwrap();
            let n = &mut self.nodes[i];
            // A crash: the unsynced tail of the local journal is lost.
            n.local.truncate(n.synced);
            n.role = Role::Down;
        }
    }

    /// Decodes what the stream gained since the last check; the journal's invariants.
    fn check(&mut self, step: u64) {
        let msgs: Vec<Msg> = {
            let js = self.js.lock().unwrap();
            js.stream
                .iter()
                .skip(usize::try_from(self.read_upto).unwrap())
                .flatten()
                .cloned()
                .collect()
        };
        for m in msgs {
            self.read_upto = m.sequence;
            let h =
                |n: &str| m.headers.get(n).and_then(|v| v.as_str().parse::<u64>().ok()).unwrap();
            let (first, last) = (h("Hx-First"), h("Hx-Last"));
            if first != self.journal.len() as u64 + 1 {
                self.fail(
                    step,
                    &format!(
                        "stream seq {} holds {first}..={last} after {}",
                        m.sequence,
                        self.journal.len()
                    ),
                );
            }
            for r in RecordReader::new(&m.payload) {
                let (seq, cmd) = r.unwrap();
                assert_eq!(seq, self.journal.len() as u64 + 1);
                if cmd.request_id.0 != 0 && !self.ids_in_journal.insert(cmd.request_id.0) {
                    self.fail(step, &format!("request {} twice in the journal", cmd.request_id.0));
                }
                self.journal.push(cmd);
            }
        }
        for id in &self.acked[self.acked_checked..] {
            if !self.ids_in_journal.contains(id) {
                self.fail(step, &format!("acknowledged request {id} is not in the journal"));
            }
        }
        self.acked_checked = self.acked.len();
        for (i, n) in self.nodes.iter().enumerate() {
            // A local journal only grows at its end or loses its tail: what was checked stays.
            let from = self.prefix_checked[i].min(n.local.len());
            let prefix = self.journal.get(from..n.local.len());
            if prefix != Some(&n.local[from..]) {
                self.fail(
                    step,
                    &format!(
                        "node {i}'s local journal ({}) is not a prefix of the journal ({})",
                        n.local.len(),
                        self.journal.len()
                    ),
                );
            }
        }
    }

    fn run(&mut self, steps: u64) {
        for step in 1..=steps {
            self.weather(step);
            let i = usize::try_from(self.rng.below(3)).unwrap();
            self.run_node(i, step);
            self.check(step);
        }
        // Every running node = a replay of the journal to where it is; conservation holds. (A
        // node down has no state but its local journal, checked above at every step.)
        for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| n.role != Role::Down) {
            let (mut replay, _) = genesis();
            for c in &self.journal[..n.local.len()] {
                let _ = replay.apply_collect(c);
            }
            if replay.state_hash() != n.engine.state_hash() {
                self.fail(steps, &format!("node {i}'s state differs from the journal's replay"));
            }
            if let Err(e) = n.engine.check_conservation() {
                self.fail(steps, &format!("node {i}: conservation: {e}"));
            }
        }
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn the_replication_protocol_keeps_every_acknowledged_command_under_simulated_faults() {
    let seeds: Vec<u64> = match std::env::var("HUNDREDX_SIM_SEED").ok().and_then(|v| v.parse().ok())
    {
        Some(one) => vec![one],
        None => (1..=env("HUNDREDX_SIM_SEEDS", 1_000)).collect(),
    };
    let steps = env("HUNDREDX_SIM_STEPS", 500);
    let (mut acked, mut journaled, mut leaders) = (0usize, 0usize, 0u64);
    for seed in &seeds {
        let mut w = World::new(*seed);
        w.run(steps);
        acked += w.acked.len();
        journaled += w.journal.len();
        leaders += w.nodes.iter().map(|n| n.incarnation).sum::<u64>();
    }
    println!(
        "simulation: {} seeds x {steps} steps: {acked} commands acknowledged, {journaled} \
         journaled, {leaders} restarts/depositions, 0 violations",
        seeds.len()
    );
    assert!(acked > seeds.len(), "the simulated leaders got commands acknowledged");
}
