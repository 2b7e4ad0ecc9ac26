//! Views and queries: what the engine shows of positions, accounts and markets.

use super::{
    AccountId, AccountView, CloseInfo, Engine, Item, MarketId, MarketView, Outcome, Output,
    Position, PositionId, PositionStatus, PositionView, Qty, Reason, ReplyData, RequestId, Sink,
    Usdc, add,
};

impl Engine {
    // ----- views and queries -----

    pub(super) fn view(&self, p: &Position) -> PositionView {
        let m = &self.markets[usize::from(p.market.0)];
        let upnl = if m.has_price {
            m.scale.pnl_floor(p.side, p.entry, m.mark(p.side), p.qty)
        } else {
            Usdc::ZERO
        };
        PositionView {
            id: p.id,
            account: p.account,
            market: p.market,
            side: p.side,
            status: PositionStatus::Open,
            quantity: p.qty,
            entry_price: p.entry,
            margin: p.margin(),
            leverage: p.leverage,
            liquidation_price: p.liq(m),
            take_profit: p.tp(),
            stop_loss: p.sl(),
            trailing_stop: p.trail().map(|distance| crate::event::Trailing {
                distance,
                stop_price: m.trails.stop_price(p.side, distance, p.trail_group),
            }),
            unrealized_pnl: upnl,
            opened_at_ns: p.opened_at_ns,
            close: None,
        }
    }

    pub(super) fn closed_view(
        &self,
        p: &Position,
        qc: Qty,
        released: Usdc,
        info: CloseInfo,
    ) -> PositionView {
        PositionView {
            status: PositionStatus::Closed,
            quantity: qc,
            margin: released,
            unrealized_pnl: Usdc::ZERO,
            // As the history store keeps it: a closed position trails nothing.
            trailing_stop: None,
            close: Some(info),
            ..self.view(p)
        }
    }

    pub(super) fn account_view(&self, id: AccountId) -> Result<AccountView, Reason> {
        let ai = self.account_index(id)?;
        let a = &self.accounts[ai];
        let mut locked = Usdc::ZERO;
        let mut upnl = Usdc::ZERO;
        for &r in &a.open {
            let v = self.view(self.positions.get(r));
            locked = add(locked, v.margin);
            upnl = add(upnl, v.unrealized_pnl);
        }
        Ok(AccountView {
            id,
            available: a.available,
            locked_margin: locked,
            order_margin: a.reserved,
            unrealized_pnl: upnl,
            equity: add(add(add(a.available, locked), a.reserved), upnl),
            open_positions: u32::try_from(a.open.len()).unwrap_or(u32::MAX),
            margin_mode: a.mode,
            margin_level: self.is_cross(ai).then(|| self.cross_level(ai)),
            margin_call_level: self.margin_call_level(ai),
            stop_out_level: self.stop_out_level(ai),
        })
    }

    pub(super) fn list_positions<S: Sink>(
        &self,
        rid: RequestId,
        account: AccountId,
        status: PositionStatus,
        sink: &mut S,
    ) -> Outcome {
        let a = &self.accounts[self.account_index(account)?];
        let mut count = 0u32;
        let mut emit = |v: PositionView| {
            count += 1;
            sink.emit(Output::Item { request_id: rid, item: Item::Position(v) });
        };
        match status {
            PositionStatus::Open => {
                a.open.iter().for_each(|&r| emit(self.view(self.positions.get(r))))
            }
            PositionStatus::Closed => a.lists().history.iter().rev().for_each(|v| emit(*v)),
        }
        Ok(ReplyData::List { count })
    }

    pub(super) fn find_position(
        &self,
        account: AccountId,
        id: PositionId,
    ) -> Result<PositionView, Reason> {
        let ai = self.account_index(account)?;
        let open = &self.accounts[ai].open;
        if let Ok(at) = open.binary_search_by_key(&id, |r| r.id()) {
            return Ok(self.view(self.positions.get(open[at])));
        }
        self.accounts[ai]
            .lists()
            .history
            .iter()
            .rev()
            .find(|v| v.id == id)
            .copied()
            .ok_or(Reason::UnknownPosition)
    }

    pub(super) fn market_view(&self, market: MarketId) -> MarketView {
        let m = &self.markets[usize::from(market.0)];
        MarketView {
            market,
            bid: m.bid,
            ask: m.ask,
            update_id: m.update_id,
            updated_at_ns: m.updated_at_ns,
            mode: m.mode,
            max_leverage: m.max_leverage,
            maintenance_margin_rate: m.mmr,
        }
    }

    pub(super) fn list_markets<S: Sink>(&self, rid: RequestId, ts: u64, sink: &mut S) -> ReplyData {
        for i in 0..self.markets.len() {
            let market = MarketId(u16::try_from(i).expect("validated: at most 65535 markets"));
            let view = self.market_view(market);
            sink.emit(Output::Item { request_id: rid, item: Item::Market(view) });
            if let Some(item) = self.sources_item(market, ts) {
                sink.emit(Output::Item { request_id: rid, item });
            }
        }
        ReplyData::List { count: u32::try_from(self.markets.len()).unwrap_or(u32::MAX) }
    }
}
