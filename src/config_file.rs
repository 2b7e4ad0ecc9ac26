//! `--config FILE`: markets and engine limits, and the HTTP edge's limits, from one JSON file.
//!
//! The engine part deserializes straight into [`EngineConfig`] (its serde attributes say the
//! defaults and units); the `http` section into [`hundredx_http::Limits`]. Every field is
//! optional; what is missing keeps its default. Rates and amounts are decimal strings, parsed
//! exactly. Unknown fields are an error, so a typo is not silently ignored.
//!
//! ```json
//! {
//!   "markets": [
//!     { "symbol": "BTC_USDC", "price_decimals": 2, "qty_decimals": 5, "max_leverage": 50,
//!       "maintenance_margin_rate": "0.01", "close_fee_rate": "0.0005" },
//!     { "symbol": "ETH_USDC", "price_decimals": 2, "qty_decimals": 4, "sources": 3,
//!       "min_sources": 2, "max_source_age_ms": 5000, "max_deviation_bps": 100 }
//!   ],
//!   "initial_balance": "10000",
//!   "max_positions_per_account": 50,
//!   "groups": [
//!     { "name": "standard" },
//!     { "name": "pro", "markets": [ { "symbol": "BTC_USDC", "markup_ticks": 50,
//!       "commission_rate": "0.0002" } ] },
//!     { "name": "raw", "markets": [ { "symbol": "BTC_USDC", "markup_bps": 1,
//!       "commission_per_lot": "3.5", "financing_long_rate": "0.0003" } ] }
//!   ]
//! }
//! ```

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use engine_core::config::EngineConfig;

/// The file's two parts: the engine's (everything but `http`) and the HTTP edge's.
fn split(text: &str) -> Result<(serde_json::Value, Option<serde_json::Value>)> {
    let mut all: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)?;
    let http = all.remove("http");
    Ok((serde_json::Value::Object(all), http))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The `http` section of the file at `path` (defaults for what it omits), validated.
pub fn load_http(path: Option<&Path>) -> Result<hundredx_http::Limits> {
    let limits = match path {
        None => hundredx_http::Limits::default(),
        Some(path) => {
            let (_, http) =
                split(&read(path)?).with_context(|| format!("in {}", path.display()))?;
            match http {
                Some(v) => serde_json::from_value(v)
                    .with_context(|| format!("in {}: section http", path.display()))?,
                None => hundredx_http::Limits::default(),
            }
        }
    };
    limits.validate().map_err(|e| anyhow!(e))?;
    Ok(limits)
}

/// The engine configuration in the file at `path`, validated.
pub fn load(path: &Path) -> Result<EngineConfig> {
    parse(&read(path)?).with_context(|| format!("in {}", path.display()))
}

/// The engine configuration of `--config FILE`, or the defaults.
pub fn load_engine(path: Option<&Path>) -> Result<EngineConfig> {
    path.map_or_else(|| Ok(EngineConfig::default()), load)
}

