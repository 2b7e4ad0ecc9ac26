//! The open-loop latency harness (exchange-core style), shared by `benches/ring_latency.rs` and
//! its `--quick` test.
//!
//! A generator publishes a realistic mix — 90% price ticks over three markets, 10% opens, closes
//! and margin adds from many accounts, on top of preloaded open positions, with occasional price
//! jumps that liquidate — at a fixed offered rate. Command `i` is *planned* at `i / rate` after the
//! start; its latency is the moment its reply is seen minus that planned time, so a stall delays
//! every command queued behind it (no coordinated omission). Every command carries a request id,
//! so every command, ticks included, produces exactly one reply to time.
//!
//! Three pipelines run the same `Engine::apply` on a second thread:
//! - `disruptor`: the engine's in-ring and out-ring; the generator thread also polls the out-ring
//!   (the event poller), so two threads own the two cores;
//! - `crossbeam`: bounded crossbeam channels in and out;
//! - `mpsc`: `std::sync::mpsc::sync_channel` in and out.

use std::time::{Duration, Instant};

use engine_core::prelude::*;
use hdrhistogram::Histogram;

/// Which transport carries commands to the engine thread and results back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipeline {
    /// The engine's disruptor rings.
    Disruptor,
    /// crossbeam bounded channels.
    Crossbeam,
    /// std mpsc sync channels.
    Mpsc,
}

impl Pipeline {
    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Pipeline::Disruptor => "disruptor",
            Pipeline::Crossbeam => "crossbeam",
            Pipeline::Mpsc => "std mpsc",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct HarnessConfig {
    /// Offered rates, commands per second.
    pub rates: Vec<u64>,
    /// Measured time per rate (after the warm-up).
    pub run: Duration,
    /// Warm-up per rate (sent, not recorded).
    pub warmup: Duration,
    /// Accounts.
    pub accounts: u32,
    /// Positions opened before the run.
    pub preload: u32,
    /// Pin the engine thread to core 1 and the generator to core 0 (if they exist).
    pub pin: bool,
    /// Pipelines to compare.
    pub pipelines: Vec<Pipeline>,
    /// Run the hiccup meter (a sleeping thread per core) beside each run.
    pub hiccup: bool,
    /// Slots of the command ring (or channel); the result ring has twice as many (every
    /// command replies, a tick also records its price).
    pub ring_slots: usize,
    /// Time the hand-offs apart from the engine's work (see [`HandOffs`]).
    pub split_hand_offs: bool,
}

impl HarnessConfig {
    /// Seconds, for CI: tiny preload, one modest rate.
    pub fn quick() -> HarnessConfig {
        HarnessConfig {
            rates: vec![50_000],
            run: Duration::from_millis(200),
            warmup: Duration::from_millis(50),
            accounts: 100,
            preload: 1_000,
            pin: false,
            pipelines: vec![Pipeline::Disruptor, Pipeline::Crossbeam, Pipeline::Mpsc],
            hiccup: true,
            ring_slots: RuntimeConfig::default().in_ring_size,
            split_hand_offs: false,
        }
    }

    /// The full sweep: 10k accounts, 100k preloaded positions, 100k .. 10M commands/s.
    pub fn full() -> HarnessConfig {
        HarnessConfig {
            rates: vec![100_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000],
            run: Duration::from_secs(3),
            warmup: Duration::from_millis(500),
            accounts: 10_000,
            preload: 100_000,
            pin: true,
            pipelines: vec![Pipeline::Disruptor, Pipeline::Crossbeam, Pipeline::Mpsc],
            hiccup: true,
            ring_slots: RuntimeConfig::default().in_ring_size,
            split_hand_offs: false,
        }
    }
}

/// One pipeline at one rate.
#[derive(Debug)]
pub struct RateResult {
    /// Pipeline.
    pub pipeline: Pipeline,
    /// Offered commands/s.
    pub offered: u64,
    /// Commands planned (warm-up included).
    pub planned: u64,
    /// Commands sent (warm-up included).
    pub sent: u64,
    /// Replies seen (warm-up included).
    pub received: u64,
    /// Achieved replies/s over the whole run.
    pub achieved: u64,
    /// Latency from planned send time to reply, ns (warm-up excluded).
    pub hist: Histogram<u64>,
    /// Positions liquidated during the run.
    pub liquidations: u64,
    /// What the engine thread measured about itself (service time per command).
    pub engine: SelfTimes,
    /// The engine thread's scheduling over the measured run (preemptions, run-queue wait).
    pub engine_sched: Sched,
    /// The generator thread's, likewise.
    pub generator_sched: Sched,
    /// Per core, how late a sleeping thread woke (jHiccup's method), when measured.
    pub hiccups: Vec<Histogram<u64>>,
    /// The measured part of the run (after the warm-up).
    pub measured: Duration,
    /// Cache-line round trip between core 0 and core 1 before and after the run, ns (median of
    /// [`core_round_trip_ns`]'s batches), when pinned.
    pub round_trip_ns: Option<(u64, u64)>,
}

const BASE_TS: u64 = 1_700_000_000_000_000_000;

/// The command mix: deterministic, so every pipeline sees the same commands.
pub struct Mix {
    x: u64,
    mids: [i64; 3],
    updates: [u64; 3],
    accounts: u32,
    preload: u64,
    next_close: u64,
}

impl Mix {
    /// The mix over `accounts` accounts and the `preload` positions [`preloaded_engine`] opened.
    pub fn new(accounts: u32, preload: u32) -> Mix {
        Mix {
            x: 0x9E37_79B9_7F4A_7C15,
            mids: [6_000_000, 300_000, 15_000],
            updates: [1; 3],
            accounts,
            preload: u64::from(preload),
            next_close: 1,
        }
    }

