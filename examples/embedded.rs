//! Embedding engine-core as a library: start the engine thread, create two traders, feed BTC
//! prices, open a 50x long and a 10x short, then let the price fall until the long is liquidated.
//! Every reply and unsolicited event is printed.
//!
//! Run: `cargo run --example embedded`

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use engine_core::num::format_fixed;
use engine_core::prelude::*;

const BTC: MarketId = MarketId(0);
const TIMEOUT: Duration = Duration::from_secs(5);

/// The engine has no clock: the embedder stamps each command with its receive time.
fn now_ns() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
    u64::try_from(d.as_nanos()).expect("before year 2554")
}

fn usd(p: Price) -> String {
    format_fixed(i128::from(p.0), 2)
}

fn show(v: &PositionView) -> String {
    let mut s = format!(
        "#{} {} qty {} BTC @ {} margin {} liq {} uPnL {}",
        v.id.0,
        v.side.as_str(),
        format_fixed(i128::from(v.quantity.0), 5),
        usd(v.entry_price),
        v.margin,
        usd(v.liquidation_price),
        v.unrealized_pnl
    );
    if let Some(c) = v.close {
        s += &format!(
            " | closed ({}) @ {} pnl {} fee {} paid out {}",
            c.reason.as_str(),
            usd(c.exit_price),
            c.realized_pnl,
            c.fee,
            c.payout
        );
    }
    s
}

// One function over ~70 lines on purpose: an example reads top to bottom, in the order an
// embedder writes it.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut engine = EngineHandle::start(EngineConfig::default())?;
    let events = engine.subscribe(Subscription::Events, 1024);

    let mut traders = Vec::new();
    for email in ["alice@example.com", "bob@example.com"] {
        let login = Login::new(email).ok_or("login too long")?;
        let credential = Credential::new("argon2id-hash-goes-here").ok_or("credential too long")?;
        let reply =
            engine.call(now_ns(), CommandKind::CreateAccount { login, credential }, TIMEOUT)?;
        let Ok(ReplyData::AccountCreated { account }) = reply.result else {
            return Err(format!("create account: {:?}", reply.result).into());
        };
        println!("account {} for {email} (demo balance 5000 USDC)", account.0);
        traders.push(account);
    }

    let mut update_id = 0;
    let mut tick = |engine: &mut EngineHandle, bid: i64| {
        update_id += 1;
        let t = Tick {
            market: BTC,
            bid: Price(bid),
            ask: Price(bid + 50),
            update_id,
            exchange_time_us: 0,
        };
        engine.send(now_ns(), CommandKind::PriceTick(t));
        println!("tick  BTC_USDC bid {} ask {}", usd(Price(bid)), usd(Price(bid + 50)));
    };
    tick(&mut engine, 6_000_000);

    // A market open guarded against more than 0.5% slippage from 60 000.00.
    let open = |account, side, leverage, margin| OpenRequest {
        expected_price: Some(Price(6_000_000)),
        max_slippage_bps: 50,
        ..OpenRequest::new(account, BTC, side, leverage, Size::Margin(Usdc::from_whole(margin)))
    };
    for req in [open(traders[0], Side::Long, 50, 200), open(traders[1], Side::Short, 10, 300)] {
        let reply = engine.call(now_ns(), CommandKind::OpenPosition(req), TIMEOUT)?;
        match reply.result {
            Ok(ReplyData::Opened(v)) => println!("open  {}", show(&v)),
            other => println!("open  rejected: {other:?}"),
        }
    }

    // Walk the price down 0.25% a step until the long is liquidated.
    let mut bid = 6_000_000;
    let liquidated = loop {
        bid = bid * 9_975 / 10_000;
        tick(&mut engine, bid);
        if let Ok(Output::Event(e)) = events.recv_timeout(Duration::from_millis(50)) {
            match e {
                Event::PositionClosed(v) => {
                    println!("event {}", show(&v));
                    break v;
                }
                other => println!("event {other:?}"),
            }
        }
    };
    assert_eq!(liquidated.close.map(|c| c.reason), Some(CloseReason::Liquidation));

    for account in traders {
        let reply = engine.call(now_ns(), CommandKind::QueryAccount { account }, TIMEOUT)?;
        if let Ok(ReplyData::Account(a)) = reply.result {
            println!(
                "account {}: available {} locked {} uPnL {} equity {}",
                a.id.0, a.available, a.locked_margin, a.unrealized_pnl, a.equity
            );
        }
    }
    let reply = engine.call(now_ns(), CommandKind::QueryStateHash, TIMEOUT)?;
    if let Ok(ReplyData::State(s)) = reply.result {
        println!(
            "insurance fund {} house {} state hash {}",
            s.insurance_fund,
            s.house_balance,
            engine_core::hash::hex(&s.hash)
        );
    }
    let state = engine.shutdown()?;
    state.check_conservation()?;
    println!("shut down cleanly; conservation holds");
    Ok(())
}
