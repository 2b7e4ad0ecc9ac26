//! # hedger
//!
//! A-book hedging (docs/DESIGN.md, "A-book hedging"): the broker carries its clients' risk (the
//! B-book) and passes chosen flow to a liquidity venue (the A-book). Every `interval` the
//! [`run::Hedger`] reads the clients' open exposure per market, split by the client groups
//! routed to the A-book ([`Book`]), computes the hedge the venue should hold ([`plan`]: the
//! A-book one-for-one, the B-book's excess beyond the market's band), and trades the
//! difference with a market order on the venue ([`venue::Venue`]; Backpack's signed REST API in
//! [`venue::backpack`]).
//!
//! Every order is first written to a durable journal ([`journal`], fsynced) with a client id of
//! its own, then sent: a restart, a timeout or a dropped connection never loses an order nor
//! sends it twice — an order whose outcome is unknown is looked up at the venue by its client id
//! before anything else is sent. The hedger stops (and says why: [`run::Status`]) when the
//! venue keeps failing or when the venue's position differs from the journal's.
//!
//! Quantities are in each market's quantity steps and money in micro-USDC, as in the engine.

pub mod journal;
#[cfg(feature = "test-support")]
pub mod mock;
pub mod plan;
pub mod run;
pub mod venue;

use std::collections::BTreeMap;

pub use ground::ports::BoxFuture;

/// The clients' open exposure in one market, in its quantity steps: positive when the clients
/// are net long (the house, their counterparty, net short).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exposure {
    /// Of the accounts in the groups routed to the A-book.
    pub a_book: i64,
    /// Of every other account.
    pub b_book: i64,
}

/// Where the clients' exposure is read (the binary's: the history store's open positions and
/// the accounts' groups).
pub trait Book: Send + Sync {
    /// The exposure per market symbol now.
    fn exposure(&self) -> BoxFuture<'_, Result<BTreeMap<String, Exposure>, String>>;
}
