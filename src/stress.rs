//! Stress replay (docs/DESIGN.md, "Stress replay"): a price path — a recorded crash or a
//! synthetic one — applied to a copy of the current state by the production engine itself, and
//! what it did: who was stopped out or liquidated, the bad debt, and what the insurance fund and
//! the house paid. Pure: the caller recovers the copy and writes nothing back.

use std::collections::BTreeMap;

use engine_core::command::{Command, CommandKind, MarketId, RequestId, SourceId, Tick};
use engine_core::event::{Change, CloseReason, Event, Item, MarketView, Output, Sink};
use engine_core::math::Side;
use engine_core::num::{Price, Usdc};
use engine_core::state::Engine;
use serde::Serialize;

/// Most ticks one scenario may hold: an hour of a busy venue's quotes at 100 a second.
pub const SCENARIO_TICKS_MAX: usize = 360_000;

/// One step of a price path: a market's bid and ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The market.
    pub market: MarketId,
    /// Bid, in ticks.
    pub bid: Price,
    /// Ask, in ticks.
    pub ask: Price,
}

/// The markets as the engine holds them now (bid, ask, update id).
pub fn markets(engine: &mut Engine) -> Vec<MarketView> {
    let mut out: Vec<Output> = Vec::new();
    let query = Command::new(RequestId(u64::MAX), engine.now_ns(), CommandKind::QueryMarkets);
    engine.apply(&query, &mut out);
    out.into_iter()
        .filter_map(|o| match o {
            Output::Item { item: Item::Market(v), .. } => Some(v),
            _ => None,
        })
        .collect()
}

/// A synthetic crash: each market in `moves` goes from its price now by its move (in millionths:
/// −200 000 is −20 %) in `steps` equal steps, its spread kept. A market without a price is
/// left out.
pub fn crash(now: &[MarketView], moves: &[(MarketId, i64)], steps: u32) -> Vec<Step> {
    let mut path = Vec::new();
    for k in 1..=i128::from(steps.max(1)) {
        for &(market, ppm) in moves {
            let Some(v) = now.iter().find(|v| v.market == market && v.bid.0 > 0) else { continue };
            let at = |p: Price| {
                let moved =
                    i128::from(p.0) * (1_000_000 + i128::from(ppm) * k / i128::from(steps.max(1)));
                i64::try_from(moved / 1_000_000).unwrap_or(i64::MAX).max(1)
            };
            path.push(Step { market, bid: Price(at(v.bid)), ask: Price(at(v.ask).max(at(v.bid))) });
        }
    }
    path
}

/// A recorded path made relative: each market's recorded prices scaled by its price now over
/// its first recorded price (the recording's moves, on today's book). Bids round down and asks
/// up: the spread never narrows, so the stress is never milder than the recording.
pub fn rebase(recorded: &[Tick], now: &[MarketView]) -> Vec<Step> {
    let mut first: BTreeMap<u16, (i64, i64)> = BTreeMap::new();
    let mut path = Vec::with_capacity(recorded.len());
    for t in recorded {
        let Some(v) = now.iter().find(|v| v.market == t.market && v.bid.0 > 0) else { continue };
        let (b0, a0) = *first.entry(t.market.0).or_insert((t.bid.0.max(1), t.ask.0.max(1)));
        let scale = |p: i64, base: i64, cur: i64, up: bool| {
            let num = i128::from(p) * i128::from(cur);
            let den = i128::from(base);
            let q = if up { (num + den - 1) / den } else { num / den };
            i64::try_from(q).unwrap_or(i64::MAX).max(1)
        };
        let bid = scale(t.bid.0, b0, v.bid.0, false);
        let ask = scale(t.ask.0, a0, v.ask.0, true).max(bid);
        path.push(Step { market: t.market, bid: Price(bid), ask: Price(ask) });
    }
    path
}

