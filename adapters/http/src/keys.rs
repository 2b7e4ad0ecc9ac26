//! Requests signed with an API key (docs/API.md, "Signed requests"): Ed25519 over method, path,
//! sorted query, timestamp, window and body, Backpack's way. The key is engine state: every
//! signed request asks the engine for it (as it stands at that moment: revoked keys are gone,
//! expired ones refused), so a revocation holds at once on every api instance.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use engine_core::command::{CommandKind, KeyScopes};
use engine_core::event::ReplyData;

use crate::error::ApiError;
use crate::extract::KeyAuth;
use crate::{AppState, now_ns};

/// The headers of a signed request.
pub const KEY_HEADER: &str = "x-api-key";
/// Milliseconds since the Unix epoch when the client signed.
pub const TIMESTAMP_HEADER: &str = "x-timestamp";
/// How long after (and before) its timestamp the request is good, ms (default 5 000).
pub const WINDOW_HEADER: &str = "x-window";
/// Base64 of the 64-byte Ed25519 signature.
pub const SIGNATURE_HEADER: &str = "x-signature";
/// The default and the largest window, ms.
pub const WINDOW_DEFAULT_MS: u64 = 5_000;
/// See [`WINDOW_DEFAULT_MS`].
pub const WINDOW_MAX_MS: u64 = 60_000;
/// Signatures remembered against replay, per api instance: beyond this many live ones a signed
/// request is refused `busy` rather than let a replay through.
pub const SEEN_SIGNATURES_MAX: usize = 200_000;

/// The bytes a client signs: `METHOD\nPATH\nSORTED_QUERY\nTIMESTAMP\nWINDOW\nBODY` — the query's
/// `name=value` pairs as sent (not decoded), sorted bytewise and joined with `&` (empty when
/// there is none), the body as sent (empty when there is none).
pub fn message(
    method: &str,
    path: &str,
    query: &str,
    ts_ms: u64,
    window_ms: u64,
    body: &[u8],
) -> Vec<u8> {
    let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    pairs.sort_unstable();
    let head = format!("{method}\n{path}\n{}\n{ts_ms}\n{window_ms}\n", pairs.join("&"));
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    out
}

/// What a key needs for a route: `None` for what only a signed-in session may do (keys, the
/// operator's routes, sign-in itself).
pub fn scope_for(method: &Method, path: &str) -> Option<u8> {
    let session_only = [
        "/api/v1/user/api-keys",
        "/api/v1/admin",
        "/api/v1/user/signin",
        "/api/v1/user/signup",
        "/api/v1/user/sessions",
        "/api/v1/user/signout",
        "/api/v1/user/password",
        "/api/v1/user/2fa",
    ];
    if session_only.iter().any(|p| path.starts_with(p)) {
        return None;
    }
    if path == "/api/v1/user/withdraw" {
        return Some(KeyScopes::WITHDRAW);
    }
    if *method == Method::GET || *method == Method::HEAD {
        Some(KeyScopes::READ)
    } else {
        Some(KeyScopes::TRADE)
    }
}

/// Signatures seen within their window, to refuse a replay (on this instance; a replay to
/// another instance inside the window is caught by the idempotency of what it repeats).
#[derive(Debug, Default)]
pub struct SeenSignatures(Mutex<HashMap<[u8; 64], u64>>);

impl SeenSignatures {
    /// Records `sig`, good until `until_ms`; refused if already seen.
    fn first_use(&self, sig: [u8; 64], until_ms: u64, now_ms: u64) -> Result<(), ApiError> {
        let mut seen = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= SEEN_SIGNATURES_MAX {
            seen.retain(|_, &mut until| until >= now_ms);
            if seen.len() >= SEEN_SIGNATURES_MAX {
                return Err(ApiError::busy("too many signed requests in flight"));
            }
        }
        if seen.insert(sig, until_ms).is_some() {
            return Err(refused(
                StatusCode::UNAUTHORIZED,
                "replayed_signature",
                "this signature was already used",
            ));
        }
        Ok(())
    }
}

fn refused(status: StatusCode, code: &'static str, message: &str) -> ApiError {
    ApiError::new(status, code, message)
}

