//! Safety controls for programs (docs/DESIGN.md, "Safety controls"): cancel all, close all,
//! amend a pending order in place, and the dead-man's switch, which the engine fires on
//! command time (time moves only with commands: a tick, a source check every half second).

use super::orders::{draft, ended};
use super::{
    AccountId, Change, Engine, Item, MarketId, OrderEnd, OrderId, OrderRequest, OrderView, Outcome,
    Output, Reason, ReplyData, RequestId, Sink, usize_from,
};
use crate::command::OrderEdit;
use crate::index::time_key;
use crate::limits::{CANCEL_AFTER_MS_MAX, CANCEL_AFTER_MS_MIN};

impl Engine {
    /// Cancels the account's pending orders (of `market`, if given), ascending id.
    pub(super) fn cancel_all_orders<S: Sink>(
        &mut self,
        rid: RequestId,
        account: AccountId,
        market: Option<MarketId>,
        sink: &mut S,
    ) -> Outcome {
        let ai = self.account_index(account)?;
        if let Some(m) = market {
            self.market(m)?;
        }
        let done = self.cancel_orders_of(ai, market, rid, sink);
        Ok(ReplyData::Bulk { done, failed: 0, first_failure: None })
    }

    /// Cancels account `ai`'s pending orders (of `market`, if given), each with its change and,
    /// for a request, its item. Returns how many.
    pub(super) fn cancel_orders_of<S: Sink>(
        &mut self,
        ai: usize,
        market: Option<MarketId>,
        rid: RequestId,
        sink: &mut S,
    ) -> u32 {
        let mut ids = std::mem::take(&mut self.order_scratch);
        ids.clear();
        let of_market = |o: &OrderView| market.is_none_or(|m| o.market == m);
        let orders = &self.orders;
        ids.extend(self.accounts[ai].lists().orders.iter().filter(|id| of_market(&orders[id])));
        for id in &ids {
            let order = self.orders[id];
            self.unindex_order(&order);
            self.release(&order);
            self.record(sink, ended(&order, OrderEnd::Cancelled));
            if rid != RequestId::NONE {
                sink.emit(Output::Item { request_id: rid, item: Item::Order(order) });
            }
        }
        let done = u32::try_from(ids.len()).unwrap_or(u32::MAX);
        ids.clear();
        self.order_scratch = ids;
        done
    }

    /// Closes the account's open positions (of `market`, if given) at their marks, ascending
    /// id: one that cannot close now is counted, the others close.
    pub(super) fn close_all_positions<S: Sink>(
        &mut self,
        ts: u64,
        rid: RequestId,
        (account, market): (AccountId, Option<MarketId>),
        sink: &mut S,
    ) -> Outcome {
        let ai = self.account_index(account)?;
        if let Some(m) = market {
            self.market(m)?;
        }
        let mut ids = std::mem::take(&mut self.id_scratch);
        ids.clear();
        let positions = &self.positions;
        ids.extend(
            self.accounts[ai]
                .open
                .iter()
                .filter(|r| market.is_none_or(|m| positions.get(**r).market == m))
                .map(|r| r.id()),
        );
        let (mut done, mut failed, mut first_failure) = (0u32, 0u32, None);
        for &id in &ids {
            match self.close_manual(ts, account, id, None, sink) {
                Ok(ReplyData::Closed(view)) => {
                    done += 1;
                    sink.emit(Output::Item { request_id: rid, item: Item::Position(view) });
                }
                Ok(other) => unreachable!("a close answers with the closed part: {other:?}"),
                Err(reason) => {
                    failed += 1;
                    first_failure = first_failure.or(Some(reason));
                }
            }
        }
        ids.clear();
        self.id_scratch = ids;
        Ok(ReplyData::Bulk { done, failed, first_failure })
    }

