//! `hundredx replay` and `hundredx snapshot`: offline tools over a stopped data directory.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

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
    let retain = embedded_history_seq(&args)?.map(|s| Arc::new(AtomicU64::new(s)));
    let path = SnapshotWriter::new(&data, 3, JournalPruning::Prune)
        .retaining(retain)
        .write(report.last_seq, &engine)?;
    println!(
        "{} (seq {}, hash {})",
        path.display(),
        report.last_seq,
        engine_core::hash::hex(&engine.state_hash())
    );
    Ok(())
}

/// The cursor of `serve`'s SQLite history store in the data directory, if there is one: the
/// journal after it must survive pruning, or the store could not catch up.
fn embedded_history_seq(args: &DataArgs) -> Result<Option<u64>> {
    let path = args.data_dir.join("history.sqlite");
    if !path.exists() {
        return Ok(None);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let cursor = rt.block_on(async {
        let store = history::Store::open(
            &history::Store::sqlite_url(&path),
            &args.engine_config()?.markets,
            1,
        )
        .await?;
        anyhow::Ok(store.cursor().await?)
    })?;
    Ok(Some(cursor.seq))
}
