//! What each change does to the books, without I/O: the rows of the statement and of the
//! house's ledger a [`Change`] produces. The SQL in [`crate::write`] only stores these.

use engine_core::desk::AccountAction;
use engine_core::event::{Change, CloseReason};

/// A movement of one account's balance (available + locked margin + margin held for orders).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Movement {
    /// `deposit`, `withdrawal`, `open_fee` (an open's or an increase's), `financing`, `realized_pnl`, `close_fee`,
    /// `liquidation_fee`, `loss_forgiven`, `spread_markup`, `commission`, `adjustment` (an
    /// operator's), `credit` (granted or taken back by an operator).
    pub kind: &'static str,
    /// Signed micro-USDC.
    pub amount: i128,
}

/// Most statement rows one change produces (a close: PnL, fee, forgiven loss).
pub const MOVEMENTS_MAX: usize = 3;

/// The statement rows of `change`, in order (zero amounts are left out, except a deposit's).
/// Their sum is exactly what the change did to the account's balance — except that a client
/// group's charges, part of an open's or close's fee, are rows of the `Charged` change that
/// comes right before it (`spread_markup`, `commission`), and the fee row is the market's fee
/// alone: the rows of a command sum to what it did. Each change's rows depend on it alone, so
/// a batch may end between the two.
pub fn movements(change: &Change) -> Vec<Movement> {
    let m = |kind, amount: i128| Movement { kind, amount };
    let rows = match *change {
        Change::AccountCreated { initial_deposit, .. } if initial_deposit.0 > 0 => {
            vec![m("deposit", initial_deposit.0)]
        }
        Change::Deposited { amount, .. } => vec![m("deposit", amount.0)],
        Change::Withdrawn { amount, .. } => vec![m("withdrawal", -amount.0)],
        Change::Opened { fee, charges, .. } | Change::Increased { fee, charges, .. } => {
            vec![m("open_fee", -(fee.0 - charges.0))]
        }
        Change::Financed { amount, .. } => vec![m("financing", -amount.0)],
        // An operator's payment or charge, or credit granted or taken back (credit is money
        // the account holds, not withdrawable).
        Change::AccountControlled { action: AccountAction::AdjustBalance(a), .. } => {
            vec![m("adjustment", a.0)]
        }
        Change::AccountControlled { action: AccountAction::AdjustCredit(a), .. } => {
            vec![m("credit", a.0)]
        }
        Change::Closed { realized_pnl, fee, charges, reason, bad_debt, .. } => {
            let fee_kind = match reason {
                CloseReason::Liquidation => "liquidation_fee",
                _ => "close_fee",
            };
            vec![
                m("realized_pnl", realized_pnl.0),
                m(fee_kind, -(fee.0 - charges.0)),
                m("loss_forgiven", bad_debt.0),
            ]
        }
        // Money moved between available, locked and held: the balance is their sum.
        Change::AccountCreated { .. }
        | Change::MarginAdded { .. }
        | Change::OrderPlaced { .. }
        | Change::OrderEnded { .. }
        | Change::TriggersSet { .. }
        | Change::TrailingStopSet { .. }
        | Change::MarketChanged { .. }
        | Change::RoleSet { .. }
        | Change::MarginCall { .. }
        | Change::GroupSet { .. }
        | Change::GroupTermsSet { .. }
        | Change::MarginModeSet { .. }
        | Change::PositionModeSet { .. }
        | Change::ApiKeyCreated { .. }
        | Change::ApiKeyRevoked { .. }
        | Change::OrderAmended { .. }
        | Change::CancelScheduled { .. }
        | Change::CancelScheduleFired { .. }
        | Change::SessionOpened { .. }
        | Change::SessionsRevoked { .. }
        | Change::PasswordChanged { .. }
        | Change::TotpEnrolled { .. }
        | Change::CodeSpent { .. }
        | Change::AccountControlled { .. }
        | Change::CreditLost { .. }
        | Change::MarginMoved { .. }
        | Change::AccountMarginCall { .. }
        | Change::StopOut { .. }
        | Change::Explained { .. }
        | Change::SourceQuotes { .. }
        | Change::Checkpoint
        | Change::PriceApplied { .. } => vec![],
        // Its amounts are inside the fee of the open or close right after it, whose fee row
        // leaves them out.
        Change::Charged { spread, commission, .. } => {
            vec![m("spread_markup", -spread.0), m("commission", -commission.0)]
        }
    };
    let rows: Vec<Movement> = rows.into_iter().filter(|r| r.amount != 0).collect();
    debug_assert!(rows.len() <= MOVEMENTS_MAX);
    rows
}

/// What a change did to the insurance fund and the house balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HouseMovement {
    /// `open_fee`, `financing`, `close`, `liquidation`, `group_charges`, `adjustment` or
    /// `credit`.
    pub kind: &'static str,
    /// Change of the insurance fund.
    pub insurance_delta: i128,
    /// Change of the house balance.
    pub house_delta: i128,
}

