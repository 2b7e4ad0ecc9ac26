//! The one dispatch from a command to the function that applies it (the state machine's
//! table of contents: each arm names the file's function that does the work).

use super::{CommandKind, Engine, Outcome, Reason, ReplyData, Sink};
use crate::command::Command;

impl Engine {
    /// The one dispatch from a command to the function that applies it.
    pub(super) fn dispatch<S: Sink>(&mut self, cmd: &Command, sink: &mut S) -> Outcome {
        let (rid, ts) = (cmd.request_id, cmd.ts_ns);
        self.check_status(&cmd.kind)?;
        match &cmd.kind {
            CommandKind::Noop => Err(Reason::InvalidRequest),
            CommandKind::CreateAccount { login, credential } => {
                self.create_account(*login, *credential, sink)
            }
            CommandKind::Deposit { account, amount, .. } => self.deposit(*account, *amount, sink),
            CommandKind::Withdraw { account, amount, .. } => self.withdraw(*account, *amount, sink),
            CommandKind::PriceTick(tick) => self.tick(ts, *tick, sink),
            CommandKind::OpenPosition(req) => self.open(ts, req, sink).map(ReplyData::Opened),
            CommandKind::ClosePosition { account, position, quantity, .. } => {
                self.close_manual(ts, *account, *position, *quantity, sink)
            }
            CommandKind::AddMargin { account, position, amount, .. } => {
                self.add_margin(*account, *position, *amount, sink)
            }
            CommandKind::PlaceOrder(req) => self.place_order(ts, req, sink),
            CommandKind::CancelOrder { account, order, .. } => {
                self.cancel_order(*account, *order, sink)
            }
            CommandKind::SetTriggers { account, position, take_profit, stop_loss, .. } => {
                self.set_triggers(ts, *account, *position, *take_profit, *stop_loss, sink)
            }
            CommandKind::QueryOrders { account } => self.list_orders(rid, *account, ts, sink),
            CommandKind::SetTrailingStop { account, position, distance, .. } => {
                self.set_trailing_stop(ts, *account, *position, *distance, sink)
            }
            CommandKind::ChargeFinancing { market, period } => {
                self.charge_financing(ts, *market, *period, sink)
            }
            CommandKind::SetRole { login, admin } => self.set_role(login, *admin, sink),
            CommandKind::AdminSetMarket {
                by,
                market,
                mode,
                max_leverage,
                maintenance_margin_rate,
            } => {
                let change = (*mode, *max_leverage, *maintenance_margin_rate);
                self.admin_set_market(*by, *market, change, sink)
            }
            CommandKind::QueryRisk { by, top } => self.risk(rid, *by, *top, sink),
            CommandKind::QueryAccount { account } => {
                self.account_view(*account).map(ReplyData::Account)
            }
            CommandKind::QueryPositions { account, status } => {
                self.list_positions(rid, *account, *status, sink)
            }
            CommandKind::QueryPosition { account, position } => {
                self.find_position(*account, *position).map(ReplyData::Position)
            }
            CommandKind::QueryCredential { login } => self.credential(login),
            CommandKind::QueryMarkets => Ok(self.list_markets(rid, ts, sink)),
            CommandKind::QueryStateHash => Ok(ReplyData::State(self.summary())),
            CommandKind::AdminSnapshot => Ok(ReplyData::SnapshotRequested),
            CommandKind::SourceQuote { source, tick } => {
                self.source_quote(ts, *source, *tick, sink)
            }
            CommandKind::SourceCheck => self.source_check(ts, sink),
            CommandKind::AdminSetGroup { by, login, group } => {
                self.set_group(*by, login, *group, sink)
            }
            CommandKind::QueryTerms { account } => self.terms_of(rid, *account, sink),
            CommandKind::AdminSetGroupTerms {
                by,
                group,
                market,
                markup_ticks,
                commission_rate,
                max_leverage,
            } => {
                let edit = crate::command::GroupEdit {
                    markup_ticks: *markup_ticks,
                    commission_rate: *commission_rate,
                    max_leverage: *max_leverage,
                    ..crate::command::GroupEdit::default()
                };
                self.edit_group(*by, (*group, *market), edit, sink)
            }
            CommandKind::AdminEditGroup { by, group, market, edit } => {
                self.edit_group(*by, (*group, *market), *edit, sink)
            }
            CommandKind::SetMarginMode { account, mode } => {
                self.set_margin_mode(*account, *mode, sink)
            }
            CommandKind::SetPositionMode { account, mode } => {
                self.set_position_mode(*account, *mode, sink)
            }
            CommandKind::CreateApiKey(new) => self.create_api_key(ts, new, sink),
            CommandKind::RevokeApiKey { account, key } => self.revoke_api_key(*account, *key, sink),
            CommandKind::QueryApiKeys { account } => self.list_api_keys(rid, *account, sink),
            CommandKind::QueryApiKey { public_key } => self.api_key(ts, public_key),
            CommandKind::CancelAllOrders { account, market, .. } => {
                self.cancel_all_orders(rid, *account, *market, sink)
            }
            CommandKind::CloseAllPositions { account, market, .. } => {
                self.close_all_positions(ts, rid, (*account, *market), sink)
            }
            CommandKind::AmendOrder { account, order, edit, .. } => {
                self.amend_order(ts, (*account, *order), edit, sink)
            }
            CommandKind::ScheduleCancel { account, after_ms } => {
                self.schedule_cancel(ts, *account, *after_ms, sink)
            }
            CommandKind::OpenSession(new) => self.open_session(ts, new, sink),
            CommandKind::RevokeSessions { account, scope } => {
                self.revoke_sessions(*account, *scope, sink)
            }
            CommandKind::ChangePassword { account, credential, keep } => {
                self.change_password(*account, credential, *keep, sink)
            }
            CommandKind::QuerySessions { account } => self.list_sessions(rid, (*account, ts), sink),
            CommandKind::QuerySession { account, session } => self.session(ts, *account, *session),
            CommandKind::QueryCredentialOf { account } => self.credential_of(*account),
            CommandKind::EnrolTotp { account, enrolment } => {
                self.enrol_totp(*account, enrolment, sink)
            }
            CommandKind::SpendCode { account, code, purpose } => {
                self.spend_code(*account, *code, *purpose, sink)
            }
            CommandKind::QueryTotp { account } => self.query_totp(*account),
            CommandKind::AdminAccount { by, account, action, note } => {
                self.admin_account((*by, *account), *action, note, sink)
            }
            CommandKind::QuerySources { market } => self.list_sources(rid, *market, sink),
            CommandKind::QueryGroupTerms { by, group } => {
                self.group_terms(rid, (*by, *group), sink)
            }
            CommandKind::QueryBook => Ok(ReplyData::Book {
                insurance_fund: self.insurance_fund,
                house_balance: self.house_balance,
                spread_revenue: self.spread_revenue,
                commission_revenue: self.commission_revenue,
                open_positions: u32::try_from(self.positions.len()).unwrap_or(u32::MAX),
                accounts: u32::try_from(self.accounts.len()).unwrap_or(u32::MAX),
            }),
            CommandKind::QueryControls { account } => {
                let ai = self.account_index(*account)?;
                Ok(ReplyData::Controls(self.controls(ai)))
            }
            CommandKind::QueryPositionMode { account } => {
                let ai = self.account_index(*account)?;
                let mode = self.accounts[ai].position_mode;
                Ok(ReplyData::PositionMode { account: *account, mode })
            }
        }
    }
}
