//! `hundredx stress --data-dir DIR (--feed replay:FILE | --crash MARKET=-20%)` (docs/DESIGN.md,
//! "Stress replay"): recovers a copy of the state from the data directory without its lock and
//! without writing a byte (a running `serve` goes on), applies the price path with the
//! production engine, and prints who would be liquidated or stopped out, the bad debt and who
//! pays it.

use anyhow::{Context, Result, bail};
use engine_core::command::{MarketId, Tick};
use engine_core::num::parse_fixed_i128;
use hundredx::durability::{DataDir, Start, TornTail, recover};
use hundredx::stress::{self, SCENARIO_TICKS_MAX, Step};
use price_feed::FeedKind;

use super::args::DataArgs;

#[derive(clap::Args, Debug)]
pub struct StressArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// `replay:FILE`: a recording of Backpack's frames (as `hundredx feed --record` writes),
    /// applied relative to today's prices (each market's moves from its first recorded price).
    #[arg(long)]
    pub feed: Option<String>,
    /// A synthetic crash: `MARKET=-20%` (comma-separated for several markets).
    #[arg(long, value_delimiter = ',')]
    pub crash: Vec<String>,
    /// Steps of a synthetic crash (1: a gap).
    #[arg(long, default_value_t = 100)]
    pub steps: u32,
    /// Apply a recording's prices as recorded instead of relative to today's.
    #[arg(long)]
    pub absolute: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: StressArgs) -> Result<()> {
    let cfg = args.data.engine_config()?;
    // No lock and `TornTail::Report`: reads the files as they are, changes none of them.
    let data = DataDir::open_existing(&args.data.data_dir)?;
    let (mut engine, recovered) = recover(&data, &cfg, Start::LatestSnapshot, TornTail::Report)
        .context("recovering the state to stress")?;
    let now = stress::markets(&mut engine);
    let path: Vec<Step> = match (&args.feed, args.crash.is_empty()) {
        (Some(feed), true) => {
            let ticks = recorded(feed, &cfg.markets)?;
            if args.absolute {
                ticks.iter().map(|t| Step { market: t.market, bid: t.bid, ask: t.ask }).collect()
            } else {
                stress::rebase(&ticks, &now)
            }
        }
        (None, false) => {
            let moves = args
                .crash
                .iter()
                .map(|m| crash_move(m, &cfg.markets))
                .collect::<Result<Vec<_>>>()?;
            stress::crash(&now, &moves, args.steps)
        }
        _ => bail!("give one of --feed replay:FILE or --crash MARKET=-PCT%"),
    };
    if path.is_empty() {
        bail!("the scenario moves no market that has a price");
    }
    let (report, after) = stress::run(engine, &path);
    after.check_conservation().map_err(|e| anyhow::anyhow!("conservation: {e}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("state at seq   {}", recovered.last_seq);
        let symbol = |m: u16| cfg.markets.get(usize::from(m)).map(|c| c.symbol.clone());
        print!("{}", stress::render(&report, |m| symbol(m).unwrap_or_default()));
    }
    Ok(())
}

/// `BTC_USDC=-20%` as the market and its move in millionths.
fn crash_move(raw: &str, markets: &[engine_core::config::MarketConfig]) -> Result<(MarketId, i64)> {
    let (symbol, pct) = raw.split_once('=').context("--crash takes MARKET=-PCT%")?;
    let i = markets
        .iter()
        .position(|m| m.symbol == symbol)
        .with_context(|| format!("no market {symbol}"))?;
    let pct = pct.strip_suffix('%').context("--crash: the move ends with %")?;
    let ppm = parse_fixed_i128(pct, 4).map_err(|e| anyhow::anyhow!("--crash {raw}: {e}"))?;
    // Percent with 4 decimals is millionths.
    if !(-999_999..=1_000_000_000).contains(&ppm) {
        bail!("--crash {raw}: a move between -99.9999% and +1000000%");
    }
    Ok((MarketId(u16::try_from(i)?), i64::try_from(ppm)?))
}

/// The ticks of a recording, parsed by the venue's own parser.
fn recorded(feed: &str, markets: &[engine_core::config::MarketConfig]) -> Result<Vec<Tick>> {
    let FeedKind::Replay { venue, path } = FeedKind::parse(feed)? else {
        bail!("--feed takes replay:FILE here");
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    price_feed::replay::ticks_of(venue, &text, (markets, &Default::default()), SCENARIO_TICKS_MAX)
        .with_context(|| {
            format!("the recording holds more than {SCENARIO_TICKS_MAX} ticks: cut it")
        })
}
