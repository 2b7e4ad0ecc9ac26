//! Opening a position: sizing, fees, slippage, TP/SL checks, margin locked.

use super::groups::Charges;
use super::{
    Change, Engine, MAX_AMOUNT, Market, MarketConfig, NewPosition, OpenRequest, Position,
    PositionId, PositionView, Price, Qty, Reason, Scale, Side, Sink, Size, Usdc, add, check_amount,
    liquidatable, margin_call_rate, sub, usize_from,
};

impl Engine {
    // ----- opening -----

    pub(super) fn open<S: Sink>(
        &mut self,
        ts: u64,
        req: &OpenRequest,
        sink: &mut S,
    ) -> Result<PositionView, Reason> {
        let ai = self.account_index(req.account)?;
        let m = self.market(req.market)?;
        let cfg = &m.cfg;
        check_open_inputs(cfg, self.leverage_cap(ai, req.market, m.max_leverage), req)?;
        // A netting account's position in the market takes the order (an opposite one only
        // reduces it, which a halted or reduce-only market allows: its reversal checks again).
        let netted = self.netted_position(ai, req.market);
        if netted.is_none_or(|(_, p)| p.side == req.side) {
            self.check_new_exposure(ai, m)?;
        }
        // Fill: a long buys at the ask, a short sells at the bid.
        let e = self.fresh_mark(req.market, req.side.opposite(), ts)?;
        check_slippage(req, e)?;
        if let Some(held) = netted {
            return self.open_netted(ts, req, held, e, sink);
        }
        let (q, margin, fee) = size_position(m, req.leverage, req.size, e)?;
        if q.0 < cfg.min_qty {
            return Err(Reason::QuantityTooSmall);
        }
        if margin < cfg.min_margin {
            return Err(Reason::MarginTooSmall);
        }
        check_tp_sl(req.side, req.take_profit, req.stop_loss, e)?;
        check_open_interest(m, req.side, q)?;
        let account = &self.accounts[ai];
        if account.open.len() >= usize_from(self.cfg.max_positions_per_account) {
            return Err(Reason::TooManyPositions);
        }
        // The slab's bound is the config's; ids must fit a `PosRef` (2^40 over the engine's life).
        if self.positions.len() >= usize_from(self.cfg.max_open_positions)
            || self.next_position_id >= crate::slab::POSITION_ID_LIMIT
        {
            return Err(Reason::PositionCapacity);
        }
        if margin > MAX_AMOUNT {
            return Err(Reason::InvalidAmount);
        }
        // The account's group: its spread markup and commission, on top of the market's fee.
        let charges = self.charges(ai, req.market, e, q);
        let cost = open_cost(margin, fee, charges)?;
        if account.available < cost {
            return Err(Reason::InsufficientBalance);
        }
        // Its bracket, by its notional at entry: the leverage it may use, its rate and its
        // maintenance amount (which counts as margin in the liquidation formula).
        let group = self.accounts[ai].group;
        let (mmr, cum) = m.bracket_terms(group, (e, q), req.leverage)?;
        let cross = self.is_cross(ai);
        let (liq, mc) = if cross {
            // The account is the unit: within its free margin and above its stop-out level.
            let spent = sub(cost, margin);
            self.cross_open_check(ai, (req.market, req.side, e, q), (mmr, cum), (cost, spent))?;
            (Price(0), Price(0))
        } else {
            let liq = m.scale.liquidation_price(req.side, e, q, add(margin, cum), mmr);
            if liquidatable(req.side, m.mark(req.side), liq) {
                return Err(Reason::WouldLiquidate);
            }
            let level = self.margin_call_level(ai);
            (liq, margin_call_price(m, req.side, e, q, (margin, cum), mmr, level))
        };

        // Accepted: from here on nothing can fail.
        let id = self.allocate_position_id();
        let p = Position::new(NewPosition {
            id,
            account: req.account,
            market: req.market,
            side: req.side,
            qty: q,
            entry: e,
            margin,
            leverage: req.leverage,
            mc,
            tp: req.take_profit,
            sl: req.stop_loss,
            opened_at_ns: ts,
            mmr,
            cross,
            bracket_group: group,
        });
        self.debit(ai, cost);
        self.house_balance = add(self.house_balance, fee);
        self.collect(charges);
        self.total_margin = add(self.total_margin, margin);
        let m = &mut self.markets[usize::from(req.market.0)];
        assert_eq!(p.liq(m), liq, "derived as checked");
        let triggers = p.triggers(m);
        let r = self.positions.insert(p);
        m.index.insert(r.slot(), req.side, triggers);
        self.count_open_interest(req.market, req.side, (1, q.0), i128::from(e.0) * i128::from(q.0));
        let max = usize_from(self.cfg.max_positions_per_account);
        self.accounts[ai].push_open(r, max);
        self.counters.opened += 1;
        self.cross_touch(ai, true);
        // The charges are announced before the open that includes them, as before a close:
        // a reader of the changes splits the fee with what it already knows.
        if charges != Charges::default() {
            let change = Change::Charged {
                account: req.account,
                position: id,
                spread: charges.spread,
                commission: charges.commission,
            };
            self.record(sink, change);
        }
        self.record(sink, opened_change(&p, liq, (add(fee, charges.total()), charges.total())));
        Ok(self.view(&p))
    }

