//! Closing: manual and triggered closes, liquidation, settlement of the money, added margin.

use super::groups::Charges;
use super::{
    AccountId, Change, CloseInfo, CloseReason, CloseSize, Engine, Event, MAX_AMOUNT, Outcome,
    Output, PosRef, Position, PositionId, PositionView, Qty, Reason, ReplyData, Sink, Usdc, add,
    check_amount, liquidatable, sub, usize_from,
};

/// What liquidates a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LiquidatedBy {
    /// The tick being applied (its margin-call pass then clears the armed entries).
    Tick,
    /// A command (financing that leaves the position liquidatable).
    Command,
}

/// Where a close's fee goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FeeTo {
    /// A manual or triggered close's fee: the house's.
    House,
    /// A liquidation's fee: the insurance fund's.
    InsuranceFund,
}

/// What becomes of a removed position's armed margin-call entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArmedCall {
    /// Taken out with its other index entries.
    Remove,
    /// Left for the tick being applied, whose margin-call pass takes it out.
    LeaveForTheTick,
}

impl Engine {
    // ----- closing -----

    /// The open position `id` of `account` (a binary search in its open list).
    pub(super) fn owned(
        &self,
        account: AccountId,
        id: PositionId,
    ) -> Result<(PosRef, Position), Reason> {
        let ai = self.account_index(account)?;
        let a = &self.accounts[ai];
        match a.open.binary_search_by_key(&id, |r| r.id()) {
            Ok(at) => {
                let r = a.open[at];
                let p = *self.positions.get(r);
                assert_eq!(p.account, account, "an open list holds its account's positions");
                Ok((r, p))
            }
            Err(_) if a.lists().history.iter().any(|h| h.id == id) => Err(Reason::PositionClosed),
            Err(_) => Err(Reason::UnknownPosition),
        }
    }

    pub(super) fn close_manual<S: Sink>(
        &mut self,
        ts: u64,
        account: AccountId,
        id: PositionId,
        quantity: Option<CloseSize>,
        sink: &mut S,
    ) -> Outcome {
        let (r, p) = self.owned(account, id)?;
        let cfg = &self.market(p.market)?.cfg;
        let qc = match quantity {
            None => p.qty,
            Some(CloseSize::Steps(q)) => q,
            Some(CloseSize::Decimal(d)) => {
                Qty(d.to_steps(cfg.qty_decimals).ok_or(Reason::InvalidQuantity)?)
            }
        };
        if qc.0 <= 0 || qc > p.qty {
            return Err(Reason::InvalidQuantity);
        }
        let min_qty = cfg.min_qty;
        if qc < p.qty && p.qty.0 - qc.0 < min_qty {
            return Err(Reason::QuantityTooSmall);
        }
        self.fresh_mark(p.market, p.side, ts)?;
        Ok(ReplyData::Closed(self.close_part(ts, r, qc, CloseReason::Manual, sink)))
    }

    /// Closes `qc` of position `id` at its market's current mark (manual, TP, SL). Releases margin
    /// pro rata (rounded down, so what stays locked never shrinks below its share).
    pub(super) fn close_part<S: Sink>(
        &mut self,
        ts: u64,
        r: PosRef,
        qc: Qty,
        reason: CloseReason,
        sink: &mut S,
    ) -> PositionView {
        let p = *self.positions.get(r);
        assert!(qc.0 > 0 && qc <= p.qty, "close quantity out of range");
        let full = qc == p.qty;
        // A partial close's closed part is a position of its own in the history (its own id
        // from the same sequence, its close info naming the position it came from).
        let part = if full { p.id } else { self.allocate_position_id() };
        let CloseTerms { mark, released, pnl, market_fee } = self.close_terms(&p, qc);
        // A cross account pays a loss beyond the released margin from its balance and its
        // other positions' margins first.
        let owed = Usdc((-(released.0 + pnl.0 - market_fee.0)).max(0));
        let released = if p.cross && owed.0 > 0 {
            add(released, self.cross_cover(r, owed, sink))
        } else {
            released
        };
        // The group's markup and commission, out of what the trader has left (never a deficit).
        let ai = usize_from(p.account.0) - 1;
        let before = sub(add(released, pnl), market_fee);
        let charges = self.charges(ai, p.market, mark, qc).capped(before);
        let fee = add(market_fee, charges.total());
        let value = sub(before, charges.total());
        let info = CloseInfo {
            exit_price: mark,
            realized_pnl: pnl,
            fee,
            payout: Usdc(value.0.max(0)),
            reason,
            closed_at_ns: ts,
            position: p.id,
        };
        let settled = self.settle(&p, released, info, (FeeTo::House, charges), sink);
        if charges != Charges::default() {
            let (spread, commission) = (charges.spread, charges.commission);
            let change = Change::Charged { account: p.account, position: p.id, spread, commission };
            self.record(sink, change);
        }
        let change = closed_change(&p, (part, qc), (released, charges.total()), &info, settled);
        self.record(sink, change);
        if full {
            self.remove_position(r);
        } else {
            self.shrink_position(r, qc, released);
        }
        match reason {
            CloseReason::TakeProfit => self.counters.take_profits += 1,
            CloseReason::StopLoss | CloseReason::TrailingStop => self.counters.stop_losses += 1,
            _ => {}
        }
        let closed = PositionView { id: part, ..self.closed_view(&p, qc, released, info) };
        self.remember_closed(p.account, closed);
        self.cross_touch(ai, true);
        closed
    }