    /// Amends a pending order in place: its reservation is given back, the amended order is
    /// checked as a new one would be and placed under the same id; a refusal puts the original
    /// back exactly as it was.
    pub(super) fn amend_order<S: Sink>(
        &mut self,
        ts: u64,
        (account, id): (AccountId, OrderId),
        edit: &OrderEdit,
        sink: &mut S,
    ) -> Outcome {
        let ai = self.account_index(account)?;
        let old = match self.orders.get(&id) {
            Some(o) if o.account == account => *o,
            _ => return Err(Reason::UnknownOrder),
        };
        if *edit == OrderEdit::default() {
            return Err(Reason::InvalidRequest);
        }
        let req = OrderRequest {
            account,
            market: old.market,
            side: old.side,
            kind: old.kind,
            price: edit.price.unwrap_or(old.price),
            leverage: old.leverage,
            size: edit.size.unwrap_or(old.size),
            take_profit: edit.take_profit.unwrap_or(old.take_profit),
            stop_loss: edit.stop_loss.unwrap_or(old.stop_loss),
            expires_at_ns: edit.expires_at_ns.unwrap_or(old.expires_at_ns),
            client_order_id: None,
        };
        self.unindex_order(&old);
        self.release(&old);
        let reserved = match self.order_reservation(ts, ai, &req) {
            Ok(reserved) => reserved,
            Err(reason) => {
                self.debit(ai, old.reserved);
                self.hold(ai, old.reserved);
                self.index_order(&old);
                return Err(reason);
            }
        };
        let order = OrderView { id, reserved, placed_at_ns: old.placed_at_ns, ..draft(&req, ts) };
        self.debit(ai, reserved);
        self.hold(ai, reserved);
        self.index_order(&order);
        self.record(sink, Change::OrderAmended { order, released: old.reserved });
        Ok(ReplyData::Order(order))
    }

    /// Arms, renews or disarms the account's dead-man's switch.
    pub(super) fn schedule_cancel<S: Sink>(
        &mut self,
        ts: u64,
        account: AccountId,
        after_ms: Option<u32>,
        sink: &mut S,
    ) -> Outcome {
        self.account_index(account)?;
        if after_ms.is_some_and(|ms| !(CANCEL_AFTER_MS_MIN..=CANCEL_AFTER_MS_MAX).contains(&ms)) {
            return Err(Reason::InvalidRequest);
        }
        let at_ns = after_ms.map(|ms| ts + u64::from(ms) * 1_000_000);
        if at_ns.is_some_and(|at| i64::try_from(at).is_err()) {
            return Err(Reason::InvalidExpiry);
        }
        if let Some(before) = self.cancel_schedules.remove(&account) {
            let was = self.cancel_due.remove(&(time_key(before), u64::from(account.0)));
            assert!(was, "an armed switch is in the due index");
        }
        if let Some(at) = at_ns {
            self.cancel_schedules.insert(account, at);
            self.cancel_due.insert((time_key(at), u64::from(account.0)));
        }
        self.record(sink, Change::CancelScheduled { account, at_ns });
        Ok(ReplyData::CancelSchedule { at_ns })
    }

    /// Fires every switch due at or before `ts`: each account's pending orders are cancelled.
    /// O(1) when none is due.
    #[inline]
    pub(super) fn fire_cancel_schedules<S: Sink>(&mut self, ts: u64, sink: &mut S) {
        let now = time_key(ts);
        while let Some((at, account)) = self.cancel_due.first_key().filter(|k| k.0 <= now) {
            self.cancel_due.remove(&(at, account));
            let account = AccountId(u32::try_from(account).expect("account ids are u32"));
            let at_ns = self.cancel_schedules.remove(&account).expect("a due switch is armed");
            let ai = usize_from(account.0) - 1;
            let cancelled = u32::try_from(self.accounts[ai].lists().orders.len()).unwrap_or(0);
            self.record(sink, Change::CancelScheduleFired { account, at_ns, cancelled });
            self.cancel_orders_of(ai, None, RequestId::NONE, sink);
        }
    }
}
