//! The financing scheduler: at every period boundary (UTC multiples of the interval) it submits
//! `ChargeFinancing { market, period }` for each market with a financing rate. Time is read
//! here, in the adapter, and travels inside the command: the journal replays the charge exactly.
//! A restarted process submits the current period once more; the engine refuses a period it
//! already charged, so nothing is charged twice, and a boundary missed while down is charged
//! late, once.

use std::thread;
use std::time::Duration;

use anyhow::Result;
use engine_core::command::{CommandKind, MarketId};
use engine_core::config::MarketConfig;
use engine_core::event::{Reason, ReplyData};
use engine_core::processor::Submitter;
use hundredx::now_ns;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Starts the scheduler thread if some market has a financing rate (`None` otherwise).
pub fn spawn(
    submitter: Submitter,
    markets: &[MarketConfig],
    interval: Duration,
    stop: CancellationToken,
) -> Result<Option<thread::JoinHandle<()>>> {
    let financed: Vec<MarketId> = markets
        .iter()
        .enumerate()
        .filter(|(_, m)| m.financing_long_rate.0 != 0 || m.financing_short_rate.0 != 0)
        .filter_map(|(i, _)| u16::try_from(i).ok().map(MarketId))
        .collect();
    if financed.is_empty() {
        return Ok(None);
    }
    let secs = interval.as_secs().max(1);
    info!(markets = financed.len(), interval_secs = secs, "financing scheduler started");
    let thread = thread::Builder::new().name("hundredx-financing".into()).spawn(move || {
        run(submitter, &financed, secs, &stop);
    })?;
    Ok(Some(thread))
}

fn run(mut submitter: Submitter, markets: &[MarketId], secs: u64, stop: &CancellationToken) {
    let mut sent = 0u64;
    while !stop.is_cancelled() {
        let now_s = now_ns() / 1_000_000_000;
        let period = now_s / secs;
        if period > sent {
            for &market in markets {
                charge(&mut submitter, market, period);
            }
            sent = period;
        }
        // Until the next boundary (so the charge goes out within milliseconds of it), at most
        // a second at a time (to notice `stop`).
        let next_ns = (period + 1).saturating_mul(secs).saturating_mul(1_000_000_000);
        let until = Duration::from_nanos(next_ns.saturating_sub(now_ns()));
        thread::sleep(until.min(Duration::from_secs(1)) + Duration::from_millis(1));
    }
}

fn charge(submitter: &mut Submitter, market: MarketId, period: u64) {
    let kind = CommandKind::ChargeFinancing { market, period };
    match submitter.call(now_ns(), kind, Duration::from_secs(10)) {
        Ok(r) => match r.result {
            Ok(ReplyData::Financing { positions, net, .. }) => {
                info!(market = market.0, period, positions, %net, "financing charged");
            }
            Err(Reason::FinancingAlreadyCharged) => {
                debug!(market = market.0, period, "financing already charged");
            }
            other => warn!(market = market.0, period, ?other, "financing not charged"),
        },
        Err(e) => warn!(market = market.0, period, error = %e, "financing not submitted"),
    }
}