    /// What closing `qc` of `p` at its market's current mark releases (pro rata, rounded down),
    /// realizes and costs in the market's fee, before a cross account's cover and the group's
    /// charges.
    pub(super) fn close_terms(&self, p: &Position, qc: Qty) -> CloseTerms {
        let m = &self.markets[usize::from(p.market.0)];
        let mark = m.mark(p.side);
        let released = if qc == p.qty {
            p.margin()
        } else {
            Usdc(crate::num::div_floor(p.margin().0 * i128::from(qc.0), i128::from(p.qty.0)))
        };
        let pnl = m.scale.pnl_floor(p.side, p.entry, mark, qc);
        let market_fee = m.scale.rate_of_value_ceil(m.cfg.close_fee_rate, mark, qc);
        CloseTerms { mark, released, pnl, market_fee }
    }

    /// Liquidates the whole position at its market's current mark. Fee = min(max(equity, 0),
    /// rate * p * q) to the insurance fund; the trader gets max(equity - fee, 0). Liquidated by
    /// a tick, its armed margin-call entry is left for that tick's margin-call pass, which takes
    /// it out with the others (no lookup per liquidation).
    pub(super) fn liquidate<S: Sink>(
        &mut self,
        ts: u64,
        r: PosRef,
        by: LiquidatedBy,
        sink: &mut S,
    ) -> PositionView {
        let p = *self.positions.get(r);
        let liq = p.liq(&self.markets[usize::from(p.market.0)]);
        self.explain(&p, (crate::event::Trigger::Liquidation, liq), sink);
        let m = &self.markets[usize::from(p.market.0)];
        let mark = m.mark(p.side);
        debug_assert!(liquidatable(p.side, mark, liq));
        let pnl = m.scale.pnl_floor(p.side, p.entry, mark, p.qty);
        let margin = p.margin();
        let equity = add(margin, pnl);
        let fee_full = m.scale.rate_of_value_ceil(m.cfg.liquidation_fee_rate, mark, p.qty);
        let fee = Usdc(equity.0.max(0).min(fee_full.0));
        let info = CloseInfo {
            exit_price: mark,
            realized_pnl: pnl,
            fee,
            payout: Usdc(sub(equity, fee).0.max(0)),
            reason: CloseReason::Liquidation,
            closed_at_ns: ts,
            position: p.id,
        };
        let to = (FeeTo::InsuranceFund, Charges::default()); // a liquidation pays no group charges
        let settled = self.settle(&p, margin, info, to, sink);
        let change = closed_change(&p, (p.id, p.qty), (margin, Usdc::ZERO), &info, settled);
        self.record(sink, change);
        let call = match by {
            LiquidatedBy::Tick => ArmedCall::LeaveForTheTick,
            LiquidatedBy::Command => ArmedCall::Remove,
        };
        self.remove_position_with(r, call);
        self.counters.liquidations += 1;
        let closed = self.closed_view(&p, p.qty, margin, info);
        self.remember_closed(p.account, closed);
        closed
    }