/// A signed request's (or a push `auth` message's) proof, parsed.
pub(crate) struct Signed {
    public_key: [u8; 32],
    ts_ms: u64,
    window_ms: u64,
    signature: [u8; 64],
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn parse(req: &Request) -> Result<Signed, ApiError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let bad = |what: &str| refused(StatusCode::UNAUTHORIZED, "invalid_signature", what);
    let public_key = header(req, KEY_HEADER).and_then(|k| b64.decode(k).ok());
    let public_key: [u8; 32] = public_key
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| bad("X-API-Key must be the base64 of a 32-byte Ed25519 public key"))?;
    let ts_ms = header(req, TIMESTAMP_HEADER).and_then(|t| t.parse().ok());
    let ts_ms = ts_ms.ok_or_else(|| bad("X-Timestamp must be milliseconds since the epoch"))?;
    let window_ms = match header(req, WINDOW_HEADER) {
        None => WINDOW_DEFAULT_MS,
        Some(w) => w
            .parse()
            .ok()
            .filter(|w| (1..=WINDOW_MAX_MS).contains(w))
            .ok_or_else(|| bad("X-Window must be 1..=60000 ms"))?,
    };
    let signature = header(req, SIGNATURE_HEADER).and_then(|s| b64.decode(s).ok());
    let signature: [u8; 64] = signature
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| bad("X-Signature must be the base64 of a 64-byte Ed25519 signature"))?;
    Ok(Signed { public_key, ts_ms, window_ms, signature })
}

/// For a request with `X-API-Key`: checks its window, its signature, that it is new, the key
/// (at the engine), the route's scope and the client's network, then lets it through as the
/// key's account ([`KeyAuth`]). Each refusal has its own code and changes nothing. A request
/// without the header passes untouched (a session's).
pub async fn verify_signed(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    if !req.headers().contains_key(KEY_HEADER) {
        return next.run(req).await;
    }
    match authenticate(&state, req).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn authenticate(state: &AppState, req: Request) -> Result<Request, ApiError> {
    let signed = parse(&req)?;
    let Some(scope) = scope_for(req.method(), req.uri().path()) else {
        let why = "this needs a signed-in session, not an API key";
        return Err(refused(StatusCode::FORBIDDEN, "session_required", why));
    };
    let (parts, body) = req.into_parts();
    let limit = state.cfg.limits.body_limit_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the body is too large")
    })?;
    let query = parts.uri.query().unwrap_or("");
    let peer = parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let trusted = &state.cfg.limits.trusted_proxies;
    let client = peer.map(|p| crate::extract::client_ip(p, &parts.headers, trusted));
    let what = (parts.method.as_str(), parts.uri.path(), query, &bytes[..]);
    let found = check(state, &signed, what, scope, client).await?;
    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(KeyAuth(found.account, found.id));
    Ok(req)
}

/// Checks a proof over `(method, path, query, body)`: the window, the signature, that it is
/// new, the key at the engine, `scope`, and the client's network. The key, or why not.
pub(crate) async fn check(
    state: &AppState,
    signed: &Signed,
    (method, path, query, body): (&str, &str, &str, &[u8]),
    scope: u8,
    client: Option<IpAddr>,
) -> Result<engine_core::event::ApiKeyView, ApiError> {
    let now_ms = now_ns() / 1_000_000;
    let until = signed.ts_ms.saturating_add(signed.window_ms);
    if now_ms > until || signed.ts_ms > now_ms.saturating_add(signed.window_ms) {
        let why = "the timestamp is outside the window of the server's clock";
        return Err(refused(StatusCode::UNAUTHORIZED, "timestamp_outside_window", why));
    }
    let invalid = |why: &str| refused(StatusCode::UNAUTHORIZED, "invalid_signature", why);
    let msg = message(method, path, query, signed.ts_ms, signed.window_ms, body);
    let key = ed25519_dalek::VerifyingKey::from_bytes(&signed.public_key)
        .map_err(|_| invalid("not an Ed25519 public key"))?;
    let signature = ed25519_dalek::Signature::from_bytes(&signed.signature);
    key.verify_strict(&msg, &signature)
        .map_err(|_| invalid("the signature does not match the request"))?;
    state.signatures.first_use(signed.signature, until, now_ms)?;
    let reply = state.call(CommandKind::QueryApiKey { public_key: signed.public_key }).await?;
    let found = match reply.result {
        Ok(ReplyData::ApiKey(k)) => k,
        Ok(_) => return Err(ApiError::unavailable("engine_unavailable", "unexpected reply")),
        Err(reason) => return Err(ApiError::from_reason(reason)),
    };
    if !found.scopes.allows(scope) {
        let why = "the key lacks the scope this route needs";
        return Err(refused(StatusCode::FORBIDDEN, "missing_scope", why));
    }
    let allowed = found.networks.iter().flatten().collect::<Vec<_>>();
    if !allowed.is_empty() && !client.is_some_and(|ip| allowed.iter().any(|n| contains(n, ip))) {
        let why = "the key may not be used from this address";
        return Err(refused(StatusCode::FORBIDDEN, "address_not_allowed", why));
    }
    Ok(found)
}

