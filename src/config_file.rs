//! `serve --config FILE`: markets and engine limits from a JSON file.
//!
//! Every field is optional; what is missing keeps its default. Rates and amounts are decimal
//! strings, parsed exactly. Unknown fields are an error, so a typo is not silently ignored.
//!
//! ```json
//! {
//!   "markets": [
//!     { "symbol": "BTC_USDC", "price_decimals": 2, "qty_decimals": 5, "max_leverage": 50,
//!       "maintenance_margin_rate": "0.01", "close_fee_rate": "0.0005" },
//!     { "symbol": "ETH_USDC", "price_decimals": 2, "qty_decimals": 4 }
//!   ],
//!   "initial_balance": "10000",
//!   "max_positions_per_account": 50
//! }
//! ```

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use engine_core::config::{EngineConfig, MarketConfig};
use engine_core::num::{Ppm, Usdc};
use serde::Deserialize;

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    markets: Option<Vec<FileMarket>>,
    demo_deposits: Option<bool>,
    initial_balance: Option<String>,
    max_accounts: Option<u32>,
    max_open_positions: Option<u32>,
    max_positions_per_account: Option<u32>,
    closed_history_per_account: Option<u32>,
    idempotency_keys_per_account: Option<u32>,
    idempotency_ttl_secs: Option<u64>,
    request_id_window: Option<u32>,
    /// The HTTP edge's limits ([`hundredx_http::Limits`]); read by [`load_http`].
    http: Option<serde_json::Value>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileMarket {
    symbol: String,
    price_decimals: u32,
    qty_decimals: u32,
    max_leverage: Option<u32>,
    maintenance_margin_rate: Option<String>,
    liquidation_fee_rate: Option<String>,
    open_fee_rate: Option<String>,
    close_fee_rate: Option<String>,
    max_price_age_ms: Option<u64>,
    min_qty: Option<i64>,
    min_margin: Option<String>,
    max_price_ticks: Option<i64>,
    max_qty_steps: Option<i64>,
}

fn rate(field: &str, v: &Option<String>, default: Ppm) -> Result<Ppm> {
    v.as_deref().map_or(Ok(default), |s| Ppm::parse(s).map_err(|e| anyhow!("{field}: {e}")))
}

impl FileMarket {
    fn into_config(self) -> Result<MarketConfig> {
        let d = MarketConfig::new(&self.symbol, self.price_decimals, self.qty_decimals);
        let ctx = |f: &str| format!("market {}: {f}", self.symbol);
        Ok(MarketConfig {
            max_leverage: self.max_leverage.unwrap_or(d.max_leverage),
            maintenance_margin_rate: rate(
                &ctx("maintenance_margin_rate"),
                &self.maintenance_margin_rate,
                d.maintenance_margin_rate,
            )?,
            liquidation_fee_rate: rate(
                &ctx("liquidation_fee_rate"),
                &self.liquidation_fee_rate,
                d.liquidation_fee_rate,
            )?,
            open_fee_rate: rate(&ctx("open_fee_rate"), &self.open_fee_rate, d.open_fee_rate)?,
            close_fee_rate: rate(&ctx("close_fee_rate"), &self.close_fee_rate, d.close_fee_rate)?,
            max_price_age_ns: self
                .max_price_age_ms
                .map_or(d.max_price_age_ns, |ms| ms.saturating_mul(1_000_000)),
            min_qty: self.min_qty.unwrap_or(d.min_qty),
            min_margin: match &self.min_margin {
                Some(s) => Usdc::parse(s).map_err(|e| anyhow!("{}: {e}", ctx("min_margin")))?,
                None => d.min_margin,
            },
            max_price_ticks: self.max_price_ticks.unwrap_or(d.max_price_ticks),
            max_qty_steps: self.max_qty_steps.unwrap_or(d.max_qty_steps),
            ..d
        })
    }
}