    /// Moves the money of a close. `released` margin leaves the position; the trader is owed
    /// `value = released + pnl - fee` and gets `max(value, 0)`; the fee goes to the insurance fund
    /// (liquidation) or the house (close); a deficit (`value < 0`) is paid by the insurance fund,
    /// then the house; the house takes the rest: the trader's loss, or pays the trader's profit.
    pub(super) fn settle<S: Sink>(
        &mut self,
        p: &Position,
        released: Usdc,
        info: CloseInfo,
        (fee_to, charges): (FeeTo, Charges),
        sink: &mut S,
    ) -> Settlement {
        let value = sub(add(released, info.realized_pnl), info.fee);
        assert_eq!(info.payout, Usdc(value.0.max(0)), "payout is max(value, 0)");
        let deficit = Usdc((-value.0).max(0));
        let insurance_paid = Usdc(deficit.0.min(self.insurance_fund.0));
        let house_paid = sub(deficit, insurance_paid);
        let insurance_fee = match fee_to {
            FeeTo::InsuranceFund => info.fee,
            FeeTo::House => Usdc::ZERO,
        };
        let insurance_delta = sub(insurance_fee, insurance_paid);
        // Conservation: released = payout + Δinsurance + Δhouse + the group's charges (which
        // `info.fee` includes, and which go to their own lines).
        let house_delta = sub(sub(sub(released, info.payout), insurance_delta), charges.total());
        self.collect(charges);

        self.total_margin = sub(self.total_margin, released);
        self.credit(usize_from(p.account.0) - 1, info.payout);
        self.insurance_fund = add(self.insurance_fund, insurance_delta);
        self.house_balance = add(self.house_balance, house_delta);
        assert!(self.insurance_fund.0 >= 0, "insurance fund below zero");
        if deficit.0 > 0 {
            self.counters.bad_debts += 1;
            sink.emit(Output::Event(Event::BadDebt {
                position: p.id,
                account: p.account,
                amount: deficit,
                insurance_paid,
                house_paid,
            }));
        }
        Settlement { deficit, insurance_paid, house_paid }
    }

    pub(super) fn remove_position(&mut self, r: PosRef) {
        self.remove_position_with(r, ArmedCall::Remove);
    }

    /// Removes an open position and its index entries (the armed margin call: see
    /// [`Engine::liquidate`]).
    fn remove_position_with(&mut self, r: PosRef, call: ArmedCall) {
        let p = *self.positions.get(r);
        self.untrail(r, &p);
        let entry = i128::from(p.entry.0) * i128::from(p.qty.0);
        self.count_open_interest(p.market, p.side, (-1, -p.qty.0), -entry);
        let m = &mut self.markets[usize::from(p.market.0)];
        let triggers = p.triggers(m);
        match call {
            ArmedCall::LeaveForTheTick => m.index.remove_but_armed_call(r.slot(), p.side, triggers),
            ArmedCall::Remove => m.index.remove(r.slot(), p.side, triggers),
        }
        self.positions.remove(r);
        let open = &mut self.accounts[usize_from(p.account.0) - 1].open;
        let at = open.binary_search(&r).expect("open list holds every open position");
        open.remove(at);
    }

    pub(super) fn shrink_position(&mut self, r: PosRef, qc: Qty, released: Usdc) {
        let p = *self.positions.get(r);
        self.resize(r, Qty(p.qty.0 - qc.0), sub(p.margin(), released));
    }

    pub(super) fn remember_closed(&mut self, account: AccountId, closed: PositionView) {
        let limit = usize_from(self.cfg.closed_history_per_account);
        if limit == 0 {
            return;
        }
        let history = &mut self.accounts[usize_from(account.0) - 1].lists_mut().history;
        if history.len() >= limit {
            history.pop_front();
        } else if history.len() == history.capacity() {
            // Doubling, but never past the limit: a full history of 100 would otherwise sit in
            // 128 slots (6 KB an account wasted at 224 bytes a view).
            let grown = (history.capacity() * 2).max(4).min(limit);
            history.reserve_exact(grown - history.len());
        }
        assert!(history.len() < history.capacity(), "room for the closed position");
        history.push_back(closed);
    }

    // ----- margin -----

