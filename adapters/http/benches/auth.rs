//! What authenticating one request costs on the api's CPU: a session's JWT (HS256) against a
//! signed request's check (the message built, the Ed25519 signature verified strictly). Both
//! before the engine; a signed request also asks the engine for its key (one query, measured
//! with the engine's other hot paths).
//!
//! Run: `cargo bench -p hundredx-http --bench auth`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::Signer;
use hundredx_http::auth::Tokens;
use hundredx_http::keys::message;

fn auth(c: &mut Criterion) {
    let mut group = c.benchmark_group("auth");
    group.throughput(Throughput::Elements(1));
    let tokens = Tokens::new(b"bench-secret-of-enough-length-32b", 3_600, 86_400);
    let exp = ground::time::now_secs() + 3_600;
    let jwt = tokens.issue(42, false, 1, exp).expect("issued");
    group.bench_function("JWT HS256 verify", |b| {
        b.iter(|| black_box(tokens.verify(black_box(&jwt)).expect("valid")))
    });
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let public = key.verifying_key();
    let body = br#"{"market":"BTC_USDC","side":"long","leverage":10,"margin":"100"}"#;
    let ts = 1_765_000_000_000;
    let sig = key.sign(&message("POST", "/api/v1/positions", "", ts, 5_000, body));
    group.bench_function("Ed25519 signed request verify", |b| {
        b.iter(|| {
            let msg = message("POST", "/api/v1/positions", "", black_box(ts), 5_000, body);
            let key = ed25519_dalek::VerifyingKey::from_bytes(public.as_bytes()).expect("key");
            key.verify_strict(&msg, black_box(&sig)).expect("valid");
        })
    });
    group.finish();
}

criterion_group!(benches, auth);
criterion_main!(benches);