    fn rnd(&mut self) -> u64 {
        self.x ^= self.x << 13;
        self.x ^= self.x >> 7;
        self.x ^= self.x << 17;
        self.x
    }

    /// Owner of preloaded position `p` (round-robin over accounts).
    fn owner(&self, p: u64) -> AccountId {
        AccountId(u32::try_from((p - 1) % u64::from(self.accounts)).unwrap_or(0) + 1)
    }

    /// The next command of the mix.
    pub fn next_command(&mut self) -> CommandKind {
        let r = self.rnd();
        let m = usize::try_from(r % 3).unwrap_or(0);
        if r % 10 < 9 {
            let mid = self.mids[m];
            // A walk of up to ±10 ppm per tick, pulled back towards the start so it stays within
            // a fraction of a percent; no preloaded position (at most 50x, liquidated ~1.5% away)
            // is touched by it.
            let step = mid * (i64::try_from((r >> 8) % 21).unwrap_or(0) - 10) / 1_000_000;
            let start = [6_000_000, 300_000, 15_000][m];
            let revert = (start - mid) / 1_000;
            // One tick in 200k jumps 1.6%, up or down, past the liquidation price of the
            // 49-50x positions on one side: the occasional liquidation cascade of the mix.
            let jump = if (r >> 20).is_multiple_of(200_000) {
                mid * 16 / 1_000 * if r & 1 == 0 { 1 } else { -1 }
            } else {
                0
            };
            self.mids[m] = (mid + step + jump + revert).max(100);
            self.updates[m] += 1;
            let bid = Price(self.mids[m]);
            return CommandKind::PriceTick(Tick {
                market: MarketId(u16::try_from(m).unwrap_or(0)),
                bid,
                ask: Price(bid.0 + 2),
                update_id: self.updates[m],
                exchange_time_us: 0,
            });
        }
        let account = AccountId(u32::try_from(r % u64::from(self.accounts)).unwrap_or(0) + 1);
        match (r >> 4) % 3 {
            0 => CommandKind::OpenPosition(OpenRequest::new(
                account,
                MarketId(u16::try_from(m).unwrap_or(0)),
                if r & 32 == 0 { Side::Long } else { Side::Short },
                u32::try_from(r % 46).unwrap_or(0) + 5,
                Size::Margin(Usdc::from_whole(10 + i64::try_from(r % 90).unwrap_or(0))),
            )),
            1 if self.next_close <= self.preload => {
                let p = self.next_close;
                self.next_close += 1;
                CommandKind::ClosePosition {
                    account: self.owner(p),
                    position: PositionId(p),
                    quantity: None,
                    key: None,
                }
            }
            _ => {
                let p = 1 + r % self.preload.max(1);
                CommandKind::AddMargin {
                    account: self.owner(p),
                    position: PositionId(p),
                    amount: Usdc::from_whole(1),
                    key: None,
                }
            }
        }
    }
}

/// A fresh engine with accounts, prices and preloaded positions, configured for the harness,
/// with room for `headroom` more open positions.
pub fn preloaded_engine(accounts: u32, preload: u32, headroom: u32) -> Engine {
    let cfg = EngineConfig {
        max_accounts: accounts + 16,
        max_open_positions: preload + headroom.max(1),
        closed_history_per_account: 16,
        request_id_window: 0, // every command has an id here; do not remember them
        idempotency_keys_per_account: 0,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(cfg).expect("harness config is valid");
    let mut out = Vec::new();
    let mut apply = |e: &mut Engine, kind| {
        out.clear();
        e.apply(&Command::new(RequestId::NONE, BASE_TS, kind), &mut out);
    };
    for a in 0..accounts {
        let login = Login::new(&format!("h{a}@x")).expect("short login");
        apply(&mut e, CommandKind::CreateAccount { login, credential: Credential::empty() });
        apply(
            &mut e,
            CommandKind::Deposit {
                account: AccountId(a + 1),
                // 10^7 USDC each: 10 000 accounts stay within the money ceiling (10^12 USDC all
                // accounts together; 10^9 each was refused past the first thousand).
                amount: Usdc::from_whole(10_000_000),
                key: None,
            },
        );
    }
    assert_eq!(e.summary().accounts, accounts, "every account created");
    for (m, mid) in [6_000_000i64, 300_000, 15_000].into_iter().enumerate() {
        let tick = Tick {
            market: MarketId(u16::try_from(m).unwrap_or(0)),
            bid: Price(mid),
            ask: Price(mid + 2),
            update_id: 1,
            exchange_time_us: 0,
        };
        apply(&mut e, CommandKind::PriceTick(tick));
    }
    for p in 0..preload {
        let open = OpenRequest::new(
            AccountId(p % accounts + 1),
            MarketId(u16::try_from(p % 3).unwrap_or(0)),
            if p % 2 == 0 { Side::Long } else { Side::Short },
            2 + p % 49,
            Size::Margin(Usdc::from_whole(100)),
        );
        apply(&mut e, CommandKind::OpenPosition(open));
    }
    assert_eq!(e.open_positions(), preload as usize, "preload opened every position");
    e
}

/// One cache line, alone (no false sharing with anything else).
#[repr(align(128))]
struct Line(std::sync::atomic::AtomicU64);

/// How long a cache line takes to go from core 0 to core 1 and back (ns): two threads, pinned
/// one per core, hand a counter back and forth through one line. 9 batches of 2 000 round
/// trips; the median batch's mean. What a command's slot and its reply cost to cross between
/// the generator and the engine — on a VM it depends on where the host placed the two vCPUs
/// (the same physical core's two hyperthreads, two cores, two sockets), which can change.
/// Pins the calling thread to core 0 (call it on a thread of its own).
pub fn core_round_trip_ns() -> u64 {
    use std::sync::atomic::Ordering::{Acquire, Release};
    const TRIPS: u64 = 2_000;
    const BATCHES: u64 = 9;
    let line = std::sync::Arc::new(Line(std::sync::atomic::AtomicU64::new(0)));
    let other = std::sync::Arc::clone(&line);
    let echo = std::thread::spawn(move || {
        pin_current(1);
        for i in 0..TRIPS * BATCHES {
            while other.0.load(Acquire) != 2 * i + 1 {
                std::hint::spin_loop();
            }
            other.0.store(2 * i + 2, Release);
        }
    });
    pin_current(0);
    let mut means: Vec<u64> = (0..BATCHES)
        .map(|b| {
            let t = Instant::now();
            for i in b * TRIPS..(b + 1) * TRIPS {
                line.0.store(2 * i + 1, Release);
                while line.0.load(Acquire) != 2 * i + 2 {
                    std::hint::spin_loop();
                }
            }
            elapsed_ns(t) / TRIPS
        })
        .collect();
    echo.join().expect("echo thread");
    means.sort_unstable();
    means[means.len() / 2]
}

fn pin_current(core: usize) {
    if let Some(id) =
        core_affinity::get_core_ids().unwrap_or_default().into_iter().find(|c| c.id == core)
    {
        core_affinity::set_for_current(id);
    }
}

/// The engine thread's own time per command: `Engine::apply` timed inside the engine thread
/// (`Instant` before and after; the reply's hand-off into the out-ring or channel is part of it
/// unless the hand-offs are timed apart — [`HandOffs`] — and waiting for a command is not). Commands that liquidated are kept apart: a cascade's cost grows
/// with its size, so it is reported with its size.
#[derive(Debug)]
pub struct SelfTimes {
    /// Service time of commands that liquidated nothing, ns.
    pub service: Histogram<u64>,
    /// Service time of commands that liquidated (cascades), ns.
    pub cascades: Histogram<u64>,
    /// Positions liquidated by the largest cascade.
    pub cascade_size_max: u64,
    /// Its service time, ns.
    pub cascade_size_max_ns: u64,
    /// The cost of one `Instant::now()` pair on this machine (included in every figure), ns.
    pub clock_ns: u64,
    /// `service` split by command: see [`KINDS`].
    pub by_kind: Vec<Histogram<u64>>,
    /// When set, the hand-offs are timed apart and `service`, `cascades` and `by_kind` hold
    /// `Engine::apply` alone.
    pub hand_offs: Option<HandOffs>,
}

/// The two hand-offs of a command, timed apart from the engine's work: the command is copied
/// out of its slot (the cache line(s) the generator's core wrote come over) before the clock
/// for `apply` starts, and `apply` writes its outputs into a local buffer that is moved into
/// the out-ring (lines the generator's core last read) after that clock stops. Each interval
/// includes one clock read (half of [`SelfTimes::clock_ns`]).
#[derive(Debug)]
pub struct HandOffs {
    /// Copying the command out of its slot, ns.
    pub hand_in: Histogram<u64>,
    /// Moving the outputs into the out-ring (or channel), ns.
    pub hand_out: Histogram<u64>,
    /// The outputs of the command being applied (reserved once; a cascade may grow it).
    outputs: Vec<Output>,
}

/// The command kinds `SelfTimes::by_kind` splits service times into.
pub const KINDS: [&str; 5] = ["tick", "open", "close", "add margin", "other"];

fn kind_index(kind: &CommandKind) -> usize {
    match kind {
        CommandKind::PriceTick(_) => 0,
        CommandKind::OpenPosition(_) => 1,
        CommandKind::ClosePosition { .. } => 2,
        CommandKind::AddMargin { .. } => 3,
        _ => 4,
    }
}

impl SelfTimes {
    fn new(split_hand_offs: bool) -> SelfTimes {
        let hist = || Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("bounds");
        SelfTimes {
            service: hist(),
            cascades: hist(),
            cascade_size_max: 0,
            cascade_size_max_ns: 0,
            clock_ns: clock_cost_ns(),
            by_kind: KINDS.iter().map(|_| hist()).collect(),
            hand_offs: split_hand_offs.then(|| HandOffs {
                hand_in: hist(),
                hand_out: hist(),
                outputs: Vec::with_capacity(4_096),
            }),
        }
    }

    /// Applies `cmd`, timing it. Recording into a pre-sized HDR histogram does not allocate.
    #[inline]
    fn apply(&mut self, engine: &mut Engine, cmd: &Command, sink: &mut impl Sink) {
        let liquidated = engine.counters().liquidations;
        let ns = match self.hand_offs.as_mut() {
            None => {
                let t0 = Instant::now();
                engine.apply(cmd, sink);
                elapsed_ns(t0)
            }
            Some(h) => h.apply(engine, cmd, sink),
        };
        let size = engine.counters().liquidations - liquidated;
        if size == 0 {
            let _ = self.service.record(ns);
            let _ = self.by_kind[kind_index(&cmd.kind)].record(ns);
        } else {
            let _ = self.cascades.record(ns);
            if size > self.cascade_size_max {
                self.cascade_size_max = size;
                self.cascade_size_max_ns = ns;
            }
        }
    }
}

impl HandOffs {
    /// Copies `cmd` in, applies it into the local buffer, moves the outputs to `sink`: records
    /// the hand-offs, returns `apply`'s time.
    #[inline]
    fn apply(&mut self, engine: &mut Engine, cmd: &Command, sink: &mut impl Sink) -> u64 {
        let t0 = Instant::now();
        let cmd = std::hint::black_box(*cmd);
        let t1 = Instant::now();
        engine.apply(&cmd, &mut self.outputs);
        let t2 = Instant::now();
        for o in self.outputs.drain(..) {
            sink.emit(o);
        }
        let _ = self.hand_in.record(nanos(t1 - t0));
        let _ = self.hand_out.record(elapsed_ns(t2));
        nanos(t2 - t1)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

fn elapsed_ns(since: Instant) -> u64 {
    nanos(since.elapsed())
}

/// The smallest gap between two consecutive `Instant::now()` calls.
fn clock_cost_ns() -> u64 {
    (0..1000)
        .map(|_| {
            let a = Instant::now();
            u64::try_from(a.elapsed().as_nanos()).unwrap_or(u64::MAX)
        })
        .min()
        .unwrap_or(0)
}

/// What the engine thread reports when it stops.
#[derive(Debug)]
struct EngineDone {
    liquidations: u64,
    times: SelfTimes,
}

/// A thread's scheduling counters (Linux `/proc/<pid>/task/<tid>/{schedstat,status}`), or their
/// difference over a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sched {
    /// Time on the CPU, ns.
    pub run_ns: u64,
    /// Time runnable but waiting on the run queue, ns.
    pub wait_ns: u64,
    /// Involuntary context switches: preemptions.
    pub preemptions: u64,
    /// Voluntary context switches: times it slept and was woken (a hand-off to it, or I/O).
    pub woken: u64,
}

impl Sched {
    /// The counters of thread `tid` of this process now (zeros where unreadable).
    pub fn of(tid: u64) -> Sched {
        let stat =
            std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).unwrap_or_default();
        let mut f = stat.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
        let status =
            std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap_or_default();
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        Sched {
            run_ns: f.next().unwrap_or(0),
            wait_ns: f.next().unwrap_or(0),
            preemptions: field("nonvoluntary_ctxt_switches:"),
            woken: field("voluntary_ctxt_switches:"),
        }
    }

    /// The difference from `before`.
    pub fn since(self, before: Sched) -> Sched {
        Sched {
            run_ns: self.run_ns.saturating_sub(before.run_ns),
            wait_ns: self.wait_ns.saturating_sub(before.wait_ns),
            preemptions: self.preemptions.saturating_sub(before.preemptions),
            woken: self.woken.saturating_sub(before.woken),
        }
    }

    /// Adds `other`'s counters (threads of one name summed).
    pub fn plus(self, other: Sched) -> Sched {
        Sched {
            run_ns: self.run_ns + other.run_ns,
            wait_ns: self.wait_ns + other.wait_ns,
            preemptions: self.preemptions + other.preemptions,
            woken: self.woken + other.woken,
        }
    }
}

/// The calling thread's id.
pub fn current_tid() -> u64 {
    u64::from(rustix::thread::gettid().as_raw_nonzero().get().unsigned_abs())
}

/// jHiccup's method: one thread per core, pinned there, sleeping 1 ms again and again and
/// recording how late it woke. What it records is what any code on that core suffers from the
/// platform (scheduler, interrupts, other processes, the hypervisor) — no engine code runs in it.
/// Its own wake-ups cost the core's busy thread about 1000 short preemptions a second.
#[derive(Debug)]
pub struct Hiccups {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Histogram<u64>>>,
}

impl Hiccups {
    /// Starts a meter on each of the first `cores` cores.
    pub fn start(cores: usize) -> Hiccups {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ids = core_affinity::get_core_ids().unwrap_or_default();
        let threads = ids
            .into_iter()
            .take(cores)
            .map(|core| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    core_affinity::set_for_current(core);
                    hiccup_loop(&stop)
                })
            })
            .collect();
        Hiccups { stop, threads }
    }

    /// Stops the meters; one histogram (ns late) per core.
    pub fn stop(self) -> Vec<Histogram<u64>> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.threads.into_iter().filter_map(|t| t.join().ok()).collect()
    }
}