    /// The next position id (open positions and partial closes' closed parts share the
    /// sequence, so no two views ever share an id).
    pub(super) fn allocate_position_id(&mut self) -> PositionId {
        let id = PositionId(self.next_position_id);
        self.next_position_id += 1;
        id
    }
}

/// The market's caps on open quantity: each side's total, and the difference between them
/// when the open makes it larger (an open that narrows the skew is always allowed).
pub(super) fn check_open_interest(m: &Market, side: Side, q: Qty) -> Result<(), Reason> {
    let open = (i128::from(m.open_interest[0].1), i128::from(m.open_interest[1].1));
    check_open_interest_from(m, open, side, q)
}

/// [`check_open_interest`] from given totals (long, short): a reversal's, after its close.
pub(super) fn check_open_interest_from(
    m: &Market,
    (long, short): (i128, i128),
    side: Side,
    q: Qty,
) -> Result<(), Reason> {
    let (cap, skew_cap) = (m.cfg.open_interest_cap(side), m.cfg.skew_cap_steps);
    if cap == 0 && skew_cap == 0 {
        return Ok(());
    }
    let (new_long, new_short) = match side {
        Side::Long => (long + i128::from(q.0), short),
        Side::Short => (long, short + i128::from(q.0)),
    };
    let new_side = if side == Side::Long { new_long } else { new_short };
    if cap > 0 && new_side > i128::from(cap) {
        return Err(Reason::OpenInterestCap);
    }
    let (skew, new_skew) = ((long - short).abs(), (new_long - new_short).abs());
    if skew_cap > 0 && new_skew > i128::from(skew_cap) && new_skew > skew {
        return Err(Reason::SkewCap);
    }
    Ok(())
}

/// What an open (or an addition) takes from the available balance: margin, fee and the
/// group's charges.
pub(super) fn open_cost(margin: Usdc, fee: Usdc, charges: Charges) -> Result<Usdc, Reason> {
    let cost = margin.checked_add(fee).and_then(|c| c.checked_add(charges.total()));
    cost.ok_or(Reason::Overflow)
}

/// Long rejects if e > expected * (1 + bps/10^4); short if e < expected * (1 - bps/10^4).
pub(super) fn check_slippage(req: &OpenRequest, e: Price) -> Result<(), Reason> {
    let Some(expected) = req.expected_price else { return Ok(()) };
    let e = i128::from(e.0) * 10_000;
    let bps = i128::from(req.max_slippage_bps);
    let too_far = match req.side {
        Side::Long => e > i128::from(expected.0) * (10_000 + bps),
        Side::Short => e < i128::from(expected.0) * (10_000 - bps),
    };
    if too_far { Err(Reason::SlippageExceeded) } else { Ok(()) }
}

