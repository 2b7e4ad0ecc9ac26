//! `hundredx admin grant|revoke EMAIL`: the only way to give or take the operator role. It runs
//! against a stopped engine's data directory (it takes the directory's lock, so not beside a
//! running `serve` or `engine`): recovers, applies one journaled `SetRole` command, stops. The
//! public API has no route that can issue it. A token issued before a revocation still says
//! `admin`, but the engine refuses every operator command from an account without the role.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use engine_core::command::{CommandKind, Login};
use engine_core::event::ReplyData;
use hundredx::durability::JournalPruning;
use hundredx::{DurableEngine, now_ns};
use hundredx_http::auth::normalize_email;

use super::args::DurabilityArgs;

/// `hundredx admin`.
#[derive(clap::Args, Debug)]
pub struct AdminCli {
    #[command(subcommand)]
    pub action: AdminAction,
}

/// What to do.
#[derive(clap::Subcommand, Debug)]
pub enum AdminAction {
    /// Give an account the operator role (it signs in again to get a token that says so).
    Grant(RoleArgs),
    /// Take the operator role away (effective at once: the engine checks it on every command).
    Revoke(RoleArgs),
}

/// Whose role, in which data directory.
#[derive(clap::Args, Debug)]
pub struct RoleArgs {
    /// The account's email (its login).
    pub email: String,
    #[command(flatten)]
    pub durability: DurabilityArgs,
    /// The JSON configuration the engine runs with, if any (markets must match the data).
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
}

pub fn run(cli: AdminCli) -> Result<()> {
    let (args, admin) = match cli.action {
        AdminAction::Grant(a) => (a, true),
        AdminAction::Revoke(a) => (a, false),
    };
    let email = normalize_email(&args.email).context("not an email address")?;
    let login = Login::new(&email).context("email too long")?;
    let cfg = hundredx::config_file::load_engine(args.config.as_deref())?;
    // Keep the whole journal: a history store's cursor may be behind this data directory's
    // newest snapshot, and `serve` catches it up from the journal at its next start.
    let options =
        hundredx::DurableOptions { pruning: JournalPruning::Keep, ..args.durability.options() };
    let durable = DurableEngine::start(cfg, &options).context("starting the engine")?;
    let mut submitter = durable.handle.submitter();
    let reply = submitter
        .call(now_ns(), CommandKind::SetRole { login, admin }, Duration::from_secs(10))
        .map_err(|e| anyhow::anyhow!("engine: {e}"))?;
    drop(submitter);
    durable.shutdown()?;
    match reply.result {
        Ok(ReplyData::Role { account, admin }) => {
            let what = if admin { "now holds" } else { "no longer holds" };
            println!("{email} (account {}) {what} the operator role", account.0);
            Ok(())
        }
        Err(reason) => bail!("refused: {reason} (is {email} signed up?)"),
        Ok(other) => bail!("unexpected reply {other:?}"),
    }
}
