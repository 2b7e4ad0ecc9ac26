//! Helpers several of the HTTP adapter's test files share.

use std::time::Duration;

use engine_core::prelude::*;
use hundredx_http::now_ns;
use serde_json::Value;

/// Applies one tick of `market` through the engine's ring and checks it was accepted.
pub fn apply_tick(engine: &mut Submitter, market: u16, bid: i64, ask: i64, update_id: u64) {
    let tick = Tick {
        market: MarketId(market),
        bid: Price(bid),
        ask: Price(ask),
        update_id,
        exchange_time_us: 0,
    };
    let r = engine.call(now_ns(), CommandKind::PriceTick(tick), Duration::from_secs(5)).unwrap();
    assert!(r.result.is_ok(), "{r:?}");
}

/// Every `$ref` in a JSON document (OpenAPI, AsyncAPI) resolves inside it; returns how many
/// there are.
pub fn assert_refs_resolve(doc: &Value) -> usize {
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(doc, &mut all);
    for r in &all {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external $ref {r}"));
        assert!(doc.pointer(pointer).is_some(), "unresolved $ref {r}");
    }
    all.len()
}