fn hiccup_loop(stop: &std::sync::atomic::AtomicBool) -> Histogram<u64> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    let period = Duration::from_millis(1);
    // Linux may fire a sleeper's timer up to its timer slack (50 µs by default) late to batch
    // wake-ups: 1 ns, so lateness is the platform's. The floor left (the wake-up itself) is
    // measured in the first 20 sleeps and taken off, like jHiccup's.
    let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
    let mut floor = u64::MAX;
    let mut n = 0u32;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let t0 = Instant::now();
        std::thread::sleep(period);
        let late = u64::try_from((t0.elapsed().saturating_sub(period)).as_nanos()).unwrap_or(0);
        n += 1;
        if n <= 20 {
            floor = floor.min(late);
            continue;
        }
        let _ = hist.record(late.saturating_sub(floor).max(1));
    }
    hist
}

/// The transport-independent half: publish on schedule, drain replies, time them.
trait Transport: Send {
    /// Hands over a prefix of `cmds` without blocking; returns how many were taken.
    fn try_send(&mut self, cmds: &[Command]) -> usize;
    /// Calls `f(request_id)` for every reply available now.
    fn drain(&mut self, f: &mut dyn FnMut(u64));
    /// The engine thread's id, once it has applied a command.
    fn engine_tid(&self) -> u64;
    /// Stops the engine thread; returns what it reports.
    fn finish(self: Box<Self>) -> EngineDone;
}

