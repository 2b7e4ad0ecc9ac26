//! HTTP throughput with a session's JWT against API-key signed requests, in one run (issue 29:
//! verifying a signature must not be the bottleneck). The API in this process over an
//! in-memory engine (no journal: the authentication path is what differs), `C` keep-alive
//! connections in a closed loop on `GET /api/v1/user/balance` (one engine query), 5 s per
//! variant, alternating. The signed requests are signed before the clock starts (a bot signs
//! on its own machine; each carries a nonce so no two signatures repeat). Reported: requests a
//! second, and the server's CPU per request (this process's threads but the client runtime's,
//! from /proc, 10 ms ticks).
//!
//! Run: `cargo bench --bench http_auth` (`-- --quick`: 1 s per variant, one round).

#![allow(clippy::cast_precision_loss, clippy::float_arithmetic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ed25519_dalek::Signer as _;
use engine_core::prelude::*;
use http_body_util::{BodyExt, Full};
use hundredx_http::{ApiConfig, AppState};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

const CONNECTIONS: usize = 16;

#[path = "support/cpu.rs"]
mod cpu;

/// CPU ticks of this process's threads whose name does not start with `skip`.
fn cpu_ticks_but(skip: &str) -> u64 {
    cpu::cpu_ticks(|name| !name.starts_with(skip))
}

async fn get(c: &HttpClient, url: &str, headers: &[(String, String)]) -> u16 {
    let mut req = hyper::Request::get(url);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let Ok(resp) = c.request(req.body(Full::new(Bytes::new())).unwrap()).await else { return 0 };
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

/// `requests` (each its headers) sent over `CONNECTIONS` connections for `secs`: (done, failed).
fn load(
    client_rt: &tokio::runtime::Runtime,
    base: &str,
    requests: Arc<Vec<Vec<(String, String)>>>,
    secs: u64,
) -> (u64, u64) {
    let next = Arc::new(AtomicU64::new(0));
    let (done, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let until = Instant::now() + Duration::from_secs(secs);
    client_rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..CONNECTIONS {
            let (next, done, failed, requests) =
                (next.clone(), done.clone(), failed.clone(), requests.clone());
            let c: HttpClient =
                Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1).build_http();
            let base = base.to_string();
            tasks.push(tokio::spawn(async move {
                while Instant::now() < until {
                    let i = usize::try_from(next.fetch_add(1, Ordering::Relaxed)).unwrap_or(0);
                    let Some(h) = requests.get(i % requests.len()) else { break };
                    let url = format!("{base}/api/v1/user/balance?n={i}");
                    if get(&c, &url, h).await == 200 {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (secs, rounds) = if quick { (1, 1) } else { (5, 3) };
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("srv")
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("cli")
        .enable_all()
        .build()
        .unwrap();
    let engine = EngineHandle::start(EngineConfig::default()).unwrap();
    let mut cfg = ApiConfig::new(
        b"http-auth-bench-secret-of-32-bytes!".to_vec(),
        EngineConfig::default().markets,
    );
    // One client, many requests: the per-client allowances would be the bottleneck.
    let l = &mut cfg.limits;
    (l.authed_per_second, l.any_per_ip_per_second) = (1_000_000_000, 1_000_000_000);
    (l.weight_per_minute_account, l.weight_per_minute_key) = (1_000_000_000, 1_000_000_000);
    let state = AppState::new(cfg, engine.submitter());
    let listener = server_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    server_rt.spawn(hundredx_http::serve(listener, state, std::future::pending()));

    // An account, its session token and a key, through the API as a user makes them.
    let (token, seed) = client_rt.block_on(async {
        let c: HttpClient = Client::builder(TokioExecutor::new()).build_http();
        let post = |path: &str, auth: Option<&str>, body: String| {
            let mut req = hyper::Request::post(format!("{base}{path}"))
                .header("content-type", "application/json");
            if let Some(t) = auth {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            let req = req.body(Full::new(Bytes::from(body))).unwrap();
            let c = c.clone();
            async move {
                let r = c.request(req).await.unwrap();
                let b = r.into_body().collect().await.unwrap().to_bytes();
                serde_json::from_slice::<serde_json::Value>(&b).unwrap()
            }
        };
        let creds =
            r#"{"email":"bench@example.com","password":"correct horse battery"}"#.to_string();
        post("/api/v1/user/signup", None, creds.clone()).await;
        let token =
            post("/api/v1/user/signin", None, creds).await["token"].as_str().unwrap().to_string();
        let seed = [42u8; 32];
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = format!(
            r#"{{"label":"bench","public_key":"{}","scopes":["read"]}}"#,
            b64.encode(public.as_bytes())
        );
        let k = post("/api/v1/user/api-keys", Some(&token), key).await;
        assert!(k["id"].is_string(), "{k}");
        (token, seed)
    });
    let jwt: Arc<Vec<Vec<(String, String)>>> =
        Arc::new(vec![vec![("authorization".into(), format!("Bearer {token}"))]]);
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    let b64 = base64::engine::general_purpose::STANDARD;
    let public = b64.encode(signing.verifying_key().as_bytes());
    println!(
        "# HTTP throughput, {CONNECTIONS} connections, GET /api/v1/user/balance, {secs} s per run\n"
    );
    println!("| round | auth | requests/s | server CPU µs/request | failed |");
    println!("|---|---|---|---|---|");
    for round in 1..=rounds {
        for variant in ["JWT", "Ed25519 key"] {
            let requests = if variant == "JWT" {
                jwt.clone()
            } else {
                // Enough signed requests for the run, each with its nonce, signed now (window 60 s).
                let ts = hundredx_http::now_ns() / 1_000_000;
                let n = 60_000 * usize::try_from(secs).unwrap_or(1);
                Arc::new(
                    (0..n)
                        .map(|i| {
                            let msg = hundredx_http::keys::message(
                                "GET",
                                "/api/v1/user/balance",
                                &format!("n={i}"),
                                ts,
                                60_000,
                                b"",
                            );
                            let sig = b64.encode(signing.sign(&msg).to_bytes());
                            vec![
                                ("x-api-key".into(), public.clone()),
                                ("x-timestamp".into(), ts.to_string()),
                                ("x-window".into(), "60000".into()),
                                ("x-signature".into(), sig),
                            ]
                        })
                        .collect(),
                )
            };
            let before = cpu_ticks_but("cli");
            let t0 = Instant::now();
            let (done, failed) = load(&client_rt, &base, requests, secs);
            let elapsed = t0.elapsed().as_secs_f64();
            let ticks = cpu_ticks_but("cli") - before;
            let per = ticks as f64 * 10_000.0 / done.max(1) as f64;
            println!(
                "| {round} | {variant} | {:.0} | {per:.1} | {failed} |",
                done as f64 / elapsed
            );
        }
    }
}