/// TP on the profitable side of `e` (the fill, or the mark when edited), SL on the losing side.
pub(super) fn check_tp_sl(
    side: Side,
    take_profit: Option<Price>,
    stop_loss: Option<Price>,
    e: Price,
) -> Result<(), Reason> {
    let (tp_ok, sl_ok) = match side {
        Side::Long => (take_profit.is_none_or(|tp| tp > e), stop_loss.is_none_or(|sl| sl < e)),
        Side::Short => (take_profit.is_none_or(|tp| tp < e), stop_loss.is_none_or(|sl| sl > e)),
    };
    if !tp_ok {
        return Err(Reason::InvalidTakeProfit);
    }
    if !sl_ok {
        return Err(Reason::InvalidStopLoss);
    }
    Ok(())
}

pub(super) fn opened_change(p: &Position, liq: Price, (fee, charges): (Usdc, Usdc)) -> Change {
    Change::Opened {
        position: p.id,
        account: p.account,
        market: p.market,
        side: p.side,
        quantity: p.qty,
        entry_price: p.entry,
        margin: p.margin(),
        leverage: p.leverage,
        fee,
        charges,
        liquidation_price: liq,
        take_profit: p.tp(),
        stop_loss: p.sl(),
    }
}

/// Quantity, margin and open fee. Margin form: q = floor(m * L / e), margin exactly m, fee on
/// m * L. Quantity form: margin = ceil(q * e / L), fee on q * e (rounded up).
pub(super) fn size_position(
    m: &Market,
    leverage: u32,
    size: Size,
    e: Price,
) -> Result<(Qty, Usdc, Usdc), Reason> {
    let rate = m.cfg.open_fee_rate;
    match size {
        Size::Margin(margin) => {
            let q = m.scale.qty_from_margin(margin, leverage, e).ok_or(Reason::Overflow)?;
            if q.0 > m.cfg.max_qty_steps {
                return Err(Reason::InvalidQuantity);
            }
            let notional = Usdc(margin.0 * i128::from(leverage));
            let fee = Scale::fee_on_notional(notional, rate).ok_or(Reason::Overflow)?;
            Ok((q, margin, fee))
        }
        Size::Quantity(q) => {
            let margin = m.scale.margin_from_qty(q, leverage, e);
            Ok((q, margin, m.scale.rate_of_value_ceil(rate, e, q)))
        }
    }
}

/// What an open request must satisfy before any price is looked at: leverage, size, and every
/// price within the market's range.
pub(super) fn check_open_inputs(
    cfg: &MarketConfig,
    max_leverage: u32,
    req: &OpenRequest,
) -> Result<(), Reason> {
    if req.leverage == 0 || req.leverage > max_leverage {
        return Err(Reason::InvalidLeverage);
    }
    match req.size {
        Size::Margin(a) => check_amount(a)?,
        Size::Quantity(q) if q.0 <= 0 || q.0 > cfg.max_qty_steps => {
            return Err(Reason::InvalidQuantity);
        }
        Size::Quantity(_) => {}
    }
    let price_ok = |p: Option<Price>| p.is_none_or(|p| p.0 > 0 && p.0 <= cfg.max_price_ticks);
    if !price_ok(req.expected_price) {
        return Err(Reason::InvalidPrice);
    }
    if !price_ok(req.take_profit) {
        return Err(Reason::InvalidTakeProfit);
    }
    if !price_ok(req.stop_loss) {
        return Err(Reason::InvalidStopLoss);
    }
    Ok(())
}

/// Where the position's equity equals `margin_call_level` × its maintenance margin
/// (`mmr × notional − cum`): the liquidation formula at `mmr × level` with `margin + level ×
/// cum` (that product rounded down: a warning a little early, never late), rounded up (0:
/// margin calls off, or a long that never gets there).
pub(super) fn margin_call_price(
    m: &Market,
    side: Side,
    e: Price,
    q: Qty,
    (margin, cum): (Usdc, Usdc),
    mmr: crate::num::Ppm,
    level: crate::num::Ppm,
) -> Price {
    if level.0 == 0 {
        return Price(0);
    }
    let extra = cum.0 * i128::from(level.0) / i128::from(crate::num::PPM_ONE);
    m.scale.liquidation_price(side, e, q, add(margin, Usdc(extra)), margin_call_rate(mmr, level))
}