/// A position the scenario closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Closed {
    /// Its account.
    pub account: u32,
    /// The position.
    pub position: u64,
    /// Its market.
    pub market: u16,
    /// Long or short.
    pub side: Side,
    /// Why it closed.
    pub reason: CloseReason,
    /// The exit price, in ticks.
    pub exit_price: i64,
    /// Its realized P&L (micro-USDC).
    pub realized_pnl: i128,
    /// What the trader got back (micro-USDC).
    pub payout: i128,
}

/// A loss beyond a position's margin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BadDebt {
    /// The account.
    pub account: u32,
    /// The position.
    pub position: u64,
    /// The loss beyond its margin (micro-USDC).
    pub amount: i128,
    /// Paid by the insurance fund.
    pub insurance_paid: i128,
    /// Paid by the house.
    pub house_paid: i128,
}

/// What the scenario did, from the engine's own outputs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Steps applied (a step of a market with sources is one quote per source).
    pub steps: u64,
    /// Prices the engine refused (out of its bounds).
    pub prices_rejected: u64,
    /// Open positions before and after.
    pub open_positions: (u32, u32),
    /// Liquidations.
    pub liquidated: Vec<Closed>,
    /// Positions closed by a cross account's stop-out.
    pub stopped_out: Vec<Closed>,
    /// Accounts stopped out.
    pub stop_out_accounts: Vec<u32>,
    /// Take-profits, stop-losses and trailing stops that fired.
    pub triggered: Vec<Closed>,
    /// Margin calls raised (positions and accounts).
    pub margin_calls: u64,
    /// Losses beyond margins.
    pub bad_debts: Vec<BadDebt>,
    /// Σ bad debt, and who paid it (micro-USDC).
    pub bad_debt_total: i128,
    /// Of it, the insurance fund.
    pub insurance_paid: i128,
    /// Of it, the house.
    pub house_paid: i128,
    /// The insurance fund before and after (micro-USDC).
    pub insurance_fund: (i128, i128),
    /// The house balance before and after (micro-USDC).
    pub house_balance: (i128, i128),
}

#[derive(Default)]
struct Collect(Report);

impl Sink for Collect {
    fn emit(&mut self, o: Output) {
        let r = &mut self.0;
        match o {
            Output::Event(Event::PositionClosed(v)) => {
                let Some(c) = v.close else { return };
                let closed = Closed {
                    account: v.account.0,
                    position: c.position.0,
                    market: v.market.0,
                    side: v.side,
                    reason: c.reason,
                    exit_price: c.exit_price.0,
                    realized_pnl: c.realized_pnl.0,
                    payout: c.payout.0,
                };
                match c.reason {
                    CloseReason::Liquidation => r.liquidated.push(closed),
                    CloseReason::StopOut => r.stopped_out.push(closed),
                    _ => r.triggered.push(closed),
                }
            }
            Output::Event(Event::BadDebt {
                position,
                account,
                amount,
                insurance_paid,
                house_paid,
            }) => {
                r.bad_debts.push(BadDebt {
                    account: account.0,
                    position: position.0,
                    amount: amount.0,
                    insurance_paid: insurance_paid.0,
                    house_paid: house_paid.0,
                });
                r.bad_debt_total += amount.0;
                r.insurance_paid += insurance_paid.0;
                r.house_paid += house_paid.0;
            }
            Output::Event(Event::PriceRejected { .. }) => r.prices_rejected += 1,
            Output::Change(c) => match c.change {
                Change::StopOut { account, .. } => r.stop_out_accounts.push(account.0),
                Change::MarginCall { .. } | Change::AccountMarginCall { .. } => r.margin_calls += 1,
                _ => {}
            },
            _ => {}
        }
    }
}