/// A push `auth` message's proof: `{"op":"auth","api_key","timestamp","window","signature"}`,
/// signing `AUTH\n/api/v1/ws\n\n{timestamp}\n{window}\n` (docs/API.md).
pub(crate) fn signed_auth(v: &serde_json::Value) -> Result<Signed, ApiError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let bad = |what: &str| refused(StatusCode::UNAUTHORIZED, "invalid_signature", what);
    let public_key = v["api_key"].as_str().and_then(|k| b64.decode(k).ok());
    let public_key: [u8; 32] = public_key
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| bad("api_key must be the base64 of a 32-byte Ed25519 public key"))?;
    let ts_ms = v["timestamp"]
        .as_u64()
        .ok_or_else(|| bad("timestamp must be milliseconds since the epoch"))?;
    let window_ms = match v.get("window") {
        None => WINDOW_DEFAULT_MS,
        Some(w) => w
            .as_u64()
            .filter(|w| (1..=WINDOW_MAX_MS).contains(w))
            .ok_or_else(|| bad("window must be 1..=60000 ms"))?,
    };
    let signature = v["signature"].as_str().and_then(|s| b64.decode(s).ok());
    let signature: [u8; 64] = signature
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| bad("signature must be the base64 of a 64-byte Ed25519 signature"))?;
    Ok(Signed { public_key, ts_ms, window_ms, signature })
}

/// Whether `ip` is in network `n` (an IPv4 address in an IPv4 network, IPv6 in IPv6; an
/// IPv4-mapped IPv6 address counts as its IPv4 one).
pub fn contains(n: &engine_core::command::Network, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (n.v6, ip) {
        (false, IpAddr::V4(v4)) => {
            let net: [u8; 4] = n.addr[..4].try_into().unwrap_or([0; 4]);
            ipnet::Ipv4Net::new(net.into(), n.prefix).is_ok_and(|net| net.contains(&v4))
        }
        (true, IpAddr::V6(v6)) => {
            ipnet::Ipv6Net::new(n.addr.into(), n.prefix).is_ok_and(|net| net.contains(&v6))
        }
        _ => false,
    }
}

/// A network as the engine stores it, from its CIDR text (`10.0.0.0/8`, `2001:db8::/32`; a
/// bare address is its own /32 or /128).
pub fn parse_network(text: &str) -> Option<engine_core::command::Network> {
    let net: ipnet::IpNet =
        text.parse().ok().or_else(|| text.parse::<IpAddr>().ok().map(ipnet::IpNet::from))?;
    Some(match net.trunc() {
        ipnet::IpNet::V4(v4) => {
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&v4.addr().octets());
            engine_core::command::Network { addr, prefix: v4.prefix_len(), v6: false }
        }
        ipnet::IpNet::V6(v6) => engine_core::command::Network {
            addr: v6.addr().octets(),
            prefix: v6.prefix_len(),
            v6: true,
        },
    })
}

