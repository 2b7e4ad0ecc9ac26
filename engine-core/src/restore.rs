//! Restoring an engine from a snapshot ([`crate::snapshot::EngineSnapshot`]): the maps and
//! trigger indexes rebuilt, and every invariant checked before the engine may run.

use std::collections::VecDeque;

use crate::command::{AccountId, MarginMode, OrderId, PositionId};
use crate::config::EngineConfig;
use crate::idempotency::KeyWindow;
use crate::math::Side;
use crate::num::Usdc;
use crate::snapshot::{EngineSnapshot, PositionSnapshot, SnapshotError};
use crate::state::{Account, Engine, Position, usize_from};

impl Engine {
    /// Rebuilds an engine from a snapshot under `cfg`, checking that the snapshot fits the
    /// configuration and that every invariant holds.
    pub fn restore(cfg: EngineConfig, snap: &EngineSnapshot) -> Result<Engine, SnapshotError> {
        let bad = |why: String| Err(SnapshotError::Config(why));
        let mut e = Engine::new(cfg).map_err(|err| SnapshotError::Config(err.to_string()))?;
        restore_markets(&mut e, snap)?;
        if snap.accounts.len() > usize_from(e.cfg.max_accounts)
            || snap.positions.len() > usize_from(e.cfg.max_open_positions)
        {
            return bad("more accounts or positions than the configured limits".into());
        }
        for (i, a) in snap.accounts.iter().enumerate() {
            let id = AccountId(u32::try_from(i + 1).map_err(|_| SnapshotError::Malformed)?);
            let keep = usize_from(e.cfg.closed_history_per_account);
            let skip = a.history.len().saturating_sub(keep);
            let mut account = Account::new(a.login, a.credential, a.available);
            account.admin = a.admin;
            if skip < a.history.len() || !a.keys.is_empty() {
                let lists = account.lists_mut();
                lists.history = a.history[skip..].iter().copied().collect::<VecDeque<_>>();
                let cap = usize_from(e.cfg.idempotency_keys_per_account);
                lists.keys = KeyWindow::from_entries(&a.keys, cap);
            }
            if e.account_of_login(&a.login).is_some() {
                return bad(format!("duplicate login {:?}", a.login));
            }
            e.accounts.push(account);
            e.logins.insert(&a.login, id);
        }
        e.next_key_id = snap.next_key_id.max(1);
        for &key in &snap.api_keys {
            let i = usize_from(key.account.0).wrapping_sub(1);
            if i >= e.accounts.len() || key.id.0 >= e.next_key_id {
                return bad(format!(
                    "API key {} of unknown account or beyond next_key_id",
                    key.id.0
                ));
            }
            if e.api_keys.insert(key.public_key, (key.account, key.id)).is_some() {
                return bad(format!("API key {}: duplicate public key", key.id.0));
            }
            e.accounts[i].lists_mut().api_keys.push(key);
        }
        e.next_session_id = snap.next_session_id.max(1);
        for &session in &snap.sessions {
            let i = usize_from(session.account.0).wrapping_sub(1);
            let last = e.accounts.get(i).and_then(|a| a.lists().sessions.last().map(|s| s.id));
            if i >= e.accounts.len()
                || session.id.0 >= e.next_session_id
                || last.is_some_and(|l| l >= session.id)
                || e.sessions.contains_key(&session.id)
                || i64::try_from(session.expires_at_ns).is_err()
            {
                return bad(format!("session {} out of order or of unknown account", session.id.0));
            }
            e.index_session(session);
        }
        for &(account, t) in &snap.totp {
            let i = usize_from(account.0).wrapping_sub(1);
            if i >= e.accounts.len() || e.accounts[i].lists().totp.is_some() {
                return bad(format!("two-factor state of unknown account {}", account.0));
            }
            e.accounts[i].lists_mut().totp = Some(Box::new(t));
        }
        for &(account, status, credit) in &snap.controls {
            let i = usize_from(account.0).wrapping_sub(1);
            if i >= e.accounts.len() || credit.0 < 0 || credit > crate::config::MAX_AMOUNT {
                return bad(format!("controls of unknown account {}", account.0));
            }
            e.accounts[i].status = status;
            if credit.0 != 0 {
                e.accounts[i].lists_mut().credit = credit;
            }
        }
        for &(account, at) in &snap.cancel_schedules {
            let i = usize_from(account.0).wrapping_sub(1);
            if i >= e.accounts.len() || i64::try_from(at).is_err() {
                return bad(format!("dead-man's switch of unknown account {}", account.0));
            }
            e.cancel_schedules.insert(account, at);
            e.cancel_due.insert((crate::index::time_key(at), u64::from(account.0)));
        }
        for &account in &snap.netting {
            let i = usize_from(account.0).wrapping_sub(1);
            if i >= e.accounts.len() {
                return bad(format!("netting mode of unknown account {}", account.0));
            }
            e.accounts[i].position_mode = crate::command::PositionMode::Netting;
        }
        for &(account, armed) in snap.cross.iter().flat_map(|c| &c.accounts) {
            let i = usize_from(account.0).wrapping_sub(1);
            if i >= e.accounts.len() {
                return bad(format!("cross mode of unknown account {}", account.0));
            }
            e.accounts[i].mode = crate::command::MarginMode::Cross;
            e.accounts[i].cross = crate::state::cross::CrossBook::new(e.markets.len());
            e.accounts[i].cross.armed = armed;
        }
        let mut last = PositionId(0);
        for p in &snap.positions {
            if p.id <= last || p.id.0 >= snap.next_position_id {
                return bad("positions out of order or beyond next_position_id".into());
            }
            last = p.id;
            let ai = usize_from(p.account.0).checked_sub(1).filter(|i| *i < e.accounts.len());
            let Some(ai) = ai else { return bad(format!("position {} has no account", p.id.0)) };
            let Some(m) = e.markets.get_mut(usize::from(p.market.0)) else {
                return bad(format!("position {} has no market", p.id.0));
            };
            p.fits().map_err(SnapshotError::Config)?;
            if e.accounts[ai].open.len() >= usize_from(e.cfg.max_positions_per_account) {
                return bad("an account holds more positions than allowed".into());
            }
            let bracket_group = match snap.bracket_groups.binary_search_by_key(&p.id, |b| b.0) {
                Ok(at) => snap.bracket_groups[at].1,
                Err(_) => 0,
            };
            if usize::from(bracket_group) >= e.groups.len() {
                return bad(format!("position {} keeps an unknown group's brackets", p.id.0));
            }
            let cross = e.accounts[ai].mode == MarginMode::Cross;
            let pos = Position { cross, bracket_group, ..Position::from(p) };
            if pos.liq(m) != p.liq {
                return bad(format!("position {}: liquidation price differs", p.id.0));
            }
            let r = e.positions.insert(pos);
            m.index.insert(r.slot(), p.side, pos.triggers(m));
            m.open_interest[usize::from(p.side == Side::Short)].0 += 1;
            m.open_interest[usize::from(p.side == Side::Short)].1 += p.qty.0;
            m.entry_sum[usize::from(p.side == Side::Short)] +=
                i128::from(p.entry.0) * i128::from(p.qty.0);
            e.accounts[ai].push_open(r, usize_from(e.cfg.max_positions_per_account));
        }
        restore_trails(&mut e, snap);
        restore_orders(&mut e, snap)?;
        e.next_position_id = snap.next_position_id;
        e.insurance_fund = snap.insurance_fund;
        e.house_balance = snap.house_balance;
        e.spread_revenue = snap.spread_revenue;
        e.commission_revenue = snap.commission_revenue;
        // Groups the snapshot knows keep their (possibly operator-changed) terms; groups added
        // to the configuration since start from it.
        for (g, terms) in e.groups.iter_mut().zip(&snap.group_terms) {
            for (t, &(markup_ticks, commission_rate, max_leverage)) in g.iter_mut().zip(terms) {
                // What an operator can edit; the rest of the terms are the configuration's.
                (t.markup_ticks, t.commission_rate, t.max_leverage) =
                    (markup_ticks, commission_rate, max_leverage);
            }
        }
        for (g, pricing) in e.groups.iter_mut().zip(&snap.group_pricing) {
            for (t, &(bps, per_lot, financing)) in g.iter_mut().zip(pricing) {
                (t.markup_bps, t.commission_per_lot, t.financing) = (bps, per_lot, financing);
            }
        }
        for &(account, group) in &snap.groups {
            let i = usize_from(account.0).wrapping_sub(1);
            if i >= e.accounts.len() {
                return bad(format!("group of unknown account {}", account.0));
            }
            if usize::from(group) >= e.groups.len() {
                return bad(format!(
                    "account {} is in group {group}, which is not configured",
                    account.0
                ));
            }
            e.accounts[i].group = group;
        }
        e.total_deposits = snap.total_deposits;
        e.total_withdrawals = snap.total_withdrawals;
        e.total_available = Usdc(e.accounts.iter().map(|a| a.available.0).sum());
        e.total_margin = Usdc(e.positions.values().map(|p| p.margin().0).sum());
        let window = usize_from(e.cfg.request_id_window);
        for &(rid, fingerprint, r) in &snap.requests[snap.requests.len().saturating_sub(window)..] {
            if e.requests.get(rid).is_some() {
                return bad(format!("request {} remembered twice", rid.0));
            }
            e.requests.remember(rid, fingerprint, r);
        }
        e.max_request_id = snap.max_request_id;
        e.counters = snap.counters;
        if let Some(c) = &snap.cross {
            (e.counters.stop_outs, e.counters.cross_checks, e.counters.band_crossings) = c.counters;
        }
        e.cross_restore();
        e.seq = snap.seq;
        e.check_conservation().map_err(SnapshotError::Config)?;
        Ok(e)
    }
}

