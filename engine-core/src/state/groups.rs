//! Client groups (a broker's account types, docs/DESIGN.md, "Client groups"): what an account
//! pays on a market on top of the market's fees — a spread markup and a commission — and the
//! operator's move of an account from one group to another.
//!
//! Both are charged on every open and every close but a liquidation, as their own amounts:
//! markup = `markup_ticks × quantity` and commission = `commission_rate × notional`, each
//! rounded up to the micro-USDC. They go to two lines of their own, `spread_revenue` and
//! `commission_revenue`, apart from the house balance, and both are terms of the conservation
//! equation. The price a position opens and closes at, its PnL and its liquidation price are
//! the market's, whatever the group: trigger keys do not depend on groups, and a quiet tick
//! stays O(1) whatever their number. A round trip at a constant price costs exactly twice the
//! markup and commission plus the market's fees.

use super::{
    AccountId, Change, Engine, Item, MarketId, Outcome, Output, Price, Qty, Reason, ReplyData,
    RequestId, Sink, Usdc, add,
};
use crate::command::{GroupEdit, Login};
use crate::config::GroupTerms;
use crate::num::Ppm;

/// What an account pays on one fill.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Charges {
    /// Spread markup, to `spread_revenue`.
    pub(crate) spread: Usdc,
    /// Commission, to `commission_revenue`.
    pub(crate) commission: Usdc,
}

impl Charges {
    /// Both together.
    pub(crate) fn total(self) -> Usdc {
        add(self.spread, self.commission)
    }

    /// At most `cap` of them, the spread first (a close cannot take more than the trader has).
    pub(crate) fn capped(self, cap: Usdc) -> Charges {
        let cap = cap.0.max(0);
        let spread = Usdc(self.spread.0.min(cap));
        let commission = Usdc(self.commission.0.min(cap - spread.0));
        Charges { spread, commission }
    }
}

impl Engine {
    /// The terms account index `ai` trades `market` on.
    pub(super) fn terms(&self, ai: usize, market: MarketId) -> GroupTerms {
        let group = usize::from(self.accounts[ai].group);
        self.groups[group][usize::from(market.0)]
    }

    /// The highest leverage account index `ai` may open at on `market`: the market's, or its
    /// group's if lower.
    pub(super) fn leverage_cap(&self, ai: usize, market: MarketId, market_max: u32) -> u32 {
        market_max.min(self.terms(ai, market).max_leverage)
    }

    /// The margin-call level of account index `ai`'s positions: its group's, or the engine's.
    pub(super) fn margin_call_level(&self, ai: usize) -> Ppm {
        let group = usize::from(self.accounts[ai].group);
        self.group_levels.get(group).copied().unwrap_or(self.cfg.margin_call_level)
    }

    /// The stop-out level of account index `ai` when it is cross: its group's, or the
    /// engine's.
    pub(crate) fn stop_out_level(&self, ai: usize) -> Ppm {
        let group = usize::from(self.accounts[ai].group);
        self.group_stop_levels.get(group).copied().unwrap_or(self.cfg.stop_out_level)
    }

    /// Whether account index `ai` is swap-free: by its login (`swap_free_logins`) or its group.
    pub(super) fn is_swap_free(&self, ai: usize) -> bool {
        let by_group = self.swap_free_groups.get(usize::from(self.accounts[ai].group));
        self.swap_free.contains(&self.accounts[ai].login) || by_group.copied().unwrap_or(false)
    }

    /// The financing rates per period (long, short) of a group with `terms` on `market`: its
    /// own, else the market's.
    pub(super) fn financing_rates(&self, terms: GroupTerms, market: MarketId) -> (Ppm, Ppm) {
        let cfg = &self.markets[usize::from(market.0)].cfg;
        terms.financing.unwrap_or((cfg.financing_long_rate, cfg.financing_short_rate))
    }

    /// What account index `ai` pays on a fill of `q` on `market` at `e`: the markup in ticks
    /// and in bps, the commission as a rate and per lot, each part rounded up on its own.
    pub(super) fn charges(&self, ai: usize, market: MarketId, e: Price, q: Qty) -> Charges {
        let t = self.terms(ai, market);
        if t.markup_ticks == 0
            && t.markup_bps == 0
            && t.commission_rate.0 == 0
            && t.commission_per_lot.0 == 0
        {
            return Charges::default();
        }
        let m = &self.markets[usize::from(market.0)];
        let bps = Ppm(i64::from(t.markup_bps) * 100);
        let lots = |per_lot: Usdc| {
            // per_lot ≤ 10^9 micros and q < 2^63: the product fits i128.
            let den = 10i128.pow(m.cfg.qty_decimals);
            Usdc((per_lot.0 * i128::from(q.0) + den - 1).div_euclid(den))
        };
        Charges {
            spread: add(
                m.scale.notional_ceil(Price(t.markup_ticks), q),
                m.scale.rate_of_value_ceil(bps, e, q),
            ),
            commission: add(
                m.scale.rate_of_value_ceil(t.commission_rate, e, q),
                lots(t.commission_per_lot),
            ),
        }
    }

