//! Invariants: the conservation equation, the summary, and the canonical state hash.

use super::{Engine, Position, StateSummary, Usdc, add, liquidatable, sub};

impl Engine {
    // ----- invariants -----

    pub(super) fn assert_conservation(&self) {
        let lhs = sub(self.total_deposits, self.total_withdrawals);
        let held = add(self.total_margin, self.total_reserved);
        let rhs =
            add(add(self.total_available, held), add(self.insurance_fund, self.house_balance));
        let rhs = add(rhs, add(self.spread_revenue, self.commission_revenue));
        assert_eq!(lhs, rhs, "conservation violated");
    }

    /// Recomputes every total from scratch and checks docs/DESIGN.md's conservation equation, that no
    /// balance is negative, and that no open position is liquidatable at its market's mark.
    /// O(accounts + positions): for tests and audits, not the hot path.
    pub fn check_conservation(&self) -> Result<(), String> {
        let available = self.accounts.iter().fold(Usdc::ZERO, |s, a| add(s, a.available));
        let margin = self.positions.values().fold(Usdc::ZERO, |s, p| add(s, p.margin()));
        let reserved = self.orders.values().fold(Usdc::ZERO, |s, o| add(s, o.reserved));
        if available != self.total_available
            || margin != self.total_margin
            || reserved != self.total_reserved
        {
            return Err(format!(
                "running totals drifted: available {available:?} vs {:?}, margin {margin:?} vs {:?}, reserved {reserved:?} vs {:?}",
                self.total_available, self.total_margin, self.total_reserved
            ));
        }
        let mut entry_sums = vec![[0i128; 2]; self.markets.len()];
        for p in self.positions.values() {
            let k = usize::from(p.side == crate::math::Side::Short);
            entry_sums[usize::from(p.market.0)][k] += i128::from(p.entry.0) * i128::from(p.qty.0);
        }
        for (i, m) in self.markets.iter().enumerate() {
            if m.entry_sum != entry_sums[i] {
                return Err(format!(
                    "market {i}: entry sums {:?}, positions say {:?}",
                    m.entry_sum, entry_sums[i]
                ));
            }
        }
        for (i, a) in self.accounts.iter().enumerate() {
            let held =
                a.lists().orders.iter().fold(Usdc::ZERO, |s, id| add(s, self.orders[id].reserved));
            if held != a.reserved {
                return Err(format!(
                    "account {} holds {:?} for orders of {held:?}",
                    i + 1,
                    a.reserved
                ));
            }
        }
        let lhs = sub(self.total_deposits, self.total_withdrawals);
        let rhs = add(
            add(add(available, margin), reserved),
            add(self.insurance_fund, self.house_balance),
        );
        let rhs = add(rhs, add(self.spread_revenue, self.commission_revenue));
        if lhs != rhs {
            return Err(format!("deposits - withdrawals {lhs:?} != held {rhs:?}"));
        }
        if let Some(a) = self.accounts.iter().find(|a| a.available.0 < 0) {
            return Err(format!("negative balance: {:?}", a.login));
        }
        if self.insurance_fund.0 < 0 {
            return Err("negative insurance fund".into());
        }
        for p in self.positions.values() {
            let m = &self.markets[usize::from(p.market.0)];
            if m.has_price && liquidatable(p.side, m.mark(p.side), p.liq(m)) {
                return Err(format!("position {} left open past its liquidation price", p.id.0));
            }
        }
        for i in (0..self.accounts.len()).filter(|&i| self.is_cross(i)) {
            let level = self.cross_level(i);
            let stop = self.stop_out_level(i);
            if !self.accounts[i].open.is_empty() && super::cross::below(&level, stop) {
                return Err(format!("cross account {} at or below its stop-out: {level:?}", i + 1));
            }
        }
        Ok(())
    }

    /// The state hash and conservation totals.
    pub fn summary(&self) -> StateSummary {
        StateSummary {
            hash: self.state_hash(),
            net_deposits: sub(self.total_deposits, self.total_withdrawals),
            total_available: self.total_available,
            total_margin: self.total_margin,
            insurance_fund: self.insurance_fund,
            house_balance: self.house_balance,
            spread_revenue: self.spread_revenue,
            commission_revenue: self.commission_revenue,
            accounts: u32::try_from(self.accounts.len()).unwrap_or(u32::MAX),
            open_positions: u32::try_from(self.positions.len()).unwrap_or(u32::MAX),
        }
    }

    /// SHA-256 over a canonical encoding of the business state: markets' prices, accounts in id
    /// order with their history, positions in id order, the funds, and the idempotency window in
    /// arrival order. Counters and configuration are not included.
    pub fn state_hash(&self) -> [u8; 32] {
        self.state_hash_in(crate::persist::HashShape::Current)
    }