/// The trailing stops, rebuilt book by book from the highest peak down (the order the stack
/// keeps), so every stop follows the same peak as before.
fn restore_trails(e: &mut Engine, snap: &EngineSnapshot) {
    let mut trailing: Vec<&PositionSnapshot> =
        snap.positions.iter().filter(|p| p.trail.is_some()).collect();
    trailing.sort_by_key(|p| (std::cmp::Reverse(x_of(p)), p.id));
    for p in trailing {
        let d = p.trail.expect("filtered");
        let book = e.markets[usize::from(p.market.0)].trails.book(p.side, d);
        let open = &e.accounts[usize_from(p.account.0) - 1].open;
        let r = open[open.binary_search_by_key(&p.id, |r| r.id()).expect("restored above")];
        let group = book.insert(r, crate::trail::raw(d), x_of(p));
        e.positions.get_mut(r).trail_group = group;
    }
}

fn x_of(p: &PositionSnapshot) -> i64 {
    crate::trail::x(p.side, p.trail_peak, p.trail_peak)
}

/// The pending orders, re-indexed and held, refusing any that break a limit or name nothing.
fn restore_orders(e: &mut Engine, snap: &EngineSnapshot) -> Result<(), SnapshotError> {
    let bad = |why: String| Err(SnapshotError::Config(why));
    if snap.orders.len() > usize_from(e.cfg.max_pending_orders) {
        return bad("more pending orders than max_pending_orders".into());
    }
    let mut last = OrderId(0);
    for o in &snap.orders {
        if o.id <= last || o.id.0 >= snap.next_order_id || o.reserved.0 < 0 {
            return bad("orders out of order, beyond next_order_id or negative".into());
        }
        last = o.id;
        let ai = usize_from(o.account.0).checked_sub(1).filter(|i| *i < e.accounts.len());
        let Some(ai) = ai else { return bad(format!("order {} has no account", o.id.0)) };
        if usize::from(o.market.0) >= e.markets.len() {
            return bad(format!("order {} has no market", o.id.0));
        }
        if e.accounts[ai].lists().orders.len() >= usize_from(e.cfg.max_orders_per_account) {
            return bad("an account holds more orders than allowed".into());
        }
        e.index_order(o);
        e.hold(ai, o.reserved);
    }
    e.next_order_id = snap.next_order_id;
    Ok(())
}

