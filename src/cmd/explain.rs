//! `hundredx explain --data-dir DIR --position N` (docs/DESIGN.md, "Every close explained"):
//! finds in the journal every triggered close and margin call of position N, prints what fired
//! and the rule's inputs, and replays the journal to each one's sequence — from the oldest
//! start the journal allows and, when there is one, from the newest snapshot before it — to
//! check that the same inputs give the same close and the same state hash.

use anyhow::{Context, Result, bail};
use engine_core::command::PositionId;
use engine_core::config::EngineConfig;
use engine_core::event::{Change, ChangeRecord, Output, Sink};
use hundredx::durability::{DataDir, Start, TornTail, recover_until};

use super::args::DataArgs;

#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The position (a partial close's closed part has an id of its own).
    #[arg(long)]
    pub position: u64,
}

/// Keeps the changes that explain one position: its `explained`, `source_quotes` and `closed`
/// changes, and its account's `stop_out` in the same command.
struct Finder {
    position: PositionId,
    found: Vec<ChangeRecord>,
    /// The command being applied's changes, until it is known whether they concern us.
    pending: Vec<ChangeRecord>,
}

impl Finder {
    fn new(position: PositionId) -> Finder {
        Finder { position, found: Vec::new(), pending: Vec::new() }
    }

    fn concerns(&self, c: &Change) -> bool {
        match *c {
            Change::Explained { position, .. }
            | Change::SourceQuotes { position, .. }
            | Change::Closed { position, .. } => position == self.position,
            _ => false,
        }
    }

    /// The command ended: keep its changes if one of them is ours (with the stop-out before
    /// them: `pending` holds only ours and stop-outs).
    fn flush(&mut self) {
        if self.pending.iter().any(|r| self.concerns(&r.change)) {
            self.found.append(&mut self.pending);
        }
        self.pending.clear();
    }
}

impl Sink for Finder {
    fn emit(&mut self, o: Output) {
        if let Output::Change(r) = o {
            if self.pending.first().is_some_and(|p| p.seq != r.seq) {
                self.flush();
            }
            if self.concerns(&r.change) || matches!(r.change, Change::StopOut { .. }) {
                self.pending.push(r);
            }
        }
    }
}

pub fn run(args: ExplainArgs) -> Result<()> {
    let data = DataDir::create(&args.data.data_dir)?;
    let cfg = args.data.engine_config()?;
    let position = PositionId(args.position);
    let start = oldest_start(&data)?;
    let mut finder = Finder::new(position);
    recover_until(&data, &cfg, (start, u64::MAX), TornTail::Report, &mut finder)
        .context("replaying the journal")?;
    finder.flush();
    // A stop-out of the account that closed another position only: not ours.
    let seqs: Vec<u64> = {
        let mut s: Vec<u64> = finder
            .found
            .iter()
            .filter(|r| matches!(r.change, Change::Explained { .. }))
            .map(|r| r.seq)
            .collect();
        s.dedup();
        s
    };
    if seqs.is_empty() {
        bail!(
            "position {}: nothing fired on it in this journal (still open and never called, closed by its owner, or before the journal's start)",
            position.0
        );
    }
    for seq in seqs {
        let ours: Vec<ChangeRecord> =
            finder.found.iter().filter(|r| r.seq == seq).copied().collect();
        print_event(&cfg, &ours);
        verify(&data, &cfg, (position, seq), (start, &ours))?;
    }
    Ok(())
}

/// From an empty engine when the journal begins at sequence 1, else from the oldest snapshot
/// the journal continues (older records were pruned).
fn oldest_start(data: &DataDir) -> Result<Start> {
    let first = data.segments()?.first().map_or(1, |(s, _)| *s);
    if first <= 1 {
        return Ok(Start::Scratch);
    }
    let snapshots = data.snapshot_files()?;
    match snapshots.iter().map(|(s, _)| *s).find(|s| *s + 1 >= first) {
        Some(s) => Ok(Start::AtOrBefore(s)),
        None => bail!("the journal starts at {first} and no snapshot reaches it"),
    }
}