/// Applies `path` to `engine` (a copy: the caller keeps nothing of it) one step a microsecond
/// after its last command — a price path, not a time path, so no price goes stale and no order
/// or session expires on the way — and reports what the engine did.
pub fn run(mut engine: Engine, path: &[Step]) -> (Report, Engine) {
    let before = engine.summary();
    let mut update: BTreeMap<u16, u64> =
        markets(&mut engine).iter().map(|v| (v.market.0, v.update_id)).collect();
    let mut at = engine.now_ns();
    let mut sink = Collect::default();
    for step in path {
        let Some(m) = engine.config().markets.get(usize::from(step.market.0)) else { continue };
        let sources = m.sources;
        let id = update.entry(step.market.0).or_default();
        *id += 1;
        at += 1_000;
        let tick = Tick {
            market: step.market,
            bid: step.bid,
            ask: step.ask,
            update_id: *id,
            exchange_time_us: at / 1_000,
        };
        if sources == 0 {
            engine
                .apply(&Command::new(RequestId::NONE, at, CommandKind::PriceTick(tick)), &mut sink);
        } else {
            for s in 0..sources {
                let kind = CommandKind::SourceQuote { source: SourceId(s), tick };
                engine.apply(&Command::new(RequestId::NONE, at, kind), &mut sink);
            }
        }
        sink.0.steps += 1;
    }
    let after = engine.summary();
    let mut report = sink.0;
    report.open_positions = (before.open_positions, after.open_positions);
    report.insurance_fund = (before.insurance_fund.0, after.insurance_fund.0);
    report.house_balance = (before.house_balance.0, after.house_balance.0);
    (report, engine)
}

/// The report as a person reads it.
pub fn render(r: &Report, symbol: impl Fn(u16) -> String) -> String {
    use std::fmt::Write as _;
    let usd = |v: i128| Usdc(v).to_string();
    let mut out = String::new();
    let _ = writeln!(out, "steps applied    {} ({} prices refused)", r.steps, r.prices_rejected);
    let _ = writeln!(out, "open positions   {} -> {}", r.open_positions.0, r.open_positions.1);
    let _ = writeln!(out, "liquidated       {}", r.liquidated.len());
    let _ = writeln!(
        out,
        "stopped out      {} positions of {} accounts",
        r.stopped_out.len(),
        r.stop_out_accounts.len()
    );
    let _ = writeln!(out, "TP/SL/trailing   {}", r.triggered.len());
    let _ = writeln!(out, "margin calls     {}", r.margin_calls);
    let _ = writeln!(
        out,
        "bad debt         {} (insurance fund {}, house {})",
        usd(r.bad_debt_total),
        usd(r.insurance_paid),
        usd(r.house_paid)
    );
    let _ = writeln!(
        out,
        "insurance fund   {} -> {}",
        usd(r.insurance_fund.0),
        usd(r.insurance_fund.1)
    );
    let _ =
        writeln!(out, "house balance    {} -> {}", usd(r.house_balance.0), usd(r.house_balance.1));
    for (what, list) in [("liquidated", &r.liquidated), ("stopped out", &r.stopped_out)] {
        for c in list.iter() {
            let _ = writeln!(
                out,
                "  {what}: account {} position {} {} {} at {} ticks, pnl {}, paid back {}",
                c.account,
                c.position,
                symbol(c.market),
                c.side.as_str(),
                c.exit_price,
                usd(c.realized_pnl),
                usd(c.payout)
            );
        }
    }
    out
}

/// The scenarios the operator console can start (`POST /api/v1/admin/stress`).
pub const BUNDLED: [&str; 2] = ["flash-crash", "gap-10"];

/// `flash-crash`: BTC −25 %, ETH −30 % in a minute, then a partial recovery (a recording of
/// Backpack frames, applied relative to today's prices).
const FLASH_CRASH: &str = include_str!("../scenarios/flash-crash.jsonl");

