//! Liquidity venues: one trait, one folder per venue (barter-rs's `Connector`).

pub mod backpack;

use crate::BoxFuture;

/// A market order to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    /// Its client id (the journal's).
    pub client_id: u32,
    /// The venue's symbol.
    pub symbol: String,
    /// Signed quantity in the market's steps (positive: buy).
    pub qty: i64,
    /// The market's quantity decimals (a step is 10^-decimals of the base asset).
    pub qty_decimals: u32,
}

/// An order as the venue reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fill {
    /// `filled`, `partially_filled`, `new`, `cancelled`, `expired`.
    pub status: String,
    /// Signed quantity executed, in steps.
    pub executed: i64,
    /// Signed quote amount in micro-USDC (negative when bought).
    pub quote_micros: i64,
}

/// Why a venue call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VenueError {
    /// The venue answered and refused (4xx): nothing happened.
    #[error("refused: {0}")]
    Refused(String),
    /// No answer, a dropped connection, a timeout or a 5xx: the order may or may not have been
    /// taken (looked up by its client id before anything else is sent).
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// A venue's order API.
pub trait Venue: Send + Sync {
    /// Sends a market order.
    fn place<'a>(&'a self, order: &'a Order) -> BoxFuture<'a, Result<Fill, VenueError>>;
    /// The order with this client id, if the venue has it (open or in its history).
    fn find<'a>(
        &'a self,
        symbol: &'a str,
        client_id: u32,
        qty_decimals: u32,
    ) -> BoxFuture<'a, Result<Option<Fill>, VenueError>>;
    /// The account's net position in `symbol`, in steps.
    fn position<'a>(
        &'a self,
        symbol: &'a str,
        qty_decimals: u32,
    ) -> BoxFuture<'a, Result<i64, VenueError>>;
}
