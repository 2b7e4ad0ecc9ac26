//! `hundredx drill` (hidden): the crash drill of the durability tests.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use engine_core::prelude::*;
use hundredx::{DurableEngine, now_ns};
use price_feed::synthetic::{SyntheticConfig, SyntheticFeed};

use super::args::DurabilityArgs;

#[derive(clap::Args, Debug)]
pub struct DrillArgs {
    #[command(flatten)]
    pub durability: DurabilityArgs,
    /// Workload seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn run(args: DrillArgs) -> Result<()> {
    use std::io::Write;
    let durable = DurableEngine::start(EngineConfig::default(), &args.durability.options())?;
    let mut engine = durable.handle.submitter();
    let timeout = Duration::from_secs(10);
    let accounts = drill_accounts(&mut engine, timeout)?;
    let mut feed = SyntheticFeed::new(
        SyntheticConfig { seed: args.seed, volatility_ppm: 3_000, ..SyntheticConfig::default() },
        &MarketConfig::defaults()[..1],
    );
    // Continue the price's update ids above what the engine has seen.
    let r = engine.call(now_ns(), CommandKind::QueryMarkets, timeout)?;
    let base_update = r
        .items
        .iter()
        .find_map(|i| match i {
            Item::Market(m) if m.market.0 == 0 => Some(m.update_id),
            _ => None,
        })
        .unwrap_or(0);
    let stdout = std::io::stdout();
    let mut x = args.seed | 1;
    let mut open_ids: Vec<(AccountId, PositionId)> = Vec::new();
    loop {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let account = accounts[usize::try_from(x % 10).unwrap_or(0)];
        let kind = match x % 7 {
            0..=2 => {
                let mut t = feed.next_tick(now_ns() / 1_000).context("tick")?;
                t.update_id += base_update;
                CommandKind::PriceTick(t)
            }
            3 | 4 => CommandKind::OpenPosition(OpenRequest::new(
                account,
                MarketId(0),
                if x & 8 == 0 { Side::Long } else { Side::Short },
                u32::try_from(x % 50 + 1).unwrap_or(1),
                Size::Margin(Usdc::from_whole(10)),
            )),
            5 if !open_ids.is_empty() => {
                let (account, position) =
                    open_ids.swap_remove(usize::try_from(x % open_ids.len() as u64).unwrap_or(0));
                CommandKind::ClosePosition { account, position, quantity: None, key: None }
            }
            _ => CommandKind::Deposit { account, amount: Usdc::from_whole(1), key: None },
        };
        let r = engine.call(now_ns(), kind, timeout)?;
        if let Ok(data) = r.result {
            if let ReplyData::Opened(v) = data {
                open_ids.push((v.account, v.id));
            }
            let mut out = stdout.lock();
            writeln!(out, "ACK {}", r.request_id.0)?;
            out.flush()?;
        }
    }
}

/// The drill's ten accounts: found again after a restart, created on the first run.
fn drill_accounts(engine: &mut Submitter, timeout: Duration) -> Result<Vec<AccountId>> {
    let mut accounts = Vec::new();
    for i in 0..10 {
        let login = Login::new(&format!("drill{i}@x")).context("login")?;
        let r = engine.call(now_ns(), CommandKind::QueryCredential { login }, timeout)?;
        let account = match r.result {
            Ok(ReplyData::Credential { account, .. }) => account,
            _ => {
                let kind = CommandKind::CreateAccount { login, credential: Credential::empty() };
                match engine.call(now_ns(), kind, timeout)?.result {
                    Ok(ReplyData::AccountCreated { account }) => account,
                    other => bail!("create account: {other:?}"),
                }
            }
        };
        accounts.push(account);
    }
    Ok(accounts)
}