/// The broker's side of `change`, if it has one. Mirrors the engine's settlement: the fee goes
/// to the fund on a liquidation (to the house otherwise), the fund then the house pay a deficit,
/// and the house takes the rest of the released margin the trader did not get.
pub fn house_movement(change: &Change) -> Option<HouseMovement> {
    match *change {
        Change::Opened { fee, .. } | Change::Increased { fee, .. } if fee.0 != 0 => {
            Some(HouseMovement { kind: "open_fee", insurance_delta: 0, house_delta: fee.0 })
        }
        Change::Financed { amount, .. } if amount.0 != 0 => {
            Some(HouseMovement { kind: "financing", insurance_delta: 0, house_delta: amount.0 })
        }
        Change::AccountControlled { action: AccountAction::AdjustBalance(a), .. } => {
            Some(HouseMovement { kind: "adjustment", insurance_delta: 0, house_delta: -a.0 })
        }
        Change::AccountControlled { action: AccountAction::AdjustCredit(a), .. } => {
            Some(HouseMovement { kind: "credit", insurance_delta: 0, house_delta: -a.0 })
        }
        Change::Closed { margin_released, payout, fee, reason, insurance_paid, .. } => {
            let liquidation = reason == CloseReason::Liquidation;
            let to_fund = if liquidation { fee.0 } else { 0 };
            let insurance_delta = to_fund - insurance_paid.0;
            let house_delta = margin_released.0 - payout.0 - insurance_delta;
            let kind = if liquidation { "liquidation" } else { "close" };
            Some(HouseMovement { kind, insurance_delta, house_delta })
        }
        // The group's charges were counted in the fee above as the house's; they are the spread
        // and commission revenue's instead.
        Change::Charged { spread, commission, .. } => Some(HouseMovement {
            kind: "group_charges",
            insurance_delta: 0,
            house_delta: -(spread.0 + commission.0),
        }),
        _ => None,
    }
}

/// The change's kind as stored in `changes.kind`.
pub const fn kind(change: &Change) -> &'static str {
    match change {
        Change::AccountCreated { .. } => "account_created",
        Change::Deposited { .. } => "deposited",
        Change::Withdrawn { .. } => "withdrawn",
        Change::Opened { .. } => "opened",
        Change::Closed { .. } => "closed",
        Change::MarginAdded { .. } => "margin_added",
        Change::Financed { .. } => "financed",
        Change::MarketChanged { .. } => "market_changed",
        Change::RoleSet { .. } => "role_set",
        Change::OrderPlaced { .. } => "order_placed",
        Change::OrderEnded { .. } => "order_ended",
        Change::TriggersSet { .. } => "triggers_set",
        Change::TrailingStopSet { .. } => "trailing_stop_set",
        Change::MarginCall { .. } => "margin_call",
        Change::GroupSet { .. } => "group_set",
        Change::Charged { .. } => "charged",
        Change::GroupTermsSet { .. } => "group_terms_set",
        Change::MarginModeSet { .. } => "margin_mode_set",
        Change::MarginMoved { .. } => "margin_moved",
        Change::AccountMarginCall { .. } => "account_margin_call",
        Change::StopOut { .. } => "stop_out",
        Change::Explained { .. } => "explained",
        Change::SourceQuotes { .. } => "source_quotes",
        Change::Checkpoint => "checkpoint",
        Change::PriceApplied { .. } => "price_applied",
        Change::PositionModeSet { .. } => "position_mode_set",
        Change::Increased { .. } => "increased",
        Change::ApiKeyCreated { .. } => "api_key_created",
        Change::ApiKeyRevoked { .. } => "api_key_revoked",
        Change::OrderAmended { .. } => "order_amended",
        Change::CancelScheduled { .. } => "cancel_scheduled",
        Change::CancelScheduleFired { .. } => "cancel_schedule_fired",
        Change::SessionOpened { .. } => "session_opened",
        Change::SessionsRevoked { .. } => "sessions_revoked",
        Change::PasswordChanged { .. } => "password_changed",
        Change::TotpEnrolled { .. } => "totp_enrolled",
        Change::CodeSpent { .. } => "code_spent",
        Change::AccountControlled { .. } => "account_controlled",
        Change::CreditLost { .. } => "credit_lost",
    }
}

#[cfg(test)]
mod tests {
    use engine_core::prelude::*;

    use super::*;

    fn closed(pnl: i128, fee: i128, released: i128, reason: CloseReason, fund: i128) -> Change {
        let value = released + pnl - fee;
        let deficit = (-value).max(0);
        let insurance_paid = deficit.min(fund);
        Change::Closed {
            position: PositionId(1),
            of_position: PositionId(1),
            account: AccountId(1),
            market: MarketId(0),
            side: Side::Long,
            quantity: Qty(1),
            entry_price: Price(1),
            exit_price: Price(1),
            margin_released: Usdc(released),
            realized_pnl: Usdc(pnl),
            fee: Usdc(fee),
            charges: Usdc::ZERO,
            payout: Usdc(value.max(0)),
            reason,
            bad_debt: Usdc(deficit),
            insurance_paid: Usdc(insurance_paid),
            house_paid: Usdc(deficit - insurance_paid),
        }
    }

