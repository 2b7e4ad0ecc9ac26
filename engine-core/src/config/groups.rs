//! Client groups (a broker's account types, docs/DESIGN.md, "Client groups"): what each
//! group's accounts pay per market, as configured and as the engine applies it.

use super::market::MarketConfig;
use super::serde_file;
use crate::num::{PPM_ONE, Ppm, Usdc};

/// A client group: what its accounts pay per market on top of the market's fees.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Its name (`standard`, `pro`, …), 1..=32 bytes, unique.
    pub name: String,
    /// Its terms per market (a market not listed: no markup, no commission).
    #[serde(default)]
    pub markets: Vec<GroupMarket>,
    /// Its accounts are never charged or paid financing (an Islamic / swap-free account type).
    #[serde(default)]
    pub swap_free: bool,
    /// Its positions' margin-call level instead of the engine's `margin_call_level` (`"0"`:
    /// none), fixed when a position opens or is resized.
    #[serde(default, deserialize_with = "serde_file::opt_ppm")]
    pub margin_call_level: Option<Ppm>,
    /// Its cross accounts' stop-out level instead of the engine's `stop_out_level` (at least 1,
    /// below the group's margin-call level).
    #[serde(default, deserialize_with = "serde_file::opt_ppm")]
    pub stop_out_level: Option<Ppm>,
}

/// A group's terms on one market.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMarket {
    /// The market's symbol.
    pub symbol: String,
    /// Spread markup, in price ticks, on each side: every open and every close (manual, TP/SL,
    /// trailing, an order's fill; not a liquidation) pays `markup_ticks × quantity`, rounded up
    /// to the micro-USDC, to the house's spread revenue.
    #[serde(default)]
    pub markup_ticks: i64,
    /// Spread markup in basis points of the fill price, on each side, added to `markup_ticks`'s:
    /// `markup_bps / 10 000 × price × quantity`, rounded up (0..=1000).
    #[serde(default)]
    pub markup_bps: u32,
    /// Commission on the notional at every open and close (not a liquidation), rounded up, to
    /// the house's commission revenue.
    #[serde(default, deserialize_with = "serde_file::ppm")]
    pub commission_rate: Ppm,
    /// Commission per lot (one whole unit of the base asset: 1 BTC) at every open and close (not
    /// a liquidation), on top of `commission_rate`'s: `commission_per_lot × quantity`, rounded
    /// up (0..=1000 USDC).
    #[serde(default, deserialize_with = "serde_file::usdc")]
    pub commission_per_lot: Usdc,
    /// Highest leverage its new positions and orders may use on this market, below the
    /// market's own (none: the market's).
    #[serde(default)]
    pub max_leverage: Option<u32>,
    /// Financing rate per period for its longs on this market instead of the market's
    /// `financing_long_rate` (a swap-free group pays and earns none whatever this says).
    #[serde(default, deserialize_with = "serde_file::opt_ppm")]
    pub financing_long_rate: Option<Ppm>,
    /// The same for its shorts.
    #[serde(default, deserialize_with = "serde_file::opt_ppm")]
    pub financing_short_rate: Option<Ppm>,
    /// Its own leverage brackets on this market instead of the market's (docs/DESIGN.md,
    /// "Tiered margin"), by the same rules, the first at most the market's `max_leverage`;
    /// empty: the market's. A position keeps the brackets of the group its account was in when
    /// it last opened or changed size or margin.
    #[serde(default)]
    pub brackets: Vec<super::market::Bracket>,
}

/// A group's terms on one market, as the engine applies them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupTerms {
    /// Spread markup a side, in price ticks.
    pub markup_ticks: i64,
    /// Commission on the notional a side.
    pub commission_rate: Ppm,
    /// Leverage cap of new positions (`u32::MAX`: the market's).
    pub max_leverage: u32,
    /// Spread markup a side in basis points of the fill price.
    pub markup_bps: u32,
    /// Commission a side per lot, one whole base unit.
    pub commission_per_lot: Usdc,
    /// Financing rates per period (long, short) instead of the market's; `None`: the market's.
    pub financing: Option<(Ppm, Ppm)>,
}

impl Default for GroupTerms {
    fn default() -> Self {
        GroupTerms {
            markup_ticks: 0,
            commission_rate: Ppm(0),
            max_leverage: u32::MAX,
            markup_bps: 0,
            commission_per_lot: Usdc::ZERO,
            financing: None,
        }
    }
}

/// Most client groups an engine holds (an account's group is a `u16`; a broker has a handful).
pub const MAX_GROUPS: usize = 256;

impl GroupMarket {
    /// These terms as the engine applies them on market `m` (a financing side not given: the
    /// market's rate).
    pub fn terms(&self, m: &MarketConfig) -> GroupTerms {
        let own_financing =
            self.financing_long_rate.is_some() || self.financing_short_rate.is_some();
        GroupTerms {
            markup_ticks: self.markup_ticks,
            commission_rate: self.commission_rate,
            max_leverage: self.max_leverage.unwrap_or(u32::MAX),
            markup_bps: self.markup_bps,
            commission_per_lot: self.commission_per_lot,
            financing: own_financing.then(|| {
                (
                    self.financing_long_rate.unwrap_or(m.financing_long_rate),
                    self.financing_short_rate.unwrap_or(m.financing_short_rate),
                )
            }),
        }
    }
}

impl GroupTerms {
    /// Why these terms fall outside their ranges on a market whose highest price is
    /// `max_price_ticks` (the leverage cap apart), or `None`: the one rule the configuration
    /// and an operator's edit both follow.
    pub fn out_of_range(&self, max_price_ticks: i64) -> Option<&'static str> {
        let rate_ok = |r: Ppm| r.0.abs() <= PPM_ONE / 100;
        if self.markup_ticks < 0 || self.markup_ticks > max_price_ticks / 2 {
            Some("markup_ticks must be in 0..=max_price_ticks / 2")
        } else if self.commission_rate.0 < 0 || self.commission_rate.0 >= PPM_ONE / 10 {
            Some("commission_rate must be in 0..0.1")
        } else if self.markup_bps > 1000 {
            Some("markup_bps must be in 0..=1000")
        } else if self.commission_per_lot.0 < 0 || self.commission_per_lot.0 > 1_000_000_000 {
            Some("commission_per_lot must be in 0..=1000 USDC")
        } else if self.financing.is_some_and(|(long, short)| !rate_ok(long) || !rate_ok(short)) {
            Some("a group's financing rates must be within -0.01..=0.01 per period")
        } else {
            None
        }
    }
}
