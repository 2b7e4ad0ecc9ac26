//! Editing an open position's take-profit and stop-loss.

use super::{AccountId, Change, Engine, Outcome, PositionId, Price, Reason, ReplyData, Sink};
use crate::state::open::check_tp_sl;

impl Engine {
    /// Replaces both triggers (`None` removes one). Validated like at open, against the mark
    /// the position would close at now: a TP on the profitable side, an SL on the losing side,
    /// so neither fires on the spot.
    pub(super) fn set_triggers<S: Sink>(
        &mut self,
        ts: u64,
        account: AccountId,
        id: PositionId,
        take_profit: Option<Price>,
        stop_loss: Option<Price>,
        sink: &mut S,
    ) -> Outcome {
        let (r, p) = self.owned(account, id)?;
        let cfg = &self.market(p.market)?.cfg;
        let in_range = |v: Option<Price>| v.is_none_or(|v| v.0 > 0 && v.0 <= cfg.max_price_ticks);
        if !in_range(take_profit) {
            return Err(Reason::InvalidTakeProfit);
        }
        if !in_range(stop_loss) {
            return Err(Reason::InvalidStopLoss);
        }
        let mark = self.fresh_mark(p.market, p.side, ts)?;
        check_tp_sl(p.side, take_profit, stop_loss, mark)?;
        let mut new = p;
        new.set_tp_sl(take_profit, stop_loss);
        let m = &mut self.markets[usize::from(p.market.0)];
        m.index.replace(r.slot(), p.side, p.triggers(m), new.triggers(m));
        *self.positions.get_mut(r) = new;
        self.record(sink, Change::TriggersSet { position: id, account, take_profit, stop_loss });
        Ok(ReplyData::Position(self.view(&new)))
    }
}