/// The `http` section of the file at `path` (defaults for what it omits), validated.
pub fn load_http(path: Option<&Path>) -> Result<hundredx_http::Limits> {
    let limits = match path {
        None => hundredx_http::Limits::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let f: FileConfig =
                serde_json::from_str(&text).with_context(|| format!("in {}", path.display()))?;
            match f.http {
                Some(v) => serde_json::from_value(v)
                    .with_context(|| format!("in {}: section http", path.display()))?,
                None => hundredx_http::Limits::default(),
            }
        }
    };
    limits.validate().map_err(|e| anyhow!(e))?;
    Ok(limits)
}

/// Applies the file at `path` on top of `base`, then validates the result.
pub fn load(path: &Path, base: EngineConfig) -> Result<EngineConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    apply(&text, base).with_context(|| format!("in {}", path.display()))
}

/// The engine configuration of `--config FILE` on top of the defaults, or the defaults.
pub fn load_engine(path: Option<&Path>) -> Result<EngineConfig> {
    match path {
        Some(p) => load(p, EngineConfig::default()),
        None => Ok(EngineConfig::default()),
    }
}

/// Applies a JSON configuration text on top of `base`, then validates the result.
pub fn apply(text: &str, base: EngineConfig) -> Result<EngineConfig> {
    let f: FileConfig = serde_json::from_str(text)?;
    let mut cfg = base;
    if let Some(markets) = f.markets {
        cfg.markets = markets.into_iter().map(FileMarket::into_config).collect::<Result<_>>()?;
    }
    if let Some(s) = &f.initial_balance {
        cfg.initial_balance = Usdc::parse(s).map_err(|e| anyhow!("initial_balance: {e}"))?;
    }
    cfg.demo_deposits = f.demo_deposits.unwrap_or(cfg.demo_deposits);
    cfg.max_accounts = f.max_accounts.unwrap_or(cfg.max_accounts);
    cfg.max_open_positions = f.max_open_positions.unwrap_or(cfg.max_open_positions);
    cfg.max_positions_per_account =
        f.max_positions_per_account.unwrap_or(cfg.max_positions_per_account);
    cfg.closed_history_per_account =
        f.closed_history_per_account.unwrap_or(cfg.closed_history_per_account);
    cfg.idempotency_keys_per_account =
        f.idempotency_keys_per_account.unwrap_or(cfg.idempotency_keys_per_account);
    if let Some(secs) = f.idempotency_ttl_secs {
        cfg.idempotency_ttl_ns = secs
            .checked_mul(1_000_000_000)
            .ok_or_else(|| anyhow::anyhow!("idempotency_ttl_secs is too large"))?;
    }
    cfg.request_id_window = f.request_id_window.unwrap_or(cfg.request_id_window);
    cfg.validate()?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_exactly() {
        let text = r#"{ "markets": [ { "symbol": "BTC_USDC", "price_decimals": 2, "qty_decimals": 5,
            "max_leverage": 50, "maintenance_margin_rate": "0.01", "close_fee_rate": "0.0005" } ],
            "initial_balance": "10000.5", "max_positions_per_account": 7 }"#;
        let cfg = apply(text, EngineConfig::default()).unwrap();
        assert_eq!(cfg.markets.len(), 1);
        let m = &cfg.markets[0];
        assert_eq!(
            (m.max_leverage, m.maintenance_margin_rate, m.close_fee_rate),
            (50, Ppm(10_000), Ppm(500))
        );
        assert_eq!(cfg.initial_balance, Usdc(10_000_500_000));
        assert_eq!(cfg.max_positions_per_account, 7);
    }

    #[test]
    fn bad_files_are_refused() {
        for bad in [
            r#"{ "markets_typo": [] }"#,
            r#"{ "initial_balance": "1.0000001" }"#,
            r#"{ "markets": [ { "symbol": "X", "price_decimals": 2, "qty_decimals": 2, "max_leverage": 500 } ] }"#,
            r#"{ "markets": [] }"#,
            "not json",
        ] {
            assert!(apply(bad, EngineConfig::default()).is_err(), "{bad}");
        }
    }
}