/// Replays to `seq` from `start` and, if one exists and differs, from the newest snapshot
/// before `seq`: each must give the same changes of the position and the same state hash.
fn verify(
    data: &DataDir,
    cfg: &EngineConfig,
    (position, seq): (PositionId, u64),
    (start, found): (Start, &[ChangeRecord]),
) -> Result<()> {
    let mut starts = vec![(start, "the journal's oldest start")];
    let before = data.snapshot_files()?.iter().map(|(s, _)| *s).filter(|s| *s < seq).max();
    let first = match start {
        Start::AtOrBefore(s) => Some(s),
        _ => None,
    };
    if before.is_some() && before != first {
        starts.push((Start::AtOrBefore(seq - 1), "the newest snapshot before it"));
    }
    let mut hashes = Vec::new();
    for (start, what) in starts {
        let mut again = Finder::new(position);
        let (engine, report) =
            recover_until(data, cfg, (start, seq), TornTail::Report, &mut again)?;
        again.flush();
        if report.last_seq != seq {
            bail!("the journal ends at {} before {seq}", report.last_seq);
        }
        let replayed: Vec<ChangeRecord> =
            again.found.iter().filter(|r| r.seq == seq).copied().collect();
        if replayed != found {
            bail!("replayed from {what}, seq {seq} gives other changes: {replayed:?}");
        }
        let hash = engine_core::hash::hex(&engine.state_hash());
        let from = match report.snapshot_seq {
            0 => "the first record".to_string(),
            s => format!("the snapshot at {s}"),
        };
        println!("  replayed from {from} to {seq}: the same close, state hash {hash}");
        hashes.push((report.snapshot_seq, hash));
    }
    if hashes.windows(2).any(|w| w[0].1 != w[1].1) {
        bail!("the state hashes at {seq} differ: {hashes:?}");
    }
    println!("  verified");
    Ok(())
}

fn print_event(cfg: &EngineConfig, changes: &[ChangeRecord]) {
    for r in changes {
        let market = |m: engine_core::command::MarketId| &cfg.markets[usize::from(m.0)];
        match r.change {
            Change::Explained {
                trigger,
                market: m,
                side,
                quantity,
                entry_price,
                trigger_price,
                bid,
                ask,
                margin,
                maintenance_rate,
                maintenance_amount,
                call_level,
                ..
            } => {
                let mc = market(m);
                let p = |v: engine_core::num::Price| {
                    engine_core::num::format_fixed(i128::from(v.0), mc.price_decimals)
                };
                let q = engine_core::num::format_fixed(i128::from(quantity.0), mc.qty_decimals);
                println!("seq {} ({} ns): {}", r.seq, r.at_ns, trigger.as_str());
                println!("  {} {} {q} at {}", mc.symbol, side.as_str(), p(entry_price));
                if trigger_price.0 > 0 {
                    println!("  reached {} (bid {}, ask {})", p(trigger_price), p(bid), p(ask));
                } else {
                    println!("  bid {}, ask {}", p(bid), p(ask));
                }
                let scale = engine_core::math::Scale::new(mc.price_decimals, mc.qty_decimals);
                if let Some(l) = r.change.explained_level(scale)
                    && let Some(level) = l.level
                {
                    println!(
                        "  at the mark {}: PnL {}, maintenance margin {}, level {}",
                        p(l.mark),
                        l.pnl,
                        engine_core::num::format_fixed(l.maintenance_margin, 6),
                        engine_core::num::format_fixed(level, 6)
                    );
                }
                println!(
                    "  margin {margin}, maintenance rate {}, amount {maintenance_amount}{}",
                    rate(maintenance_rate),
                    if call_level.0 > 0 {
                        format!(", call level {}", rate(call_level))
                    } else {
                        String::new()
                    }
                );
            }
            Change::SourceQuotes { quotes, fresh, agreeing, market: m, .. } => {
                let mc = market(m);
                let p = |v: engine_core::num::Price| {
                    engine_core::num::format_fixed(i128::from(v.0), mc.price_decimals)
                };
                for (i, (b, a)) in quotes.iter().take(usize::from(mc.sources)).enumerate() {
                    println!("  source {i}: bid {}, ask {}", p(*b), p(*a));
                }
                println!("  {fresh} fresh, {agreeing} agreeing");
            }
            Change::StopOut { level, .. } => println!(
                "  account equity {}, maintenance margin {}, level {}",
                level.equity,
                level.maintenance_margin,
                rate(level.level)
            ),
            Change::Closed {
                exit_price, realized_pnl, fee, payout, bad_debt, market: m, ..
            } => {
                let mc = market(m);
                let exit =
                    engine_core::num::format_fixed(i128::from(exit_price.0), mc.price_decimals);
                println!(
                    "  closed at {exit}: PnL {realized_pnl}, fee {fee}, paid {payout}, forgiven {bad_debt}"
                );
            }
            _ => {}
        }
    }
}

fn rate(r: engine_core::num::Ppm) -> String {
    engine_core::num::format_fixed(i128::from(r.0), 6)
}