/// The disruptor pipeline built here the way the processor builds it (multi-producer in-ring,
/// the engine thread, single-producer out-ring), but read by the generator's own event poller,
/// like the channel pipelines read their channel: the comparison is ring against channel, and
/// the production processor needs no benchmark-only mode.
struct DisruptorT {
    producer: Option<disruptor::MultiProducer<Command, disruptor::SingleConsumerBarrier>>,
    poller: disruptor::EventPoller<Output, disruptor::SingleProducerBarrier>,
    done: std::sync::mpsc::Receiver<EngineDone>,
    tid: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// The engine thread's state: on drop (the in-ring shut down) it reports its counts and times,
/// then drops the out-ring producer, which ends the poller.
struct EngineStage {
    engine: Engine,
    out: RingSink,
    times: Option<SelfTimes>,
    done: std::sync::mpsc::Sender<EngineDone>,
}

impl Drop for EngineStage {
    fn drop(&mut self) {
        let liquidations = self.engine.counters().liquidations;
        if let Some(times) = self.times.take() {
            let _ = self.done.send(EngineDone { liquidations, times });
        }
    }
}

struct RingSink(disruptor::SingleProducer<Output, disruptor::SingleConsumerBarrier>);

impl engine_core::event::Sink for RingSink {
    fn emit(&mut self, output: Output) {
        use disruptor::Producer;
        self.0.publish(|slot| *slot = output);
    }
}

impl DisruptorT {
    /// Rings of the processor's default size and the out-ring twice that (every command
    /// replies), the engine thread busy-spinning, pinned to `pin_core` if given.
    fn start(
        engine: Engine,
        pin_core: Option<usize>,
        ring_slots: usize,
        split: bool,
    ) -> DisruptorT {
        use disruptor::ProcessorSettings;
        let cfg = RuntimeConfig {
            in_ring_size: ring_slots,
            out_ring_size: ring_slots * 2,
            pin_core,
            wait: WaitMode::BusySpin,
            ..RuntimeConfig::default()
        };
        let (poller, out_builder) = disruptor::build_single_producer(
            cfg.out_ring_size,
            Output::default,
            disruptor::BusySpin,
        )
        .new_event_poller();
        let out = RingSink(out_builder.build());
        let (done, done_rx) = std::sync::mpsc::channel();
        let tid = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let tid_w = tid.clone();
        let builder = disruptor::build_multi_producer(
            cfg.in_ring_size,
            Command::default,
            disruptor::BusySpin,
        )
        .thread_name("bench-engine");
        let builder = match cfg.pin_core {
            Some(core) => builder.pin_at_core(core),
            None => builder,
        };
        let producer = builder
            .handle_events_and_state_with(
                |s: &mut EngineStage, cmd: &Command, _: disruptor::Sequence, _: bool| {
                    if let Some(t) = s.times.as_mut() {
                        t.apply(&mut s.engine, cmd, &mut s.out);
                    }
                },
                move || {
                    tid_w.store(current_tid(), std::sync::atomic::Ordering::Release);
                    EngineStage { engine, out, times: Some(SelfTimes::new(split)), done }
                },
            )
            .build();
        DisruptorT { producer: Some(producer), poller, done: done_rx, tid }
    }
}

impl Transport for DisruptorT {
    fn try_send(&mut self, cmds: &[Command]) -> usize {
        use disruptor::Producer;
        let Some(p) = self.producer.as_mut() else { return 0 };
        let published = p.try_batch_publish(cmds.len(), |slots| {
            for (slot, cmd) in slots.zip(cmds) {
                *slot = *cmd;
            }
        });
        if published.is_ok() { cmds.len() } else { 0 }
    }

