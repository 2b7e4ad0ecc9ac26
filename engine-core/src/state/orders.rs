//! Pending entry orders: placing (margin and fee reserved), cancelling, expiring, and filling
//! when a tick crosses the trigger (the reservation released, then an ordinary open at the
//! tick's price — refused opens end the order with the reason).

use super::{
    AccountId, Change, Engine, Item, OpenRequest, OrderEnd, OrderId, OrderKind, OrderRequest,
    OrderView, Outcome, Output, Price, Reason, ReplyData, RequestId, Side, Sink, Usdc, add, sub,
    usize_from,
};
use crate::index::time_key;
use crate::state::open::{check_open_inputs, check_tp_sl, size_position};

impl Engine {
    pub(super) fn place_order<S: Sink>(
        &mut self,
        ts: u64,
        req: &OrderRequest,
        sink: &mut S,
    ) -> Outcome {
        let ai = self.account_index(req.account)?;
        let reserved = self.order_reservation(ts, ai, req)?;
        // Accepted: from here on nothing can fail.
        let order = OrderView { id: OrderId(self.next_order_id), reserved, ..draft(req, ts) };
        self.next_order_id += 1;
        self.debit(ai, reserved);
        self.hold(ai, reserved);
        self.index_order(&order);
        self.record(sink, Change::OrderPlaced { order });
        Ok(ReplyData::Order(order))
    }

    /// Every check a new order (or an amended one, once its old reservation is back) meets;
    /// what it must hold: margin, fee and the group's charges at the order's price.
    pub(super) fn order_reservation(
        &self,
        ts: u64,
        ai: usize,
        req: &OrderRequest,
    ) -> Result<Usdc, Reason> {
        let m = self.market(req.market)?;
        if req.price.0 <= 0 || req.price.0 > m.cfg.max_price_ticks {
            return Err(Reason::InvalidPrice);
        }
        let cap = self.leverage_cap(ai, req.market, m.max_leverage);
        check_open_inputs(&m.cfg, cap, &open_request(&draft(req, ts)))?;
        self.check_new_exposure(ai, m)?;
        if req.expires_at_ns.is_some_and(|at| at <= ts) {
            return Err(Reason::InvalidExpiry);
        }
        // A long buys at the ask, a short sells at the bid: the order must not be crossed now.
        let now = self.fresh_mark(req.market, req.side.opposite(), ts)?;
        if crossed(req.side, req.kind, req.price, now) {
            return Err(Reason::InvalidOrderPrice);
        }
        check_tp_sl(req.side, req.take_profit, req.stop_loss, req.price)?;
        let (q, margin, fee) = size_position(m, req.leverage, req.size, req.price)?;
        if q.0 < m.cfg.min_qty {
            return Err(Reason::QuantityTooSmall);
        }
        if margin < m.cfg.min_margin {
            return Err(Reason::MarginTooSmall);
        }
        if self.accounts[ai].lists().orders.len() >= usize_from(self.cfg.max_orders_per_account) {
            return Err(Reason::TooManyOrders);
        }
        if self.orders.len() >= usize_from(self.cfg.max_pending_orders) {
            return Err(Reason::OrderCapacity);
        }
        // The account's group charges too, at the order's price: the fill must not fail for them.
        let charges = self.charges(ai, req.market, req.price, q).total();
        let reserved = margin.checked_add(fee).and_then(|r| r.checked_add(charges));
        let reserved = reserved.ok_or(Reason::Overflow)?;
        if self.accounts[ai].available < reserved {
            return Err(Reason::InsufficientBalance);
        }
        // A cross account's held money no longer defends its positions: like a withdrawal, it
        // must fit its free margin and leave it above its stop-out level.
        if self.is_cross(ai) {
            self.cross_withdraw_check(ai, reserved)?;
        }
        Ok(reserved)
    }

    pub(super) fn cancel_order<S: Sink>(
        &mut self,
        account: AccountId,
        id: OrderId,
        sink: &mut S,
    ) -> Outcome {
        self.account_index(account)?;
        let order = match self.orders.get(&id) {
            Some(o) if o.account == account => *o,
            _ => return Err(Reason::UnknownOrder),
        };
        self.unindex_order(&order);
        self.release(&order);
        self.record(sink, ended(&order, OrderEnd::Cancelled));
        Ok(ReplyData::Order(order))
    }

    /// Ends every good-till-time order whose expiry is at or before `ts`. O(1) when none is due.
    #[inline]
    pub(super) fn expire_orders<S: Sink>(&mut self, ts: u64, sink: &mut S) {
        if !self.expiries.any_at_or_below(time_key(ts)) {
            return;
        }
        let mut due = std::mem::take(&mut self.order_scratch);
        due.clear();
        let now = time_key(ts);
        self.expiries.extend_at_or_below(now, &mut crate::index::OrderIds(&mut due));
        for id in &due {
            let order = self.orders[id];
            self.unindex_order(&order);
            self.release(&order);
            self.record(sink, ended(&order, OrderEnd::Expired));
        }
        due.clear();
        self.order_scratch = due;
    }

