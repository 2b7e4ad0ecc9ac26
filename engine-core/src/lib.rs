//! # engine-core
//!
//! The deterministic risk engine of hundredx: leveraged long/short positions with isolated margin,
//! take-profit, stop-loss and liquidation, in fixed-point integers, behind two `disruptor` rings.
//!
//! ## Walkthrough
//!
//! The state machine is synchronous and pure: feed it commands, collect its outputs.
//!
//! ```
//! use engine_core::prelude::*;
//!
//! let mut engine = Engine::new(EngineConfig::default()).unwrap();
//! let mut out: Vec<Output> = Vec::new();
//! let t0 = 1_700_000_000_000_000_000u64; // time arrives inside commands (ns since the epoch)
//!
//! // An account: demo deposits credit 5000 USDC.
//! let login = Login::new("alice@example.com").unwrap();
//! let credential = Credential::new("opaque-hash").unwrap();
//! engine.apply(&Command::new(RequestId(1), t0, CommandKind::CreateAccount { login, credential }), &mut out);
//! let Some(Output::Reply { result: Ok(ReplyData::AccountCreated { account }), .. }) = out.pop() else { panic!() };
//!
//! // A BTC_USDC (market 0) price: bid 60 000.00, ask 60 000.50 (2 price decimals).
//! let tick = Tick { market: MarketId(0), bid: Price(6_000_000), ask: Price(6_000_050), update_id: 1, exchange_time_us: 0 };
//! engine.apply(&Command::new(RequestId::NONE, t0, CommandKind::PriceTick(tick)), &mut out);
//!
//! // Open a 10x long with 100 USDC of margin (at the market: no slippage guard, TP or SL).
//! let size = Size::Margin(Usdc::from_whole(100));
//! let open = OpenRequest::new(account, MarketId(0), Side::Long, 10, size);
//! engine.apply(&Command::new(RequestId(2), t0, CommandKind::OpenPosition(open)), &mut out);
//! let Some(Output::Reply { result: Ok(ReplyData::Opened(p)), .. }) = out.pop() else { panic!() };
//! assert_eq!(p.quantity, Qty(1_666)); // 1000 USDC / 60 000.50, rounded down to 0.00001 BTC
//! assert_eq!(p.liquidation_price, Price(5_426_945)); // rounded up: liquidates no later than exact
//!
//! // The bid falls to the liquidation price: the engine liquidates on that tick.
//! let crash = Tick { bid: p.liquidation_price, ask: Price(5_427_000), update_id: 2, ..tick };
//! engine.apply(&Command::new(RequestId::NONE, t0 + 1, CommandKind::PriceTick(crash)), &mut out);
//! assert!(matches!(out.pop(), Some(Output::Event(Event::PositionClosed(v)))
//!     if v.close.unwrap().reason == CloseReason::Liquidation));
//! engine.check_conservation().unwrap();
//! ```
//!
//! The same engine runs on its own thread between rings with [`processor::EngineHandle`]:
//!
//! ```
//! use std::time::Duration;
//! use engine_core::prelude::*;
//!
//! let mut handle = EngineHandle::start(EngineConfig::default()).unwrap();
//! let login = Login::new("bob@example.com").unwrap();
//! let credential = Credential::new("x").unwrap();
//! let reply = handle
//!     .call(1, CommandKind::CreateAccount { login, credential }, Duration::from_secs(5))
//!     .unwrap();
//! assert!(matches!(reply.result, Ok(ReplyData::AccountCreated { .. })));
//! let final_state = handle.shutdown().unwrap();
//! assert_eq!(final_state.summary().accounts, 1);
//! ```
//!
//! ## Layout
//!
//! From the ground up (each module imports only those above it):
//!
//! - [`num`]: fixed-point newtypes ([`num::Usdc`] micros, [`num::Price`] ticks, [`num::Qty`]
//!   steps, [`num::Ppm`] rates) and the exact decimal parser used at the edges.
//! - [`limits`]: every fixed limit with its reason and the assertions that pair them.
//! - [`math`]: the margin, PnL, fee and liquidation-price formulas with their rounding.
//! - [`config`]: markets and engine limits, validated at start.
//! - [`desk`]: an operator's account controls (status, balance and credit adjustments).
//! - [`command`] / [`event`]: fixed-size, heap-free ring entries; [`reason`]: stable reason codes;
//!   [`view`]: the state as replies and events show it.
//! - `position` (crate-private): an open position, 96 bytes packed; [`slab`]: where open
//!   positions live, slots reused.
//! - [`index`]: per market and side, positions ordered by liquidation / TP / SL / margin-call
//!   price, pending orders by price; [`trail`]: trailing stops grouped by peak.
//! - [`idempotency`], [`table`], [`waiters`]: per-account windows, a bounded open-addressing
//!   table, the waiter registry shared by every client of the engine.
//! - [`state`]: [`Engine`], the state machine (`apply(command) -> outputs`), the conservation
//!   check and the state hash ([`hash`]); [`persist`] and [`snapshot`]: journal records and
//!   snapshots.
//! - [`processor`]: the engine thread between the `disruptor` in-ring and out-ring.
//!
//! engine-core does no I/O, reads no clock and uses no randomness: time arrives in
//! [`command::Command::ts_ns`]. The same command log gives the same outputs and state hash.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod command;
pub mod config;
pub mod desk;
pub mod event;
pub mod hash;
pub mod idempotency;
pub mod index;
pub mod limits;
mod logins;
pub mod math;
pub mod num;
pub mod persist;
mod position;
pub mod processor;
pub mod reason;
mod requests;
mod restore;
pub mod slab;
pub mod snapshot;
pub mod state;
pub mod table;
mod tier;
pub mod trail;
pub mod unsolicited;
pub mod view;
pub mod waiters;

pub use state::{Engine, ExplainedLevel};

/// The README's examples, compiled and run as doc tests so they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// Everything an embedder usually needs.
pub mod prelude {
    pub use crate::command::{
        AccountId, ClientOrderId, CloseSize, Command, CommandKind, Credential, IdempotencyKey,
        Login, MarginMode, MarketId, MarketMode, NewSession, OneTimeCode, OpenRequest, OrderEdit,
        OrderId, OrderKind, OrderRequest, PositionId, PositionMode, PositionStatus, RequestId,
        SessionClient, SessionId, SessionScope, Size, SourceId, Tick, TotpEnrolment, TotpUse,
        TrailDistance,
    };
    pub use crate::config::{EngineConfig, MarketConfig, RuntimeConfig, WaitMode};
    pub use crate::event::{
        AccountView, ApiKeyView, AtRisk, CHECKPOINT_EVERY, Change, ChangeRecord, CloseInfo,
        CloseReason, CrossLevel, Event, Exposure, Item, MarketView, OrderEnd, OrderView, Output,
        PositionView, Reason, ReplyData, SessionView, Sink, StateSummary, Trailing, Trigger,
    };
    pub use crate::math::Side;
    pub use crate::num::{ExactDecimal, Ppm, Price, Qty, Usdc};
    pub use crate::processor::{
        EngineError, EngineHandle, Response, Submitter, Subscription, Ticket,
    };
    pub use crate::state::{Counters, Engine};
}
