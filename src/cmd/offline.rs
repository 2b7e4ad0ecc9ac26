//! `hundredx replay` and `hundredx snapshot`: offline tools over a stopped data directory.

use anyhow::Result;
use hundredx::durability::{DataDir, JournalPruning, SnapshotWriter, Start, TornTail, recover};

use super::args::DataArgs;

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Ignore snapshots: replay the whole journal from its first record.
    #[arg(long)]
    pub from_scratch: bool,
}

pub fn replay(args: ReplayArgs) -> Result<()> {
    let data = DataDir::create(&args.data.data_dir)?;
    let (engine, report) = recover(
        &data,
        &args.data.engine_config()?,
        if args.from_scratch { Start::Scratch } else { Start::LatestSnapshot },
        TornTail::Report,
    )?;
    let s = engine.summary();
    let c = engine.counters();
    println!("data dir        {}", args.data.data_dir.display());
    println!(
        "snapshot used   {}",
        if report.snapshot_seq == 0 { "none".to_string() } else { report.snapshot_seq.to_string() }
    );
    println!(
        "replayed        {} records in {:?} ({} /s)",
        report.replayed,
        report.elapsed,
        hundredx::durability::per_second(report.replayed, report.elapsed)
    );
    if let Some((seg, at)) = &report.torn_tail {
        println!("torn tail       {} at byte {at} (ignored)", seg.display());
    }
    println!("last seq        {}", report.last_seq);
    println!("state hash      {}", engine_core::hash::hex(&s.hash));
    println!("accounts        {}", s.accounts);
    println!("open positions  {}", s.open_positions);
    println!("net deposits    {}", s.net_deposits);
    println!("available       {}", s.total_available);
    println!("locked margin   {}", s.total_margin);
    println!("insurance fund  {}", s.insurance_fund);
    println!("house balance   {}", s.house_balance);
    println!("liquidations    {} (bad debt {})", c.liquidations, c.bad_debts);
    engine.check_conservation().map_err(|e| anyhow::anyhow!("conservation check failed: {e}"))?;
    println!("conservation    ok");
    Ok(())
}

pub fn snapshot(args: DataArgs) -> Result<()> {
    let data = DataDir::create(&args.data_dir)?;
    let _lock = data.lock()?;
    let (engine, report) =
        recover(&data, &args.engine_config()?, Start::LatestSnapshot, TornTail::Truncate)?;
    let path =
        SnapshotWriter::new(&data, 3, JournalPruning::Prune).write(report.last_seq, &engine)?;
    println!(
        "{} (seq {}, hash {})",
        path.display(),
        report.last_seq,
        engine_core::hash::hex(&engine.state_hash())
    );
    Ok(())
}