/// The path of bundled scenario `name` on `engine`'s book: `flash-crash`, or `gap-10` (every
/// market −10 % in one step).
pub fn bundled(name: &str, engine: &mut Engine) -> Option<Vec<Step>> {
    let now = markets(engine);
    match name {
        "flash-crash" => {
            let venue = price_feed::venues::by_name("backpack")?;
            let cfg = &engine.config().markets;
            let ticks = price_feed::replay::ticks_of(
                venue,
                FLASH_CRASH,
                (cfg, &BTreeMap::new()),
                SCENARIO_TICKS_MAX,
            )?;
            Some(rebase(&ticks, &now))
        }
        "gap-10" => {
            let moves: Vec<(MarketId, i64)> = now.iter().map(|v| (v.market, -100_000)).collect();
            Some(crash(&now, &moves, 1))
        }
        _ => None,
    }
}

/// The embedded `serve`'s stress runner: recovers a copy of the state from its data directory
/// (the latest snapshot and the journal after it, read without the lock, nothing written) on a
/// blocking thread, one run at a time.
#[derive(Debug)]
pub struct DataDirStress {
    data_dir: std::path::PathBuf,
    cfg: engine_core::config::EngineConfig,
    busy: std::sync::atomic::AtomicBool,
}

impl DataDirStress {
    /// A runner over `data_dir`, whose engine runs `cfg`.
    pub fn new(
        data_dir: std::path::PathBuf,
        cfg: engine_core::config::EngineConfig,
    ) -> DataDirStress {
        DataDirStress { data_dir, cfg, busy: std::sync::atomic::AtomicBool::new(false) }
    }

    fn run_now(
        data_dir: &std::path::Path,
        cfg: &engine_core::config::EngineConfig,
        name: &str,
    ) -> Result<String, ground::ports::StressError> {
        use crate::durability::{DataDir, Start, TornTail, recover};
        use ground::ports::StressError;
        let failed = |e: &dyn std::fmt::Display| StressError::Failed(e.to_string());
        let data = DataDir::open_existing(data_dir).map_err(|e| failed(&e))?;
        let (mut engine, _) =
            recover(&data, cfg, Start::LatestSnapshot, TornTail::Report).map_err(|e| failed(&e))?;
        let path =
            bundled(name, &mut engine).ok_or_else(|| StressError::Unknown(name.to_owned()))?;
        let (report, _) = run(engine, &path);
        serde_json::to_string(&report).map_err(|e| failed(&e))
    }
}

