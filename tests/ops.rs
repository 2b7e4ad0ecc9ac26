//! Monitoring as shipped in `ops/` (docs/OPERATIONS.md, "Monitoring"): the Prometheus alert
//! rules pass `promtool check rules` and their unit tests (`promtool test rules`: each alert
//! fires on the series it is for and not before its `for`), and every metric the rules and the
//! Grafana dashboard read is one a running `serve` exposes (or `hundredx engine
//! --metrics-listen`, whose two replication gauges tests/replication.rs reads). Needs
//! `promtool` (`apt-get install --no-install-recommends prometheus`; scripts/test installs it).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::*;

fn ops(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ops").join(path)
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(ops("prometheus"))
        .output()
        .expect("promtool not found: apt-get install --no-install-recommends prometheus");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn the_alert_rules_check_and_their_unit_tests_pass() {
    let checked = promtool(&["check", "rules", "alerts.yml"]);
    assert!(checked.contains("SUCCESS: 11 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// Every `hundredx_…` name in `text`.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("hundredx_") {
        let tail = &rest[at..];
        let end =
            tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

/// The metric names a `serve` with `feed` exposes (scraped twice: a family shows once it has
/// a sample, and the first scrape is the first request counted).
fn exposed_by(feed: &[&str]) -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut args = vec!["serve", "--data-dir", data.to_str().unwrap(), "--listen", "127.0.0.1:0"];
    args.extend_from_slice(feed);
    let (_serve, addr) = address_of(hundredx(&args));
    until(200, 20, || http(&addr, "GET", "/metrics", None, None));
    let (_, metrics) = until(200, 20, || http(&addr, "GET", "/metrics", None, None));
    // Families as declared (`# TYPE name kind`), with the series suffixes of their kind.
    let mut exposed = BTreeSet::new();
    for l in metrics.lines() {
        if let Some(t) = l.strip_prefix("# TYPE ") {
            let mut parts = t.split(' ');
            let (name, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            exposed.insert(name.to_owned());
            let suffixes: &[&str] = match kind {
                "histogram" => &["_bucket", "_sum", "_count"],
                "counter" => &["_total"],
                _ => &[],
            };
            for s in suffixes {
                exposed.insert(format!("{name}{s}"));
            }
        }
    }
    exposed
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_read_is_exposed() {
    // The synthetic feed prices every market; two venues (unreachable here) are sources.
    let mut exposed = exposed_by(&["--feed", "synthetic"]);
    exposed.extend(exposed_by(&[
        "--feed",
        "binance,okx",
        "--feed-url",
        "binance=ws://127.0.0.1:9",
        "--feed-url",
        "okx=ws://127.0.0.1:9",
        "--no-backfill",
    ]));
    // `hundredx engine --metrics-listen` (tests/replication.rs reads both).
    exposed.insert("hundredx_replication_leading".into());
    exposed.insert("hundredx_replication_journaled_seq".into());
    // `hundredx hedger --metrics-listen` (tests/hedger.rs reads them).
    exposed.insert("hundredx_hedger".into());
    exposed.insert("hundredx_hedger_position_steps".into());
    let alerts = std::fs::read_to_string(ops("prometheus/alerts.yml")).unwrap();
    let dashboard = std::fs::read_to_string(ops("grafana/hundredx.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let exprs: Vec<&str> = doc["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    assert!(exprs.len() >= 20, "the dashboard has its panels: {}", exprs.len());
    let used = names_in(&alerts).into_iter().chain(exprs.iter().flat_map(|e| names_in(e)));
    let missing: Vec<String> = used.filter(|n| !exposed.contains(n)).collect();
    assert!(missing.is_empty(), "read but not exposed: {missing:?}\n(exposed: {exposed:?})");
    for area in [
        "Engine",
        "The house",
        "Markets and feeds",
        "HTTP and push",
        "History store",
        "Replication (service mode)",
    ] {
        assert!(
            doc["panels"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["type"] == "row" && p["title"] == area),
            "no {area} row"
        );
    }
}
