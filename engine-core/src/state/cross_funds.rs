//! A cross account's money rules (docs/DESIGN.md, "Cross margin"): choosing the mode, what it
//! may open and withdraw (its free margin), and a closing position's loss beyond its own margin
//! paid from the account's balance, then its other positions' margins, before any of it is the
//! insurance fund's.

use super::{
    Account, AccountId, Change, Engine, Outcome, PosRef, Position, Price, Qty, Reason, ReplyData,
    Side, Sink, Usdc, add, sub,
};
use crate::command::MarginMode;
use crate::event::CrossLevel;
use crate::num::Ppm;

impl Engine {
    /// Changes the account's margin mode; refused while it holds positions or orders (their
    /// margins and triggers were set for the other mode).
    pub(super) fn set_margin_mode<S: Sink>(
        &mut self,
        account: AccountId,
        mode: MarginMode,
        sink: &mut S,
    ) -> Outcome {
        let book = match mode {
            MarginMode::Cross => super::cross::CrossBook::new(self.markets.len()),
            MarginMode::Isolated => super::cross::CrossBook::default(),
        };
        let a = self.empty_account(account)?;
        a.mode = mode;
        a.cross = book;
        self.record(sink, Change::MarginModeSet { account, mode });
        self.account_view(account).map(ReplyData::Account)
    }

    /// The account, if it holds no position and no order (a mode may change only then).
    pub(super) fn empty_account(&mut self, account: AccountId) -> Result<&mut Account, Reason> {
        let ai = self.account_index(account)?;
        let a = &mut self.accounts[ai];
        if !a.open.is_empty() || !a.lists().orders.is_empty() {
            return Err(Reason::PositionsOpen);
        }
        Ok(a)
    }

    pub(crate) fn is_cross(&self, ai: usize) -> bool {
        self.accounts[ai].mode == MarginMode::Cross
    }

    /// What a cross account may still commit: equity − Σ position margins (its available
    /// balance plus its positions' PnL), and its level.
    pub(super) fn free_margin(&self, ai: usize) -> (Usdc, CrossLevel) {
        let level = self.cross_level(ai);
        let a = &self.accounts[ai];
        let locked = a.open.iter().fold(0, |s, &r| s + self.positions.get(r).margin().0);
        (Usdc(level.equity.0 - locked), level)
    }

    /// An open in a cross account: `cost` (margin, fees, charges) within its free margin, and
    /// the account above its stop-out level with the new position marked at once.
    pub(super) fn cross_open_check(
        &self,
        ai: usize,
        new: (crate::command::MarketId, Side, Price, Qty),
        tier: (Ppm, Usdc),
        money: (Usdc, Usdc),
    ) -> Result<(), Reason> {
        self.cross_open_check_from(ai, self.free_margin(ai), new, tier, money)
    }

    /// [`Engine::cross_open_check`] from a given free margin and level: a netting account's
    /// order checks its addition or its reversal against the account as it will be.
    pub(super) fn cross_open_check_from(
        &self,
        ai: usize,
        (free, level): (Usdc, CrossLevel),
        new: (crate::command::MarketId, Side, Price, Qty),
        (mmr, cum): (Ppm, Usdc),
        (cost, spent): (Usdc, Usdc),
    ) -> Result<(), Reason> {
        if cost > free {
            return Err(Reason::InsufficientBalance);
        }
        let (pnl, mm) = self.marked_terms(new, (mmr, cum));
        let after = CrossLevel {
            equity: add(sub(level.equity, spent), pnl),
            maintenance_margin: add(level.maintenance_margin, mm),
            level: Ppm(0),
        };
        if super::cross::below(&after, self.stop_out_level(ai)) {
            return Err(Reason::WouldLiquidate);
        }
        Ok(())
    }

    /// A position's PnL and maintenance margin at its market's mark, as the level counts them.
    pub(super) fn marked_terms(
        &self,
        (market, side, entry, q): (crate::command::MarketId, Side, Price, Qty),
        (mmr, cum): (Ppm, Usdc),
    ) -> (Usdc, Usdc) {
        let m = &self.markets[usize::from(market.0)];
        let mark = m.mark(side);
        let pnl = m.scale.pnl_floor(side, entry, mark, q);
        (pnl, sub(m.scale.rate_of_value_ceil(mmr, mark, q), cum))
    }

    /// A withdrawal from a cross account, or money held for its pending order: within its free
    /// margin, and leaving it above its stop-out level.
    pub(super) fn cross_withdraw_check(&self, ai: usize, amount: Usdc) -> Result<(), Reason> {
        let (free, level) = self.free_margin(ai);
        let after = CrossLevel { equity: sub(level.equity, amount), ..level };
        if amount > free || super::cross::below(&after, self.stop_out_level(ai)) {
            return Err(Reason::InsufficientBalance);
        }
        Ok(())
    }

    /// Pays `owed` (what a closing cross position lost beyond the margin it releases) into
    /// that position's margin: from the account's available balance (`MarginAdded`), then from
    /// its other positions' margins, ascending id (`MarginMoved`). Returns what was paid; the
    /// rest is a deficit, the insurance fund's then the house's, as for any close.
    pub(super) fn cross_cover<S: Sink>(&mut self, r: PosRef, owed: Usdc, sink: &mut S) -> Usdc {
        let p = *self.positions.get(r);
        let ai = super::usize_from(p.account.0) - 1;
        let from_available = Usdc(owed.0.min(self.accounts[ai].available.0));
        if from_available.0 > 0 {
            self.debit(ai, from_available);
            self.total_margin = add(self.total_margin, from_available);
            let margin = self.add_to_margin(r, from_available);
            let change = Change::MarginAdded {
                position: p.id,
                account: p.account,
                amount: from_available,
                margin,
                liquidation_price: Price(0),
            };
            self.record(sink, change);
        }
        let mut rest = sub(owed, from_available);
        let mut at = 0;
        while rest.0 > 0 && at < self.accounts[ai].open.len() {
            let other = self.accounts[ai].open[at];
            at += 1;
            let o: Position = *self.positions.get(other);
            let take = Usdc(rest.0.min(o.margin().0));
            if other == r || take.0 == 0 {
                continue;
            }
            self.positions.get_mut(other).set_margin(sub(o.margin(), take));
            self.add_to_margin(r, take);
            rest = sub(rest, take);
            let change =
                Change::MarginMoved { account: p.account, from: o.id, to: p.id, amount: take };
            self.record(sink, change);
        }
        sub(owed, rest)
    }

    /// A cross position's margin grows (no trigger depends on it).
    fn add_to_margin(&mut self, r: PosRef, amount: Usdc) -> Usdc {
        let p = self.positions.get_mut(r);
        debug_assert!(p.cross, "only a cross position's margin moves without re-indexing");
        let margin = add(p.margin(), amount);
        p.set_margin(margin);
        margin
    }
}