/// The markets' prices from a snapshot, refusing one whose markets differ from the
/// configuration (a changed symbol or decimals would reinterpret every stored integer).
fn restore_markets(e: &mut Engine, snap: &EngineSnapshot) -> Result<(), SnapshotError> {
    if snap.markets.len() != e.markets.len() {
        return Err(SnapshotError::Config(format!(
            "{} markets in snapshot, {} configured",
            snap.markets.len(),
            e.markets.len()
        )));
    }
    for (m, s) in e.markets.iter_mut().zip(&snap.markets) {
        if m.cfg.symbol != s.symbol
            || m.cfg.price_decimals != s.price_decimals
            || m.cfg.qty_decimals != s.qty_decimals
        {
            return Err(SnapshotError::Config(format!(
                "market {} changed (symbol or decimals)",
                s.symbol
            )));
        }
        m.has_price = s.has_price;
        m.bid = s.bid;
        m.ask = s.ask;
        m.update_id = s.update_id;
        m.updated_at_ns = s.updated_at_ns;
        m.exchange_time_us = s.exchange_time_us;
        m.financed_period = s.financed_period;
        m.mode = s.mode;
        m.max_leverage = s.max_leverage;
        m.mmr = s.mmr;
    }
    for (m, s) in e.markets.iter_mut().zip(&snap.sources) {
        if s.quotes.len() > usize::from(m.cfg.sources) {
            return Err(SnapshotError::Config(format!(
                "market {} had {} price sources, the configuration has {}",
                m.cfg.symbol,
                s.quotes.len(),
                m.cfg.sources
            )));
        }
        for (q, &(bid, ask, update_id, at_ns)) in m.sources.quotes.iter_mut().zip(&s.quotes) {
            *q = crate::state::Quote { bid, ask, update_id, at_ns };
        }
        m.sources.guard = s.guard;
        m.sources.agreed_since_ns = s.agreed_since_ns;
    }
    Ok(())
}