    /// An operator edits `group`'s terms on `market`: every value checked first, then all
    /// applied, so a refused edit changes nothing.
    pub(super) fn edit_group<S: Sink>(
        &mut self,
        by: AccountId,
        (group, market): (u16, MarketId),
        edit: GroupEdit,
        sink: &mut S,
    ) -> Outcome {
        self.check_admin(by)?;
        let max_price = self.market(market)?.cfg.max_price_ticks;
        let g = usize::from(group);
        if g >= self.groups.len() {
            return Err(Reason::UnknownGroup);
        }
        let old = self.groups[g][usize::from(market.0)];
        let mut terms = GroupTerms {
            markup_ticks: edit.markup_ticks.unwrap_or(old.markup_ticks),
            markup_bps: edit.markup_bps.unwrap_or(old.markup_bps),
            commission_rate: edit.commission_rate.unwrap_or(old.commission_rate),
            commission_per_lot: edit.commission_per_lot.unwrap_or(old.commission_per_lot),
            max_leverage: edit.max_leverage.unwrap_or(old.max_leverage),
            financing: old.financing,
        };
        if edit.financing_long_rate.is_some() || edit.financing_short_rate.is_some() {
            let (long, short) = self.financing_rates(old, market);
            terms.financing = Some((
                edit.financing_long_rate.unwrap_or(long),
                edit.financing_short_rate.unwrap_or(short),
            ));
        }
        // The configuration's ranges, on the whole result (what the edit left was in range).
        if terms.out_of_range(max_price).is_some() {
            return Err(Reason::InvalidRequest);
        }
        if edit.max_leverage == Some(0) {
            return Err(Reason::InvalidLeverage);
        }
        self.groups[g][usize::from(market.0)] = terms;
        self.record(sink, Change::GroupTermsSet { by, group, market, edit });
        Ok(ReplyData::GroupTerms { group, market, terms })
    }

    /// What `account` pays per market: one item each, then its group.
    pub(super) fn terms_of<S: Sink>(
        &self,
        rid: RequestId,
        account: AccountId,
        sink: &mut S,
    ) -> Outcome {
        let ai = self.account_index(account)?;
        let group = self.accounts[ai].group;
        let swap_free = self.is_swap_free(ai);
        self.emit_terms(rid, group, swap_free, sink);
        Ok(ReplyData::Group { account, group })
    }

    /// A group's terms on every market, for operators (a swap-free group's financing is 0).
    pub(super) fn group_terms<S: Sink>(
        &self,
        rid: RequestId,
        (by, group): (AccountId, u16),
        sink: &mut S,
    ) -> Outcome {
        self.check_admin(by)?;
        if usize::from(group) >= self.groups.len() {
            return Err(Reason::UnknownGroup);
        }
        let swap_free = self.swap_free_groups.get(usize::from(group)).copied().unwrap_or(false);
        self.emit_terms(rid, group, swap_free, sink);
        Ok(ReplyData::Group { account: AccountId(0), group })
    }

    fn emit_terms<S: Sink>(&self, rid: RequestId, group: u16, swap_free: bool, sink: &mut S) {
        for (i, t) in self.groups[usize::from(group)].iter().enumerate() {
            let market = MarketId(u16::try_from(i).expect("market ids fit u16"));
            let financing_rates =
                if swap_free { (Ppm(0), Ppm(0)) } else { self.financing_rates(*t, market) };
            let item = Item::Terms {
                market,
                markup_ticks: t.markup_ticks,
                commission_rate: t.commission_rate,
                max_leverage: self.markets[i].max_leverage.min(t.max_leverage),
                markup_bps: t.markup_bps,
                commission_per_lot: t.commission_per_lot,
                financing_rates,
            };
            sink.emit(Output::Item { request_id: rid, item });
        }
    }

    /// Books charges the trader has paid.
    pub(super) fn collect(&mut self, charges: Charges) {
        self.spread_revenue = add(self.spread_revenue, charges.spread);
        self.commission_revenue = add(self.commission_revenue, charges.commission);
    }

    /// An operator moves the account of `login` to `group` (effective from its next command).
    pub(super) fn set_group<S: Sink>(
        &mut self,
        by: AccountId,
        login: &Login,
        group: u16,
        sink: &mut S,
    ) -> Outcome {
        self.check_admin(by)?;
        if usize::from(group) >= self.groups.len() {
            return Err(Reason::UnknownGroup);
        }
        let account = self.account_of_login(login).ok_or(Reason::UnknownAccount)?;
        let ai = self.account_index(account)?;
        self.accounts[ai].group = group;
        self.record(sink, Change::GroupSet { account, by, group });
        // A cross account's levels are its group's: checked and re-keyed with the new ones.
        self.cross_touch(ai, true);
        Ok(ReplyData::Group { account, group })
    }
}
