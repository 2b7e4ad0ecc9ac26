//! The trading page at `/` and the operator console at `/admin`: plain HTML, CSS and JavaScript embedded in the binary at build time
//! (no build step, no CDN, no Node.js to run it), with TradingView's lightweight-charts vendored
//! under `web/vendor/` (Apache-2.0).

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const APP_CSS: &str = include_str!("../web/app.css");
const CHARTS_JS: &str = include_str!("../web/vendor/lightweight-charts.js");
const ADMIN: &str = include_str!("../web/admin.html");
const ADMIN_JS: &str = include_str!("../web/admin.js");
const ADMIN_CSS: &str = include_str!("../web/admin.css");

/// Only this origin's scripts and connections; the chart library sets inline styles.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

/// `/`, the operator console at `/admin`, and `/assets/*`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/assets/app.js", get(|| async { asset("text/javascript", APP_JS) }))
        .route("/assets/app.css", get(|| async { asset("text/css", APP_CSS) }))
        .route("/admin", get(|| async { asset("text/html; charset=utf-8", ADMIN) }))
        .route("/assets/admin.js", get(|| async { asset("text/javascript", ADMIN_JS) }))
        .route("/assets/admin.css", get(|| async { asset("text/css", ADMIN_CSS) }))
        .route("/favicon.ico", get(|| async { axum::http::StatusCode::NO_CONTENT }))
        .route(
            "/assets/lightweight-charts.js",
            get(|| async { asset("text/javascript", CHARTS_JS) }),
        )
}
