//! `hundredx engine --metrics-listen ADDR`: the engine process's own `/metrics` in service
//! mode, where no HTTP API runs beside it: its counters and, replicated, whether it leads and
//! the last sequence it journaled (Prometheus computes a standby's lag as the leader's minus
//! its own: ops/prometheus/alerts.yml).

use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed};

use anyhow::{Context, Result};
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use engine_core::processor::Submitter;
use hundredx::replication::Shared;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CounterLabels {
    counter: &'static str,
}

/// What `/metrics` reads.
struct Source {
    submitter: std::sync::Mutex<Submitter>,
    replication: Option<Arc<Shared>>,
}

/// Serves `/metrics` on `listen` until `stop`.
pub fn spawn(
    runtime: &tokio::runtime::Runtime,
    listen: std::net::SocketAddr,
    submitter: Submitter,
    replication: Option<Arc<Shared>>,
    stop: CancellationToken,
) -> Result<()> {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(listen))
        .with_context(|| format!("binding the metrics listener {listen}"))?;
    tracing::info!(addr = %listener.local_addr()?, "engine metrics on /metrics");
    let source = Arc::new(Source { submitter: std::sync::Mutex::new(submitter), replication });
    let app = Router::new().route("/metrics", get(move || render(Arc::clone(&source))));
    runtime.spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(e) = served.await {
            tracing::warn!(error = %e, "engine metrics listener ended");
        }
    });
    Ok(())
}

async fn render(source: Arc<Source>) -> impl IntoResponse {
    let mut registry = Registry::with_prefix("hundredx");
    let engine = Family::<CounterLabels, Gauge>::default();
    registry.register(
        "engine_events",
        "Engine counters (ticks, opens, liquidations, ...)",
        engine.clone(),
    );
    let c = source.submitter.lock().map(|s| s.counters()).unwrap_or_default();
    for (counter, v) in [
        ("commands", c.commands),
        ("rejections", c.rejections),
        ("ticks_applied", c.ticks_applied),
        ("liquidations", c.liquidations),
        ("bad_debts", c.bad_debts),
        ("stop_outs", c.stop_outs),
    ] {
        engine.get_or_create(&CounterLabels { counter }).set(i64::try_from(v).unwrap_or(i64::MAX));
    }
    if let Some(shared) = &source.replication {
        let leading = Gauge::<i64>::default();
        leading.set(i64::from(shared.leading.load(Acquire)));
        registry.register(
            "replication_leading",
            "1 while this engine leads (holds the lease)",
            leading,
        );
        let seq = Gauge::<i64>::default();
        seq.set(i64::try_from(shared.journaled_seq.load(Relaxed)).unwrap_or(i64::MAX));
        registry.register(
            "replication_journaled_seq",
            "The last sequence journaled here (a standby's lag: the leader's minus this)",
            seq,
        );
    }
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], out)
}
