//! An open position as the engine holds it: 96 bytes, packed (options as 0, the trailing
//! distance as one signed word, the margin in an `i64`), what can be derived not stored. Below
//! the slab that stores it and the state that uses it.

use crate::command::{AccountId, MarketId, PositionId, TrailDistance};
use crate::limits::MAX_AMOUNT;
use crate::math::Side;
use crate::num::{Price, Qty, Usdc};

/// An open position, 96 bytes (packed fields are `pub(crate)` for struct updates, and read and
/// written through the accessors): what can be packed is (options as 0, the trailing distance as
/// one signed word, the margin in an `i64`: margins are bounded by `MAX_AMOUNT` < 2^63), and
/// what can be derived is not stored (the liquidation price: [`Position::liq`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Position {
    /// 0 only in a vacant slab slot.
    pub(crate) id: PositionId,
    pub(crate) qty: Qty,
    pub(crate) entry: Price,
    pub(crate) margin_micros: i64,
    /// Margin-call price (0: none); derived from margin and quantity like `liq`.
    pub(crate) mc: Price,
    /// Take-profit and stop-loss, 0: none (prices are positive).
    pub(crate) tp_ticks: i64,
    pub(crate) sl_ticks: i64,
    pub(crate) opened_at_ns: u64,
    /// Trailing stop distance: 0 none, > 0 in price ticks, < 0 minus basis points.
    pub(crate) trail_code: i64,
    pub(crate) account: AccountId,
    pub(crate) leverage: u32,
    /// The market's maintenance margin rate when it opened (ppm, < 10^6): its liquidation and
    /// margin-call prices keep using it after an operator changes the market's rate.
    pub(crate) mmr_ppm: u32,
    /// Its group in the market's trailing book (meaningful only with a trailing stop).
    pub(crate) trail_group: u32,
    pub(crate) market: MarketId,
    /// The client group whose brackets it keeps: its account's when it last opened or changed
    /// size or margin (its maintenance amount is derived from them).
    pub(crate) bracket_group: u16,
    pub(crate) side: Side,
    /// Not yet called since it last went above the level.
    pub(crate) mc_armed: bool,
    /// Held by a cross account: no liquidation or margin-call price of its own.
    pub(crate) cross: bool,
}

const _: () = assert!(std::mem::size_of::<Position>() == 96);

/// What a new position is made of (the packed fields are set through [`Position::new`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewPosition {
    pub(crate) id: PositionId,
    pub(crate) account: AccountId,
    pub(crate) market: MarketId,
    pub(crate) side: Side,
    pub(crate) qty: Qty,
    pub(crate) entry: Price,
    pub(crate) margin: Usdc,
    pub(crate) leverage: u32,
    pub(crate) mc: Price,
    pub(crate) tp: Option<Price>,
    pub(crate) sl: Option<Price>,
    pub(crate) opened_at_ns: u64,
    pub(crate) mmr: crate::num::Ppm,
    pub(crate) cross: bool,
    pub(crate) bracket_group: u16,
}

impl Position {
    pub(crate) fn new(n: NewPosition) -> Position {
        let mut p = Position {
            id: n.id,
            qty: n.qty,
            entry: n.entry,
            margin_micros: 0,
            mc: n.mc,
            tp_ticks: 0,
            sl_ticks: 0,
            opened_at_ns: n.opened_at_ns,
            trail_code: 0,
            account: n.account,
            leverage: n.leverage,
            mmr_ppm: u32::try_from(n.mmr.0).expect("the config bounds the rate below 10^6"),
            trail_group: 0,
            market: n.market,
            bracket_group: n.bracket_group,
            side: n.side,
            mc_armed: true,
            cross: n.cross,
        };
        p.set_margin(n.margin);
        p.set_tp_sl(n.tp, n.sl);
        p
    }

    pub(crate) fn margin(&self) -> Usdc {
        Usdc(i128::from(self.margin_micros))
    }

    /// Callers check `margin <= MAX_AMOUNT` (a rejection) before they get here.
    pub(crate) fn set_margin(&mut self, margin: Usdc) {
        assert!(margin.0 >= 0 && margin <= MAX_AMOUNT, "margin out of bounds: {margin:?}");
        self.margin_micros = i64::try_from(margin.0).expect("MAX_AMOUNT fits an i64");
    }

    pub(crate) fn tp(&self) -> Option<Price> {
        (self.tp_ticks != 0).then_some(Price(self.tp_ticks))
    }

    pub(crate) fn sl(&self) -> Option<Price> {
        (self.sl_ticks != 0).then_some(Price(self.sl_ticks))
    }

    /// Prices are validated positive before they get here.
    pub(crate) fn set_tp_sl(&mut self, tp: Option<Price>, sl: Option<Price>) {
        assert!(tp.is_none_or(|p| p.0 > 0) && sl.is_none_or(|p| p.0 > 0), "trigger prices > 0");
        self.tp_ticks = tp.map_or(0, |p| p.0);
        self.sl_ticks = sl.map_or(0, |p| p.0);
    }

    pub(crate) fn trail(&self) -> Option<TrailDistance> {
        match self.trail_code {
            0 => None,
            c if c > 0 => Some(TrailDistance::Price(Price(c))),
            c => Some(TrailDistance::Bps(u32::try_from(-c).expect("stored from a u32"))),
        }
    }

    /// Distances are validated positive before they get here.
    pub(crate) fn set_trail(&mut self, d: Option<TrailDistance>) {
        self.trail_code = match d {
            None => 0,
            Some(TrailDistance::Price(p)) => {
                assert!(p.0 > 0, "trailing distance > 0");
                p.0
            }
            Some(TrailDistance::Bps(b)) => {
                assert!(b > 0, "trailing distance > 0");
                -i64::from(b)
            }
        };
    }

    pub(crate) fn mmr(&self) -> crate::num::Ppm {
        crate::num::Ppm(i64::from(self.mmr_ppm))
    }
}