impl ground::ports::StressRunner for DataDirStress {
    fn scenarios(&self) -> Vec<&'static str> {
        BUNDLED.to_vec()
    }

    fn run<'a>(
        &'a self,
        name: &'a str,
    ) -> ground::ports::BoxFuture<'a, Result<String, ground::ports::StressError>> {
        use std::sync::atomic::Ordering;
        Box::pin(async move {
            if !BUNDLED.contains(&name) {
                return Err(ground::ports::StressError::Unknown(name.to_owned()));
            }
            if self.busy.swap(true, Ordering::AcqRel) {
                return Err(ground::ports::StressError::Busy);
            }
            let (dir, cfg, owned) = (self.data_dir.clone(), self.cfg.clone(), name.to_owned());
            let result = tokio::task::spawn_blocking(move || Self::run_now(&dir, &cfg, &owned))
                .await
                .unwrap_or_else(|e| Err(ground::ports::StressError::Failed(e.to_string())));
            self.busy.store(false, Ordering::Release);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use engine_core::prelude::*;

    use super::*;

    const T0: u64 = 1_700_000_000_000_000_000;

    fn apply(e: &mut Engine, rid: u64, kind: CommandKind) -> Result<ReplyData, Reason> {
        let mut out = Vec::new();
        e.apply(&Command::new(RequestId(rid), T0, kind), &mut out);
        out.iter()
            .find_map(|o| match o {
                Output::Reply { result, .. } => Some(*result),
                _ => None,
            })
            .unwrap()
    }

    /// Three traders at 60 000: a 50x long, a 2x long, a 10x short; and a 100x long.
    fn book() -> (Engine, Vec<PositionId>) {
        let mut e = Engine::new(EngineConfig::default()).unwrap();
        let tick = Tick {
            market: MarketId(0),
            bid: Price(6_000_000),
            ask: Price(6_000_000),
            update_id: 1,
            exchange_time_us: 0,
        };
        apply(&mut e, 1, CommandKind::PriceTick(tick)).unwrap();
        let mut ids = Vec::new();
        for (i, (side, lev)) in
            [(Side::Long, 50), (Side::Long, 2), (Side::Short, 10), (Side::Long, 100)]
                .into_iter()
                .enumerate()
        {
            let n = u64::try_from(i).unwrap();
            let login = Login::new(&format!("t{i}@x")).unwrap();
            let credential = Credential::new("h").unwrap();
            let Ok(ReplyData::AccountCreated { account }) =
                apply(&mut e, 10 + n, CommandKind::CreateAccount { login, credential })
            else {
                panic!()
            };
            let open = OpenRequest::new(
                account,
                MarketId(0),
                side,
                lev,
                Size::Margin(Usdc::from_whole(1_000)),
            );
            let Ok(ReplyData::Opened(p)) = apply(&mut e, 20 + n, CommandKind::OpenPosition(open))
            else {
                panic!()
            };
            ids.push(p.id);
        }
        (e, ids)
    }

    #[test]
    fn a_crash_liquidates_exactly_the_positions_whose_price_it_reaches() {
        let (mut e, ids) = book();
        let now = markets(&mut e);
        // −20 % in 20 steps: 60 000 → 48 000. The 50x and 100x longs go (liquidated near −2 %
        // and −1 %), the 2x long (near −50 %) and the short stay.
        let path = crash(&now, &[(MarketId(0), -200_000)], 20);
        assert_eq!(path.len(), 20);
        assert_eq!(path.last().unwrap().bid, Price(4_800_000));
        let before = e.summary();
        let (r, after) = run(e, &path);
        let gone: Vec<u64> = r.liquidated.iter().map(|c| c.position).collect();
        assert_eq!(gone, [ids[3].0, ids[0].0], "nearest first, as the price reached them");
        assert!(r.stopped_out.is_empty() && r.triggered.is_empty());
        assert_eq!(r.open_positions, (4, 2));
        assert_eq!(r.insurance_fund, (before.insurance_fund.0, after.summary().insurance_fund.0));
        assert_eq!(r.insurance_paid + r.house_paid, r.bad_debt_total);
        after.check_conservation().unwrap();
    }

    #[test]
    fn a_gap_leaves_bad_debt_that_the_fund_then_the_house_pay() {
        let (mut e, _) = book();
        let now = markets(&mut e);
        // −5 % in one step: far past the 100x and 50x longs' liquidation prices.
        let (r, after) = run(e, &crash(&now, &[(MarketId(0), -50_000)], 1));
        assert_eq!(r.liquidated.len(), 2);
        assert_eq!(r.bad_debts.len(), 2, "{r:?}");
        let total: i128 = r.bad_debts.iter().map(|b| b.amount).sum();
        assert!(total > 0);
        assert_eq!(r.bad_debt_total, total);
        // An empty fund: the house pays it all.
        assert_eq!((r.insurance_paid, r.house_paid), (0, total));
        after.check_conservation().unwrap();
    }

    #[test]
    fn a_recording_is_applied_as_moves_from_todays_prices() {
        let (mut e, _) = book();
        let now = markets(&mut e);
        let t = |bid, ask| Tick {
            market: MarketId(0),
            bid: Price(bid),
            ask: Price(ask),
            update_id: 1,
            exchange_time_us: 0,
        };
        // Recorded at 30 000 / 30 001, then down 10 %: today's 60 000 moves to 54 000.
        let path = rebase(&[t(3_000_000, 3_000_100), t(2_700_000, 2_700_090)], &now);
        assert_eq!((path[0].bid, path[0].ask), (Price(6_000_000), Price(6_000_000)));
        assert_eq!(
            (path[1].bid, path[1].ask),
            (Price(5_400_000), Price(5_399_983).max(Price(5_400_000)))
        );
    }
}