    fn drain(&mut self, f: &mut dyn FnMut(u64)) {
        if let Ok(mut guard) = self.poller.poll() {
            for o in &mut guard {
                if let Output::Reply { request_id, .. } = o {
                    f(request_id.0);
                }
            }
        }
    }

    fn engine_tid(&self) -> u64 {
        self.tid.load(std::sync::atomic::Ordering::Acquire)
    }

    fn finish(mut self: Box<Self>) -> EngineDone {
        // Dropping the producer drains and stops the engine thread; keep the out-ring flowing
        // meanwhile, until the engine's stage reports and the poller sees the shutdown.
        drop(self.producer.take());
        loop {
            match self.poller.poll() {
                Ok(mut guard) => for _ in &mut guard {},
                Err(disruptor::Polling::NoEvents) => std::hint::spin_loop(),
                Err(disruptor::Polling::Shutdown) => break,
            }
        }
        self.done.recv().expect("the engine stage reports when dropped")
    }
}

/// A channel pair and the engine thread between them.
struct ChannelT<S, R> {
    tx: Option<S>,
    rx: R,
    engine: Option<std::thread::JoinHandle<EngineDone>>,
    tid: std::sync::Arc<std::sync::atomic::AtomicU64>,
    try_send: fn(&S, Command) -> bool,
    try_recv: fn(&R) -> Option<Output>,
}

impl<S: Send, R: Send> Transport for ChannelT<S, R> {
    fn try_send(&mut self, cmds: &[Command]) -> usize {
        let tx = self.tx.as_ref().expect("open until finish");
        cmds.iter().take_while(|c| (self.try_send)(tx, **c)).count()
    }