/// The CIDR text of a stored network.
pub fn network_text(n: &engine_core::command::Network) -> String {
    if n.v6 {
        format!("{}/{}", std::net::Ipv6Addr::from(n.addr), n.prefix)
    } else {
        let v4: [u8; 4] = n.addr[..4].try_into().unwrap_or([0; 4]);
        format!("{}/{}", std::net::Ipv4Addr::from(v4), n.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_sorts_the_query_and_keeps_the_body_as_sent() {
        let m =
            message("POST", "/api/v1/positions", "b=2&a=1", 1_700_000_000_000, 5_000, b"{\"x\":1}");
        assert_eq!(m, b"POST\n/api/v1/positions\na=1&b=2\n1700000000000\n5000\n{\"x\":1}".to_vec());
        assert_eq!(message("GET", "/p", "", 1, 2, b""), b"GET\n/p\n\n1\n2\n".to_vec());
    }

    #[test]
    fn networks_parse_and_match_by_family() {
        let n = parse_network("10.1.2.3/8").unwrap();
        assert_eq!(network_text(&n), "10.0.0.0/8");
        assert!(contains(&n, "10.200.0.1".parse().unwrap()));
        assert!(contains(&n, "::ffff:10.0.0.9".parse().unwrap()), "IPv4-mapped");
        assert!(!contains(&n, "11.0.0.1".parse().unwrap()));
        let v6 = parse_network("2001:db8::/32").unwrap();
        assert!(contains(&v6, "2001:db8::1".parse().unwrap()));
        assert!(!contains(&v6, "10.0.0.1".parse().unwrap()));
        assert_eq!(network_text(&parse_network("192.0.2.7").unwrap()), "192.0.2.7/32");
        assert!(parse_network("10.0.0.0/33").is_none());
    }

    #[test]
    fn routes_need_their_scope_and_keys_never_manage_keys() {
        assert_eq!(scope_for(&Method::GET, "/api/v1/positions"), Some(KeyScopes::READ));
        assert_eq!(scope_for(&Method::POST, "/api/v1/positions"), Some(KeyScopes::TRADE));
        assert_eq!(scope_for(&Method::POST, "/api/v1/user/withdraw"), Some(KeyScopes::WITHDRAW));
        assert_eq!(scope_for(&Method::POST, "/api/v1/user/api-keys"), None);
        assert_eq!(scope_for(&Method::GET, "/api/v1/admin/risk"), None);
    }
}

#[cfg(test)]
mod worked_example {
    use base64::Engine as _;
    use ed25519_dalek::Signer;

    /// docs/API.md's worked example, byte for byte: a client that signs as documented gets
    /// these signatures, and the server accepts them.
    #[test]
    fn the_documented_example_signs_and_verifies_to_the_byte() {
        let seed: [u8; 32] = std::array::from_fn(|i| u8::try_from(i + 1).unwrap());
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let b64 = base64::engine::general_purpose::STANDARD;
        assert_eq!(
            b64.encode(key.verifying_key().as_bytes()),
            "ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ="
        );
        let body = br#"{"market":"BTC_USDC","side":"long","leverage":10,"margin":"100"}"#;
        let msg = super::message("POST", "/api/v1/positions", "", 1_765_000_000_000, 5_000, body);
        assert_eq!(
            msg,
            [&b"POST\n/api/v1/positions\n\n1765000000000\n5000\n"[..], &body[..]].concat()
        );
        let sig = key.sign(&msg);
        assert_eq!(
            b64.encode(sig.to_bytes()),
            "5gBLjv4EWSiu/T+e+/vwl66YqrHPPHrlOSNVGwAGVMK8PtH/2bzK1j7JnlEUIP251AcD5mOPg0BPzWULaeE1DA=="
        );
        assert!(key.verifying_key().verify_strict(&msg, &sig).is_ok());
        let q = super::message(
            "GET",
            "/api/v1/positions",
            "status=closed&limit=2",
            1_765_000_000_000,
            5_000,
            b"",
        );
        assert_eq!(
            q,
            b"GET\n/api/v1/positions\nlimit=2&status=closed\n1765000000000\n5000\n".to_vec()
        );
        assert_eq!(
            b64.encode(key.sign(&q).to_bytes()),
            "o88ZOob/pPm+TO3Po76DlR6fN1Lj/irmnxBegK5n3thW3uxESjaY774QjJg5bnTnL4cXX+QFSka//B6NibYPAg=="
        );
    }
}
