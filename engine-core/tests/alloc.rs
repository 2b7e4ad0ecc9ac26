//! Zero heap allocations per price tick, per open/close and per liquidation in steady state.
//!
//! A counting global allocator counts allocations made by the current thread only (other tests
//! in this binary run on other threads). The engine runs exactly as on the engine thread:
//! `Engine::apply` into a reused sink.
//!
//! The one audited place in the workspace that uses `unsafe`: a `GlobalAlloc` must be an
//! `unsafe impl`. It only forwards to the system allocator.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::*;
use engine_core::prelude::*;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: delegates every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}

struct Rig {
    engine: Engine,
    out: Vec<Output>,
    now: u64,
    update_id: u64,
    rid: u64,
    trader: AccountId,
}

impl Rig {
    fn apply(&mut self, kind: CommandKind) {
        self.out.clear();
        self.now += 1_000;
        self.rid += 1; // distinct ids: a repeated id would be answered from the request window
        self.engine.apply(&Command::new(RequestId(self.rid), self.now, kind), &mut self.out);
    }

    fn tick(&mut self, bid: i64) {
        self.update_id += 1;
        let tick = Tick {
            market: BTC,
            bid: Price(bid),
            ask: Price(bid + 50),
            update_id: self.update_id,
            exchange_time_us: 0,
        };
        self.apply(CommandKind::PriceTick(tick));
    }

    fn opened(&self) -> PositionId {
        match self.out.last() {
            Some(Output::Reply { result: Ok(ReplyData::Opened(v)), .. }) => v.id,
            other => panic!("open failed: {other:?}"),
        }
    }

    /// One round of everything the hot path does: two quiet ticks, an open with TP/SL and its
    /// manual close, a partial close, a 100x open liquidated by a tick and the price restored.
    fn round(&mut self) {
        self.tick(6_000_000);
        self.tick(6_000_100);
        let req = OpenRequest {
            account: self.trader,
            market: BTC,
            side: Side::Long,
            leverage: 10,
            size: Size::Margin(usdc(100)),
            expected_price: Some(Price(6_000_150)),
            max_slippage_bps: 50,
            take_profit: Some(Price(7_000_000)),
            stop_loss: Some(Price(5_000_000)),
            client_order_id: None,
        };
        self.apply(CommandKind::OpenPosition(req));
        let id = self.opened();
        self.apply(CommandKind::ClosePosition {
            account: self.trader,
            position: id,
            quantity: Some(CloseSize::Steps(Qty(10))),
            key: None,
        });
        self.apply(CommandKind::ClosePosition {
            account: self.trader,
            position: id,
            quantity: None,
            key: None,
        });
        let risky = OpenRequest { leverage: 100, take_profit: None, stop_loss: None, ..req };
        self.apply(CommandKind::OpenPosition(risky));
        self.opened();
        self.tick(5_900_000); // liquidates the 100x long
        assert!(self.out.iter().any(|o| matches!(o, Output::Event(Event::PositionClosed(_)))));
        self.apply(CommandKind::Deposit { account: self.trader, amount: usdc(100), key: None });
    }
}

#[test]
fn steady_state_ticks_opens_closes_and_liquidations_do_not_allocate() {
    let cfg = EngineConfig { closed_history_per_account: 8, ..EngineConfig::default() };
    let mut h = Harness::with(cfg);
    let trader = h.account("trader@x");
    h.deposit(trader, usdc(1_000_000)).unwrap();
    // 1000 resting positions with TP/SL far away, so the trees are populated.
    let holder = h.account("holder@x");
    h.deposit(holder, usdc(10_000_000)).unwrap();
    h.price(BTC, Price(6_000_000));
    for i in 0..1_000 {
        let user = if i % 100 == 0 { h.account(&format!("h{i}@x")) } else { holder };
        h.deposit(user, usdc(10_000)).unwrap();
        let (side, high, low) =
            (if i % 2 == 0 { Side::Long } else { Side::Short }, 9_000_000 + i, 1_000_000 + i);
        let (tp, sl) = if side == Side::Long { (high, low) } else { (low, high) };
        let req = OpenRequest {
            take_profit: Some(Price(tp)),
            stop_loss: Some(Price(sl)),
            ..h.open_req(user, side, 2, Size::Margin(usdc(10)))
        };
        if h.open(req).is_err() {
            // per-account limit: the rest go to fresh accounts
            let fresh = h.account(&format!("x{i}@x"));
            h.open(OpenRequest { account: fresh, ..req }).unwrap();
        }
    }
    let mut rig = Rig {
        engine: h.engine,
        out: Vec::with_capacity(64),
        now: h.now,
        update_id: 1,
        rid: 1 << 40,
        trader,
    };

    for _ in 0..2_000 {
        rig.round(); // warm-up: history fills, trees and maps reach their steady shape
    }
    let before = allocations();
    for _ in 0..5_000 {
        rig.round();
    }
    let during = allocations() - before;
    assert_eq!(during, 0, "{during} heap allocations in 5000 steady-state rounds");
    rig.engine.check_conservation().unwrap();
    assert!(rig.engine.counters().liquidations >= 7_000);
}