    fn drain(&mut self, f: &mut dyn FnMut(u64)) {
        while let Some(o) = (self.try_recv)(&self.rx) {
            if let Output::Reply { request_id, .. } = o {
                f(request_id.0);
            }
        }
    }

    fn engine_tid(&self) -> u64 {
        self.tid.load(std::sync::atomic::Ordering::Acquire)
    }

    fn finish(mut self: Box<Self>) -> EngineDone {
        self.tx = None;
        // Drain until the engine thread is done (it exits when the command channel closes).
        let engine = self.engine.take().expect("running");
        while !engine.is_finished() {
            while (self.try_recv)(&self.rx).is_some() {}
            std::hint::spin_loop();
        }
        engine.join().expect("the engine thread does not panic")
    }
}

struct SinkTx<F: FnMut(Output)>(F);

impl<F: FnMut(Output)> Sink for SinkTx<F> {
    fn emit(&mut self, output: Output) {
        (self.0)(output);
    }
}

fn spawn_engine(
    mut engine: Engine,
    pin: bool,
    split: bool,
    tid: std::sync::Arc<std::sync::atomic::AtomicU64>,
    mut recv: impl FnMut() -> Option<Option<Command>> + Send + 'static,
    emit: impl FnMut(Output) + Send + 'static,
) -> std::thread::JoinHandle<EngineDone> {
    std::thread::spawn(move || {
        if pin {
            pin_current(1);
        }
        tid.store(current_tid(), std::sync::atomic::Ordering::Release);
        let mut times = SelfTimes::new(split);
        let mut sink = SinkTx(emit);
        loop {
            match recv() {
                Some(Some(cmd)) => times.apply(&mut engine, &cmd, &mut sink),
                Some(None) => std::hint::spin_loop(), // busy-spin like the disruptor engine
                None => break,
            }
        }
        EngineDone { liquidations: engine.counters().liquidations, times }
    })
}

/// A baseline pipeline: a bounded channel in, the engine on its own thread, a bounded channel
/// out. A macro because crossbeam and std channels share the shape, not a trait.
macro_rules! channel_pipeline {
    ($engine:expr, $pin:expr, $split:expr, $slots:expr, $bounded:path, $try_recv_error:path) => {{
        use $bounded as bounded;
        use $try_recv_error as E;
        let (tx, in_rx) = bounded::<Command>($slots);
        let (out_tx, rx) = bounded::<Output>($slots * 2);
        let recv = move || match in_rx.try_recv() {
            Ok(c) => Some(Some(c)),
            Err(E::Empty) => Some(None),
            Err(E::Disconnected) => None,
        };
        let emit = move |o| {
            let _ = out_tx.send(o);
        };
        let tid = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let engine = Some(spawn_engine($engine, $pin, $split, tid.clone(), recv, emit));
        Box::new(ChannelT {
            tx: Some(tx),
            rx,
            engine,
            tid,
            try_send: |tx, c| tx.try_send(c).is_ok(),
            try_recv: |rx| rx.try_recv().ok(),
        })
    }};
}

fn transport(
    p: Pipeline,
    engine: Engine,
    pin: bool,
    split: bool,
    slots: usize,
) -> Box<dyn Transport> {
    // (Built on the calling thread, before any pinning: see `run_one`.)
    match p {
        Pipeline::Disruptor => Box::new(DisruptorT::start(engine, pin.then_some(1), slots, split)),
        Pipeline::Crossbeam => {
            channel_pipeline!(
                engine,
                pin,
                split,
                slots,
                crossbeam_channel::bounded,
                crossbeam_channel::TryRecvError
            )
        }
        Pipeline::Mpsc => {
            channel_pipeline!(
                engine,
                pin,
                split,
                slots,
                std::sync::mpsc::sync_channel,
                std::sync::mpsc::TryRecvError
            )
        }
    }
}

/// Runs one pipeline at one offered rate.
pub fn run_one(cfg: &HarnessConfig, pipeline: Pipeline, rate: u64) -> RateResult {
    let pin = cfg.pin && core_affinity::get_core_ids().is_some_and(|c| c.len() >= 2);
    let engine = preloaded_engine(cfg.accounts, cfg.preload, 4_000_000);
    // On a thread of its own: it pins itself, and this thread's affinity must stay untouched.
    let probe = || std::thread::spawn(core_round_trip_ns).join().expect("probe");
    let before = pin.then(probe);
    let t = transport(pipeline, engine, pin, cfg.split_hand_offs, cfg.ring_slots);
    // The generator runs on a thread of its own, so pinning it leaves this thread's affinity
    // (which the next run's ring builder checks) untouched.
    let hiccups = cfg.hiccup.then(|| Hiccups::start(2));
    let cfg = cfg.clone();
    let mut r = std::thread::spawn(move || generate(&cfg, pipeline, rate, t, pin))
        .join()
        .expect("generator");
    r.hiccups = hiccups.map(Hiccups::stop).unwrap_or_default();
    r.round_trip_ns = before.zip(pin.then(probe));
    r
}

fn generate(
    cfg: &HarnessConfig,
    pipeline: Pipeline,
    rate: u64,
    mut t: Box<dyn Transport>,
    pin: bool,
) -> RateResult {
    if pin {
        pin_current(0);
    }
    let mut mix = Mix::new(cfg.accounts, cfg.preload);
    let interval_ns = 1_000_000_000 / rate.max(1);
    let warmup_n = u64::try_from(cfg.warmup.as_nanos()).unwrap_or(0) / interval_ns;
    let total = warmup_n + u64::try_from(cfg.run.as_nanos()).unwrap_or(0) / interval_ns;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
    let mut batch: Vec<Command> = Vec::with_capacity(256);
    let (mut sent, mut received) = (0u64, 0u64);
    let generator_tid = current_tid();
    let warmup_ns = warmup_n * interval_ns;
    let mut measured_from: Option<(Instant, Sched, Sched)> = None;
    let start = Instant::now();
    // Give up (the pipeline is saturated) well after the schedule ends.
    let deadline = start + cfg.run * 4 + cfg.warmup + Duration::from_secs(2);
    while received < total {
        let now = Instant::now();
        if now > deadline {
            break;
        }
        let now_ns = u64::try_from((now - start).as_nanos()).unwrap_or(u64::MAX);
        if measured_from.is_none() && now_ns >= warmup_ns && t.engine_tid() != 0 {
            let engine = Sched::of(t.engine_tid());
            measured_from = Some((now, engine, Sched::of(generator_tid)));
        }
        let due = (now_ns / interval_ns + 1).min(total);
        while sent + (batch.len() as u64) < due && batch.len() < 256 {
            let i = sent + batch.len() as u64;
            batch.push(Command::new(
                RequestId(i + 1),
                BASE_TS + i * interval_ns,
                mix.next_command(),
            ));
        }
        if !batch.is_empty() {
            let n = t.try_send(&batch);
            sent += n as u64;
            batch.drain(..n);
        }
        let seen_ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        t.drain(&mut |rid| {
            received += 1;
            let i = rid - 1;
            if i >= warmup_n {
                let planned = i * interval_ns;
                let _ = hist.record(seen_ns.saturating_sub(planned).max(1));
            }
        });
    }
    let elapsed = start.elapsed();
    let (from, engine_before, generator_before) =
        measured_from.unwrap_or((start, Sched::default(), Sched::default()));
    let engine_sched = Sched::of(t.engine_tid()).since(engine_before);
    let generator_sched = Sched::of(generator_tid).since(generator_before);
    let measured = from.elapsed();
    let EngineDone { liquidations, times } = t.finish();
    RateResult {
        pipeline,
        offered: rate,
        planned: total,
        sent,
        received,
        achieved: hundredx::durability::per_second(received, elapsed),
        hist,
        liquidations,
        engine: times,
        engine_sched,
        generator_sched,
        hiccups: Vec::new(),
        measured,
        round_trip_ns: None,
    }
}

/// Runs every pipeline at every rate (stopping a pipeline's sweep once it saturates), reporting
/// progress.
pub fn run(cfg: &HarnessConfig, mut progress: impl FnMut(&str)) -> Vec<RateResult> {
    let mut out = Vec::new();
    let runs = cfg.pipelines.len() * cfg.rates.len();
    let per_run = cfg.run + cfg.warmup;
    let mut k = 0;
    for &p in &cfg.pipelines {
        for &rate in &cfg.rates {
            k += 1;
            let left = per_run * u32::try_from(runs + 1 - k).unwrap_or(0);
            progress(&format!(
                "[{k}/{runs}] {} at {rate}/s (at most ~{}s left)",
                p.name(),
                left.as_secs()
            ));
            let r = run_one(cfg, p, rate);
            let saturated = !r.sustained();
            out.push(r);
            if saturated {
                progress(&format!("    {} saturated at {rate}/s: higher rates skipped", p.name()));
                k += cfg.rates.iter().filter(|r| **r > rate).count();
                break;
            }
        }
    }
    out
}

impl RateResult {
    /// Kept up with the offered rate: every reply arrived, >= 90% of the rate was achieved, and no
    /// queue built up (median latency under 100 µs).
    pub fn sustained(&self) -> bool {
        self.received == self.planned
            && self.achieved >= self.offered * 9 / 10
            && self.hist.value_at_quantile(0.5) < 100_000
    }
}

/// Resident memory of this process, bytes (Linux `/proc/self/statm`).
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