    #[test]
    fn a_close_moves_the_balance_by_payout_minus_released_and_conserves_money() {
        for (pnl, fee, released, reason, fund) in [
            (500, 10, 1_000, CloseReason::Manual, 0),
            (-300, 10, 1_000, CloseReason::StopLoss, 0),
            (-990, 10, 1_000, CloseReason::Liquidation, 50),
            (-1_400, 0, 1_000, CloseReason::Liquidation, 100), // deficit 400: fund 100, house 300
            (-1_400, 0, 1_000, CloseReason::Liquidation, 1_000),
        ] {
            let c = closed(pnl, fee, released, reason, fund);
            let Change::Closed { payout, .. } = c else { unreachable!() };
            let total: i128 = movements(&c).iter().map(|m| m.amount).sum();
            assert_eq!(total, payout.0 - released, "{c:?}");
            // Conservation: what left the position = trader + fund + house.
            let h = house_movement(&c).unwrap();
            assert_eq!(released, payout.0 + h.insurance_delta + h.house_delta, "{c:?}");
        }
    }

    #[test]
    fn rows_are_named_and_zero_rows_left_out() {
        let c = closed(-1_400, 0, 1_000, CloseReason::Liquidation, 0);
        let kinds: Vec<_> = movements(&c).iter().map(|m| (m.kind, m.amount)).collect();
        assert_eq!(kinds, vec![("realized_pnl", -1_400), ("loss_forgiven", 400)]);
        let open = Change::Deposited { account: AccountId(1), amount: Usdc(7) };
        assert_eq!(movements(&open), vec![Movement { kind: "deposit", amount: 7 }]);
        assert_eq!(house_movement(&open), None);
        let created = Change::AccountCreated { account: AccountId(1), initial_deposit: Usdc(0) };
        assert!(movements(&created).is_empty());
    }

    #[test]
    fn a_groups_charges_are_rows_of_their_own_and_the_fee_row_is_the_markets_fee() {
        let (spread, commission) = (Usdc(500_000), Usdc(200_000));
        let charged =
            Change::Charged { account: AccountId(1), position: PositionId(1), spread, commission };
        // 6.00 of market fee and 0.70 of charges: the fee the close reports is 6.70.
        let Change::Closed { payout, .. } =
            closed(1_000, 6_700_000, 100_000_000, CloseReason::Manual, 0)
        else {
            unreachable!()
        };
        let mut close = closed(1_000, 6_700_000, 100_000_000, CloseReason::Manual, 0);
        if let Change::Closed { charges, .. } = &mut close {
            *charges = Usdc(700_000);
        }
        let rows: Vec<_> = [&charged, &close]
            .iter()
            .flat_map(|c| movements(c))
            .map(|m| (m.kind, m.amount))
            .collect();
        assert_eq!(
            rows,
            [
                ("spread_markup", -500_000),
                ("commission", -200_000),
                ("realized_pnl", 1_000),
                ("close_fee", -6_000_000),
            ]
        );
        let total: i128 = rows.iter().map(|r| r.1).sum();
        assert_eq!(total, payout.0 - 100_000_000, "the command's rows sum to what it did");
        assert!(
            movements(&close).len() <= MOVEMENTS_MAX && movements(&charged).len() <= MOVEMENTS_MAX
        );
    }

    #[test]
    fn an_operators_payment_or_credit_moves_money_between_the_house_and_the_account_only() {
        let note = engine_core::command::Note::new("refund").unwrap();
        let control = |action| Change::AccountControlled {
            account: AccountId(2),
            by: AccountId(1),
            action,
            note,
            available: Usdc::ZERO,
            credit: Usdc::ZERO,
        };
        for (action, kind) in [
            (AccountAction::AdjustBalance(Usdc(-250)), "adjustment"),
            (AccountAction::AdjustBalance(Usdc(250)), "adjustment"),
            (AccountAction::AdjustCredit(Usdc(100)), "credit"),
        ] {
            let c = control(action);
            let rows = movements(&c);
            let house = house_movement(&c).unwrap();
            assert_eq!((rows[0].kind, house.kind), (kind, kind));
            assert_eq!(rows[0].amount + house.house_delta, 0, "nothing created or destroyed");
        }
        let suspend =
            control(AccountAction::SetStatus(engine_core::desk::AccountStatus::Suspended));
        assert!(movements(&suspend).is_empty() && house_movement(&suspend).is_none());
        let lost = Change::CreditLost { account: AccountId(2), amount: Usdc(5), credit: Usdc(0) };
        assert!(movements(&lost).is_empty() && house_movement(&lost).is_none(), "no money moves");
    }
}