/// The engine configuration in a JSON text (defaults for what it omits), validated.
pub fn parse(text: &str) -> Result<EngineConfig> {
    let (engine, _) = split(text)?;
    let cfg: EngineConfig = serde_json::from_value(engine)?;
    cfg.validate()?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use engine_core::config::MarketConfig;
    use engine_core::num::{Ppm, Usdc};

    use super::*;

    #[test]
    fn file_overrides_defaults_exactly() {
        let text = r#"{ "markets": [ { "symbol": "BTC_USDC", "price_decimals": 2, "qty_decimals": 5,
            "max_leverage": 50, "maintenance_margin_rate": "0.01", "close_fee_rate": "0.0005",
            "max_price_age_ms": 1500, "open_interest_cap_steps": 500000, "skew_cap_steps": 100000,
            "skew_financing_rate": "0.001" } ],
            "initial_balance": "10000.5", "max_positions_per_account": 7,
            "idempotency_ttl_secs": 60, "http": { "body_limit_bytes": 4096 } }"#;
        let cfg = parse(text).unwrap();
        assert_eq!(cfg.markets.len(), 1);
        let m = &cfg.markets[0];
        assert_eq!(
            (m.max_leverage, m.maintenance_margin_rate, m.close_fee_rate, m.max_price_age_ns),
            (50, Ppm(10_000), Ppm(500), 1_500_000_000)
        );
        assert_eq!(
            (m.open_interest_cap_steps, m.skew_cap_steps, m.skew_financing_rate),
            (500_000, 100_000, Ppm(1_000))
        );
        assert_eq!(cfg.initial_balance, Usdc(10_000_500_000));
        assert_eq!(cfg.max_positions_per_account, 7);
        assert_eq!(cfg.idempotency_ttl_ns, 60_000_000_000);
        // What the file leaves out keeps the defaults, field by field.
        let d = EngineConfig::default();
        assert_eq!(
            (cfg.max_accounts, cfg.request_id_window),
            (d.max_accounts, d.request_id_window)
        );
        let dm = MarketConfig::new("BTC_USDC", 2, 5);
        assert_eq!(
            (m.liquidation_fee_rate, m.min_margin, m.min_qty),
            (dm.liquidation_fee_rate, dm.min_margin, dm.min_qty)
        );
        assert_eq!(parse("{}").unwrap(), d);
    }

    #[test]
    fn a_groups_terms_parse_exactly_and_out_of_range_ones_are_refused() {
        let group = |terms: &str| {
            format!(
                r#"{{ "groups": [ {{ "name": "raw", "markets": [ {{ "symbol": "BTC_USDC", {terms} }} ] }} ] }}"#
            )
        };
        let cfg = parse(&group(
            r#""markup_bps": 1, "commission_per_lot": "3.5", "financing_short_rate": "-0.0002""#,
        ))
        .unwrap();
        let t = cfg.group_terms()[0][0];
        assert_eq!((t.markup_bps, t.commission_per_lot), (1, Usdc(3_500_000)));
        let market = &cfg.markets[0];
        assert_eq!(
            t.financing,
            Some((market.financing_long_rate, Ppm(-200))),
            "long: the market's"
        );
        for bad in [
            r#""markup_bps": 1001"#,
            r#""commission_per_lot": "1000.000001""#,
            r#""commission_per_lot": "0.0000001""#,
            r#""financing_long_rate": "0.0101""#,
            r#""markup_bps": -1"#,
        ] {
            assert!(parse(&group(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn brackets_parse_exactly() {
        let cfg = parse(
            r#"{ "markets": [ { "symbol": "BTC_USDC", "price_decimals": 2, "qty_decimals": 5,
            "brackets": [
              { "notional_cap": "50000", "max_leverage": 100, "maintenance_margin_rate": "0.005" },
              { "max_leverage": 20, "maintenance_margin_rate": "0.025" } ] } ] }"#,
        )
        .unwrap();
        let b = &cfg.markets[0].brackets;
        assert_eq!((b[0].notional_cap, b[1].notional_cap), (Some(Usdc(50_000_000_000)), None));
        assert_eq!(cfg.markets[0].maintenance_amounts(), [Usdc(0), Usdc(1_000_000_000)]);
        let no_rate = r#"{ "markets": [ { "symbol": "BTC_USDC", "price_decimals": 2,
            "qty_decimals": 5, "brackets": [ { "max_leverage": 100 } ] } ] }"#;
        assert!(parse(no_rate).is_err());
        // A group's own (docs/OPERATIONS.md's example), and one whose first leverage is above
        // the market's.
        let group = |lev: u32| {
            format!(
                r#"{{ "groups": [ {{ "name": "retail", "markets": [ {{ "symbol": "BTC_USDC", "brackets": [
                {{ "notional_cap": "10000", "max_leverage": {lev}, "maintenance_margin_rate": "0.005" }},
                {{ "max_leverage": 20, "maintenance_margin_rate": "0.02" }} ] }} ] }} ] }}"#
            )
        };
        let cfg = parse(&group(100)).unwrap();
        let own = &cfg.groups[0].markets[0].brackets;
        assert_eq!((own.len(), own[1].maintenance_margin_rate), (2, Ppm(20_000)));
        assert!(parse(&group(101)).is_err());
    }

    #[test]
    fn bad_files_are_refused() {
        for bad in [
            r#"{ "markets_typo": [] }"#,
            r#"{ "initial_balance": "1.0000001" }"#,
            r#"{ "initial_balance": 5 }"#,
            r#"{ "markets": [ { "symbol": "X", "price_decimals": 2, "qty_decimals": 2, "max_leverage": 500 } ] }"#,
            r#"{ "markets": [ { "symbol": "X", "price_decimals": 2 } ] }"#,
            r#"{ "markets": [ { "symbol": "X", "price_decimals": 2, "qty_decimals": 2, "fee": "0" } ] }"#,
            r#"{ "markets": [] }"#,
            r#"{ "markets": [ { "symbol": "X", "price_decimals": 2, "qty_decimals": 2, "skew_cap_steps": -1 } ] }"#,
            r#"{ "markets": [ { "symbol": "X", "price_decimals": 2, "qty_decimals": 2, "skew_financing_rate": "0.02" } ] }"#,
            r#"{ "idempotency_ttl_secs": 18446744073709551615 }"#,
            "not json",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