    /// [`Engine::state_hash`] as an earlier release computed it (`shape`): a snapshot it wrote
    /// verifies against the state it restores to (see [`crate::persist::SnapshotFile`]).
    pub fn state_hash_in(&self, shape: crate::persist::HashShape) -> [u8; 32] {
        let mut h = crate::hash::Canonical::new();
        h.u64(self.markets.len() as u64);
        for m in &self.markets {
            h.bool(m.has_price).i64(m.bid.0).i64(m.ask.0).u64(m.update_id);
            h.u64(m.updated_at_ns).u64(m.exchange_time_us).u64(m.financed_period);
            h.value(&m.mode).u64(u64::from(m.max_leverage)).i64(m.mmr.0);
            // Only markets with sources: a market fed ticks hashes as it always did.
            for q in &m.sources.quotes[..usize::from(m.cfg.sources)] {
                h.i64(q.bid.0).i64(q.ask.0).u64(q.update_id).u64(q.at_ns);
            }
            if m.cfg.sources > 0 {
                h.value(&m.sources.guard).u64(m.sources.agreed_since_ns);
            }
        }
        // Client groups, only once used: an engine without them hashes as it always did.
        if self.spread_revenue.0 != 0 || self.commission_revenue.0 != 0 {
            h.i128(self.spread_revenue.0).i128(self.commission_revenue.0);
        }
        for (i, a) in self.accounts.iter().enumerate().filter(|(_, a)| a.group != 0) {
            h.u64(i as u64).u64(u64::from(a.group));
        }
        // Cross accounts, only once used: their mode and whether their margin call is armed
        // (the keys and bands are not state: any conservative keys give the same outputs).
        for (i, a) in self.accounts.iter().enumerate().filter(|(i, _)| self.is_cross(*i)) {
            h.u64(i as u64).bool(a.cross.armed);
        }
        // API keys, only once used (their public keys, scopes, networks and expiries).
        if self.next_key_id > 1 {
            h.bytes(b"api-keys").u64(self.next_key_id);
            for a in &self.accounts {
                a.lists().api_keys.iter().for_each(|k| {
                    h.value(k);
                });
            }
        }
        // Dead-man's switches, only while one is armed, by time then account.
        for (at, account) in self.cancel_due.iter() {
            h.bytes(b"cancel-at").i64(at).u64(account);
        }
        // Sessions, only once used.
        if self.next_session_id > 1 {
            h.bytes(b"sessions").u64(self.next_session_id);
            for a in &self.accounts {
                a.lists().sessions.iter().for_each(|s| {
                    h.value(s);
                });
            }
        }
        // Two-factor enrolments, only once used.
        for (i, t) in self
            .accounts
            .iter()
            .enumerate()
            .filter_map(|(i, a)| Some((i, a.lists().totp.as_deref()?)))
        {
            h.bytes(b"totp").u64(i as u64).value(t);
        }
        // Account controls, only once used: status and credit.
        for (i, a) in self.accounts.iter().enumerate() {
            if a.status != crate::desk::AccountStatus::Active || a.lists().credit.0 != 0 {
                h.bytes(b"controls").u64(i as u64).value(&a.status).i128(a.lists().credit.0);
            }
        }
        // Netting accounts, only once used.
        for i in (0..self.accounts.len()).filter(|&i| self.is_netting(i)) {
            h.bytes(b"netting").u64(i as u64);
        }
        // Configured groups' terms (operators may change them); none configured: nothing.
        if !self.cfg.groups.is_empty() {
            for t in self.groups.iter().flatten() {
                h.i64(t.markup_ticks).i64(t.commission_rate.0).u64(u64::from(t.max_leverage));
                // Only once used: a state without them hashes as it did before they existed.
                if t.markup_bps != 0 || t.commission_per_lot.0 != 0 || t.financing.is_some() {
                    h.u64(u64::from(t.markup_bps)).i128(t.commission_per_lot.0);
                    let (long, short) = t.financing.unwrap_or_default();
                    h.bool(t.financing.is_some()).i64(long.0).i64(short.0);
                }
            }
        }
        h.u64(self.accounts.len() as u64);
        for a in &self.accounts {
            h.bytes(a.login.as_bytes()).bytes(a.credential.as_bytes()).i128(a.available.0);
            h.bool(a.admin);
            h.u64(a.open.len() as u64);
            a.open.iter().for_each(|r| {
                h.u64(r.id().0);
            });
            let lists = a.lists();
            h.u64(lists.history.len() as u64);
            lists.history.iter().for_each(|v| {
                h.view(v);
            });
            h.i128(a.reserved.0).u64(lists.orders.len() as u64);
            lists.orders.iter().for_each(|id| {
                h.value(&self.orders[id]);
            });
            h.u64(lists.keys.len() as u64);
            for k in lists.keys.iter() {
                h.bytes(k.key.as_bytes()).u64(k.fingerprint).u64(k.at_ns);
                h.outcome(&k.outcome, shape);
            }
        }
        // By id: the slots a position happens to occupy are not state.
        let mut open: Vec<&Position> = self.positions.values().collect();
        open.sort_unstable_by_key(|p| p.id);
        h.u64(open.len() as u64);
        for p in open {
            h.view(&self.view(p)).i64(p.mc.0).bool(p.mc_armed).value(&p.trail()).i64(p.mmr().0);
            // Only once used: a state without group brackets hashes as it did before them.
            if p.bracket_group != 0 {
                h.bytes(b"brackets").u64(u64::from(p.bracket_group));
            }
            if let Some(d) = p.trail() {
                let peak = self.markets[usize::from(p.market.0)].trails.peak_price(
                    p.side,
                    d,
                    p.trail_group,
                );
                h.i64(peak.0);
            }
        }
        h.u64(self.next_position_id).u64(self.next_order_id);
        for v in
            [self.insurance_fund, self.house_balance, self.total_deposits, self.total_withdrawals]
        {
            h.i128(v.0);
        }
        h.u64(self.max_request_id).u64(self.requests.len() as u64);
        for (rid, fingerprint, outcome) in self.requests.iter() {
            h.u64(rid.0).u64(fingerprint).outcome(&outcome, shape);
        }
        h.finish()
    }
}