    pub(super) fn add_margin<S: Sink>(
        &mut self,
        account: AccountId,
        id: PositionId,
        amount: Usdc,
        sink: &mut S,
    ) -> Outcome {
        let (r, p) = self.owned(account, id)?;
        check_amount(amount)?;
        let ai = self.account_index(account)?;
        if self.accounts[ai].available < amount {
            return Err(Reason::InsufficientBalance);
        }
        let margin = p.margin().checked_add(amount).ok_or(Reason::Overflow)?;
        if margin > MAX_AMOUNT {
            return Err(Reason::InvalidAmount);
        }
        self.debit(ai, amount);
        self.total_margin = add(self.total_margin, amount);
        let pos = self.resize(r, p.qty, margin);
        self.cross_touch(ai, true);
        let liq = pos.liq(&self.markets[usize::from(p.market.0)]);
        let change =
            Change::MarginAdded { position: id, account, amount, margin, liquidation_price: liq };
        self.record(sink, change);
        Ok(ReplyData::Position(self.view(&pos)))
    }
}

/// See [`Engine::close_terms`].
pub(super) struct CloseTerms {
    pub(super) mark: crate::num::Price,
    pub(super) released: Usdc,
    pub(super) pnl: Usdc,
    pub(super) market_fee: Usdc,
}

/// Who paid a close's deficit (all zero when there was none).
#[derive(Clone, Copy)]
pub(super) struct Settlement {
    deficit: Usdc,
    insurance_paid: Usdc,
    house_paid: Usdc,
}

fn closed_change(
    p: &Position,
    (part, qc): (PositionId, Qty),
    (released, charges): (Usdc, Usdc),
    info: &CloseInfo,
    settled: Settlement,
) -> Change {
    Change::Closed {
        position: part,
        of_position: p.id,
        account: p.account,
        market: p.market,
        side: p.side,
        quantity: qc,
        entry_price: p.entry,
        exit_price: info.exit_price,
        margin_released: released,
        realized_pnl: info.realized_pnl,
        fee: info.fee,
        charges,
        payout: info.payout,
        reason: info.reason,
        bad_debt: settled.deficit,
        insurance_paid: settled.insurance_paid,
        house_paid: settled.house_paid,
    }
}

#[cfg(test)]
mod tests {
    use crate::prelude::*;

    #[test]
    fn a_full_closed_history_holds_exactly_its_limit() {
        let limit = 100;
        let cfg = EngineConfig { closed_history_per_account: limit, ..EngineConfig::default() };
        let mut e = Engine::new(cfg).unwrap();
        let mut out = Vec::new();
        let mut ts = 1_700_000_000_000_000_000;
        let mut apply = |e: &mut Engine, kind| {
            ts += 1_000;
            out.clear();
            e.apply(&Command::new(RequestId::NONE, ts, kind), &mut out);
        };
        let login = Login::new("h@x").unwrap();
        apply(&mut e, CommandKind::CreateAccount { login, credential: Credential::empty() });
        let account = AccountId(1);
        let amount = Usdc::from_whole(1_000_000);
        apply(&mut e, CommandKind::Deposit { account, amount, key: None });
        let (bid, ask) = (Price(6_000_000), Price(6_000_002));
        let tick = Tick { market: MarketId(0), bid, ask, update_id: 1, exchange_time_us: 0 };
        apply(&mut e, CommandKind::PriceTick(tick));
        let mut capacities = Vec::new();
        for p in 1..=u64::from(limit) + 20 {
            let size = Size::Margin(Usdc::from_whole(10));
            let open = OpenRequest::new(account, MarketId(0), Side::Long, 10, size);
            apply(&mut e, CommandKind::OpenPosition(open));
            let close = CommandKind::ClosePosition {
                account,
                position: PositionId(p),
                quantity: None,
                key: None,
            };
            apply(&mut e, close);
            capacities.push(e.accounts[0].lists().history.capacity());
        }
        let history = &e.accounts[0].lists().history;
        assert_eq!(history.len(), 100, "the newest {limit} kept");
        assert_eq!(history.back().map(|v| v.id), Some(PositionId(120)));
        assert_eq!(history.capacity(), 100, "and no more room than that");
        capacities.dedup();
        assert_eq!(capacities, vec![4, 8, 16, 32, 64, 100], "it still grows by doubling");
    }
}