    /// Fills the orders of market `mi` that the current bid/ask crosses, in id order: each
    /// releases its reservation and opens at the tick's price like an open request; an open
    /// the engine refuses at that moment ends the order with the reason instead.
    pub(super) fn fill_orders<S: Sink>(&mut self, ts: u64, mi: usize, sink: &mut S) {
        let (bid, ask) = (self.markets[mi].bid, self.markets[mi].ask);
        if !self.markets[mi].index.orders_crossed(bid, ask) {
            return;
        }
        let mut ids = std::mem::take(&mut self.order_scratch);
        ids.clear();
        self.markets[mi].index.collect_orders(bid, ask, &mut ids);
        ids.sort_unstable();
        for &id in &ids {
            let order = self.orders[&id];
            self.unindex_order(&order);
            self.release(&order);
            let end = match self.open(ts, &open_request(&order), sink) {
                Ok(view) => OrderEnd::Filled(view.id),
                Err(reason) => OrderEnd::Rejected(reason),
            };
            self.record(sink, ended(&order, end));
        }
        ids.clear();
        self.order_scratch = ids;
    }

    pub(crate) fn index_order(&mut self, o: &OrderView) {
        let ai = usize_from(o.account.0) - 1;
        self.markets[usize::from(o.market.0)].index.insert_order(o.id, o.side, o.kind, o.price);
        if let Some(at) = o.expires_at_ns {
            let fresh = self.expiries.insert((time_key(at), o.id.0));
            assert!(fresh, "order {} has two expiries", o.id.0);
        }
        // Sorted by id: a new order goes last; an amended one that is put back, in its place.
        let list = &mut self.accounts[ai].lists_mut().orders;
        let at = list.partition_point(|id| *id < o.id);
        list.insert(at, o.id);
        let fresh = self.orders.insert(o.id, *o).is_none();
        assert!(fresh, "order id reused");
    }

    pub(super) fn unindex_order(&mut self, o: &OrderView) {
        let ai = usize_from(o.account.0) - 1;
        self.markets[usize::from(o.market.0)].index.remove_order(o.id, o.side, o.kind, o.price);
        if let Some(at) = o.expires_at_ns {
            let was = self.expiries.remove(&(time_key(at), o.id.0));
            assert!(was, "order {} missing from the expiry index", o.id.0);
        }
        let list = &mut self.accounts[ai].lists_mut().orders;
        let at = list.binary_search(&o.id).expect("the account lists every pending order");
        list.remove(at);
        self.orders.remove(&o.id);
    }

    /// Moves `amount` from an account's available balance (already debited) to held.
    pub(crate) fn hold(&mut self, ai: usize, amount: Usdc) {
        self.accounts[ai].reserved = add(self.accounts[ai].reserved, amount);
        self.total_reserved = add(self.total_reserved, amount);
    }

    /// Gives an order's reservation back to its owner's available balance.
    pub(super) fn release(&mut self, o: &OrderView) {
        let ai = usize_from(o.account.0) - 1;
        let a = &mut self.accounts[ai];
        assert!(a.reserved >= o.reserved, "an account holds at least its orders' reservations");
        a.reserved = sub(a.reserved, o.reserved);
        self.total_reserved = sub(self.total_reserved, o.reserved);
        self.credit(ai, o.reserved);
    }

    pub(super) fn list_orders<S: Sink>(
        &self,
        rid: RequestId,
        account: AccountId,
        ts: u64,
        sink: &mut S,
    ) -> Outcome {
        let a = &self.accounts[self.account_index(account)?];
        let mut count = 0u32;
        // A query changes nothing, so an order past its expiry is still held until the next
        // state-changing command: it is not shown (it can no longer fill).
        for o in a.lists().orders.iter().map(|id| &self.orders[id]) {
            if o.expires_at_ns.is_none_or(|at| ts < at) {
                count += 1;
                sink.emit(Output::Item { request_id: rid, item: Item::Order(*o) });
            }
        }
        Ok(ReplyData::List { count })
    }
}

/// True if the order would fill at `now` (the ask for a long, the bid for a short).
fn crossed(side: Side, kind: OrderKind, price: Price, now: Price) -> bool {
    match (side, kind) {
        (Side::Long, OrderKind::Limit) | (Side::Short, OrderKind::Stop) => now <= price,
        (Side::Long, OrderKind::Stop) | (Side::Short, OrderKind::Limit) => now >= price,
    }
}

pub(super) fn ended(o: &OrderView, end: OrderEnd) -> Change {
    Change::OrderEnded {
        order: o.id,
        account: o.account,
        market: o.market,
        released: o.reserved,
        end,
    }
}

fn open_request(o: &OrderView) -> OpenRequest {
    OpenRequest {
        account: o.account,
        market: o.market,
        side: o.side,
        leverage: o.leverage,
        size: o.size,
        expected_price: None,
        max_slippage_bps: 0,
        take_profit: o.take_profit,
        stop_loss: o.stop_loss,
        client_order_id: None,
    }
}

/// The order a request describes, before its id and reservation are known.
pub(super) fn draft(req: &OrderRequest, ts: u64) -> OrderView {
    OrderView {
        id: OrderId(0),
        account: req.account,
        market: req.market,
        side: req.side,
        kind: req.kind,
        price: req.price,
        leverage: req.leverage,
        size: req.size,
        take_profit: req.take_profit,
        stop_loss: req.stop_loss,
        expires_at_ns: req.expires_at_ns,
        reserved: Usdc::ZERO,
        placed_at_ns: ts,
    }
}
