//! One connection: the upgrade (caps, the token, frame and buffer limits), the protocol
//! (subscribe, unsubscribe, auth, ping), what it sends and when it ends.
//!
//! Just over 600 lines on purpose: one connection's whole state machine, whose limits (frame
//! size, rates, lag, idle and send timeouts, token expiry) must be read together.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use engine_core::command::{AccountId, CommandKind, PositionStatus, SessionId, SessionScope};
use engine_core::event::{Item, ReplyData};
use futures_util::SinkExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::AppState;
use crate::convert::{balance_dto, money};
use crate::error::ApiError;
use crate::extract::ClientIp;

use super::hub::{CandleEntry, Hub, PriceEntry, Private, Slot};
use super::pump::{poll_candles, pump_prices};
use super::{CHANNELS, PushLimits};

/// Largest client frame and message. tungstenite's own frame limit (16 MiB) applies before the
/// message limit and reserves a declared frame's length as its bytes arrive: both must be set,
/// or one unauthenticated client holds 16 MiB per socket.
pub const CLIENT_FRAME_MAX_BYTES: usize = 4_096;

/// How long a closing connection waits for the client's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The socket's read buffer (tungstenite's default is 128 KiB per connection).
const READ_BUFFER_BYTES: usize = 8_192;

/// Server frames are written once this much is buffered (each send also flushes).
const WRITE_BUFFER_BYTES: usize = 16_384;

/// A socket whose write buffer would pass this fails the send (and the connection closes):
/// the largest server frame, a full positions list, fits well inside it.
const WRITE_BUFFER_MAX_BYTES: usize = 1 << 20;

#[derive(Debug, Deserialize)]
pub(crate) struct WsQuery {
    token: Option<String>,
}

/// `GET /api/v1/ws`.
pub(crate) async fn upgrade(
    State(state): State<Arc<AppState>>,
    ClientIp(ip): ClientIp,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    Query(q): Query<WsQuery>,
    conn_slot: Option<axum::Extension<Arc<crate::server::ConnSlot>>>,
    ws: WebSocketUpgrade,
) -> Response {
    let limits = state.push_limits().clone();
    let trusted = &state.cfg.limits.trusted_proxies;
    let client = peer.map(|p| crate::extract::client_ip(p.0.0.ip(), &headers, trusted));
    // A token on the upgrade authenticates the connection from the start; a bad one is refused.
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split_once(' '))
        .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    if q.token.is_some() {
        let why = "send the token as {\"op\":\"auth\"} after connecting, or in an \
                   Authorization header: URLs are kept in proxies' logs";
        return ApiError::bad_request("token_in_url", why).into_response();
    }
    let account = match bearer {
        Some(t) => match state.verify_token(&t).await {
            Ok((v, life)) => Some((AccountId(v.account), life, SessionId(v.sid))),
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    let slot = match state.hub().admit(ip, &limits, account.is_some()) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    state.hub().poller.get_or_init(|| {
        tokio::spawn(pump_prices(state.hub(), limits.price_updates_per_second));
        tokio::spawn(poll_candles(Arc::clone(&state)));
    });
    ws.max_message_size(CLIENT_FRAME_MAX_BYTES)
        .max_frame_size(CLIENT_FRAME_MAX_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(WRITE_BUFFER_MAX_BYTES)
        .on_upgrade(move |socket| async move {
            // The server's slot for this socket stays taken while it is open (one budget for
            // HTTP and push), and shedding it closes the socket.
            let conn_slot = conn_slot.map(|axum::Extension(s)| s);
            let mut conn = Conn::new(state, account, limits, slot, conn_slot);
            conn.client = client;
            conn.run(socket).await;
        })
}

/// One connection's state.
struct Conn {
    state: Arc<AppState>,
    account: Option<AccountId>,
    /// When the token that signed it in expires (then it is closed, unless re-authed).
    expires: Option<tokio::time::Instant>,
    /// The client's address (for an API key's networks).
    client: Option<std::net::IpAddr>,
    /// The API key that signed it in, if one did (its revocation closes the connection).
    key: Option<engine_core::command::KeyId>,
    /// The session whose token signed it in, if one did (its sign-out closes the connection).
    session: Option<SessionId>,
    /// The client's frame allowance (`client_frames_per_second`).
    frames: governor::DefaultDirectRateLimiter,
    limits: PushLimits,
    subscribed: Vec<&'static str>,
    /// Candle channels subscribed (indexes into the hub's list), with their own numbering and
    /// what was last sent on each.
    candle_subs: Vec<usize>,
    candle_seq: HashMap<usize, u64>,
    sent_candles: HashMap<usize, Arc<str>>,
    seq: HashMap<&'static str, u64>,
    /// Per market, the update id last sent.
    sent_prices: HashMap<String, u64>,
    balance_dirty: bool,
    last_balance: Option<Value>,
    last_marks: Option<Value>,
    /// The risk view last sent (operators' `risk` channel).
    last_risk: Option<Value>,
    /// The account may have open positions (marks to refresh).
    has_open: bool,
    /// This connection's queue of its account's changes (once signed in), and its route id.
    private: Option<mpsc::Receiver<Arc<Private>>>,
    route: Option<u64>,
    /// The push caps' slot (leaves the anonymous budget on sign-in).
    slot: Slot,
    /// The server's slot for the socket, when served by [`crate::server::run`].
    conn_slot: Option<Arc<crate::server::ConnSlot>>,
}

/// Sleeps until `at`, or for ever when there is no such time.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The next of the account's changes, or never (not signed in).
async fn next_private(rx: &mut Option<mpsc::Receiver<Arc<Private>>>) -> Option<Arc<Private>> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A channel named in a subscribe or unsubscribe.
enum Picked {
    Named(&'static str),
    Candles(usize),
}

/// Why a connection ends.
enum End {
    Closed,
    Slow,
    Idle,
    /// Not signed in within `anonymous_life_ms`.
    Anonymous,
    /// Its server slot was given to another address's connection.
    Shed,
    /// Its token expired.
    Expired,
    /// The API key that signed it in was revoked.
    Revoked,
    /// The session whose token signed it in was signed out.
    SignedOut,
    /// It sent frames faster than `client_frames_per_second`.
    Flooding,
}

impl Conn {
    fn new(
        state: Arc<AppState>,
        signed_in: Option<(AccountId, Duration, SessionId)>,
        limits: PushLimits,
        slot: Slot,
        conn_slot: Option<Arc<crate::server::ConnSlot>>,
    ) -> Conn {
        let per_second = std::num::NonZeroU32::new(limits.client_frames_per_second)
            .unwrap_or(std::num::NonZeroU32::MIN);
        let burst = per_second.saturating_mul(std::num::NonZeroU32::MIN.saturating_add(1));
        let quota = governor::Quota::per_second(per_second).allow_burst(burst);
        Conn {
            state,
            account: signed_in.map(|(a, _, _)| a),
            expires: signed_in.map(|(_, life, _)| tokio::time::Instant::now() + life),
            client: None,
            key: None,
            session: signed_in.map(|(_, _, sid)| sid),
            frames: governor::RateLimiter::direct(quota),
            limits,
            subscribed: Vec::new(),
            candle_subs: Vec::new(),
            candle_seq: HashMap::new(),
            sent_candles: HashMap::new(),
            seq: HashMap::new(),
            sent_prices: HashMap::new(),
            balance_dirty: true,
            last_balance: None,
            last_marks: None,
            last_risk: None,
            has_open: true,
            private: None,
            route: None,
            slot,
            conn_slot,
        }
    }

    /// Starts receiving the account's changes.
    fn sign_in(&mut self, account: AccountId) {
        self.account = Some(account);
        self.slot.signed_in();
        if self.route.is_none() {
            let (id, rx) = self.state.hub().route(account);
            self.route = Some(id);
            self.private = Some(rx);
        }
    }

    async fn run(mut self, mut socket: WebSocket) {
        let hub = self.state.hub();
        let mut prices = hub.prices.subscribe();
        let mut candles = hub.candles.subscribe();
        if let Some(a) = self.account {
            self.sign_in(a);
        }
        let end = self.serve(&mut socket, &mut prices, &mut candles).await;
        hub.candle_subscribers.fetch_sub(self.candle_subs.len(), Ordering::Relaxed);
        if let (Some(a), Some(id)) = (self.account, self.route) {
            hub.unroute(a, id);
        }
        let (code, reason) = match end {
            End::Closed => return,
            End::Slow => {
                hub.stats.slow_closed.fetch_add(1, Ordering::Relaxed);
                (4001, "slow_consumer")
            }
            End::Idle => {
                hub.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                (4002, "idle")
            }
            End::Anonymous => (4003, "sign_in_required"),
            End::Expired => (4004, "token_expired"),
            End::Revoked => (4005, "key_revoked"),
            End::SignedOut => (4006, "signed_out"),
            End::Flooding => (4008, "rate_limited"),
            End::Shed => (1013, "try_again_later"),
        };
        let close =
            Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }));
        let _ = tokio::time::timeout(Duration::from_millis(500), socket.send(close)).await;
        // The closing handshake: wait (bounded) for the client's close, discarding what it
        // still sends. A socket dropped with unread data is reset, and a reset client may lose
        // the close frame, and with it the reason.
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(m)) = socket.recv().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }

    async fn serve(
        &mut self,
        socket: &mut WebSocket,
        prices: &mut watch::Receiver<Arc<Vec<PriceEntry>>>,
        candles: &mut watch::Receiver<Arc<Vec<CandleEntry>>>,
    ) -> End {
        let mut private = self.private.take();
        let mut refresh = tokio::time::interval(Duration::from_millis(self.limits.refresh_ms));
        let mut heartbeat = tokio::time::interval(Duration::from_millis(self.limits.heartbeat_ms));
        let idle = Duration::from_millis(self.limits.idle_timeout_ms);
        let mut last_heard = tokio::time::Instant::now();
        let anonymous_until = last_heard + Duration::from_millis(self.limits.anonymous_life_ms);
        let conn_slot = self.conn_slot.clone();
        let shed = async move {
            match conn_slot {
                Some(s) => s.shed().await,
                None => std::future::pending().await,
            }
        };
        let mut shed = std::pin::pin!(shed);
        loop {
            let step = tokio::select! {
                () = &mut shed => Err(End::Shed),
                () = tokio::time::sleep_until(anonymous_until), if self.account.is_none() => {
                    Err(End::Anonymous)
                }
                () = sleep_until_some(self.expires) => Err(End::Expired),
                m = socket.recv() => match m {
                    Some(Ok(m)) => {
                        last_heard = tokio::time::Instant::now();
                        if self.frames.check().is_err() {
                            Err(End::Flooding)
                        } else {
                            self.on_message(socket, m).await
                        }
                    }
                    _ => Err(End::Closed),
                },
                r = prices.changed() => match r {
                    Ok(()) => {
                        let latest = Arc::clone(&prices.borrow_and_update());
                        // At most price_updates_per_second of these: the pump's rate.
                        self.on_prices(socket, &latest).await
                    }
                    Err(_) => Err(End::Closed),
                },
                r = candles.changed() => match r {
                    Ok(()) => {
                        let latest = Arc::clone(&candles.borrow_and_update());
                        self.on_candles(socket, &latest).await
                    }
                    Err(_) => Err(End::Closed),
                },
                p = next_private(&mut private) => match p {
                    Some(p) => self.on_private(socket, &p).await,
                    // Unrouted by the hub: its queue was full.
                    None => Err(End::Slow),
                },
                _ = refresh.tick() => self.on_refresh(socket).await,
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() >= idle {
                        Err(End::Idle)
                    } else {
                        self.send(socket, Message::Ping(Default::default())).await
                    }
                }
            };
            if let Err(end) = step {
                return end;
            }
            if private.is_none() {
                private = self.private.take(); // signed in by this step
            }
        }
    }

    /// Sends one frame, or gives up on a socket that does not take it in time.
    async fn send(&self, socket: &mut WebSocket, m: Message) -> Result<(), End> {
        self.io(socket.send(m)).await?;
        self.state.hub().stats.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A socket operation within `send_timeout`.
    async fn io(
        &self,
        op: impl std::future::Future<Output = Result<(), axum::Error>>,
    ) -> Result<(), End> {
        let limit = Duration::from_millis(self.limits.send_timeout_ms);
        match tokio::time::timeout(limit, op).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Closed),
            Err(_) => Err(End::Slow),
        }
    }

    async fn send_json(&self, socket: &mut WebSocket, v: &Value) -> Result<(), End> {
        self.send(socket, Message::Text(v.to_string().into())).await
    }

    /// `{"channel", "seq", "data"}` on a subscribed channel, numbered.
    async fn push(
        &mut self,
        socket: &mut WebSocket,
        channel: &'static str,
        data: &str,
    ) -> Result<(), End> {
        match self.frame(channel, data) {
            Some(m) => self.send(socket, m).await,
            None => Ok(()),
        }
    }

    /// The numbered frame of `data` on `channel`, if subscribed. `data` is JSON already
    /// (serialized once for every connection): only the envelope is this connection's.
    fn frame(&mut self, channel: &'static str, data: &str) -> Option<Message> {
        if !self.subscribed.contains(&channel) {
            return None;
        }
        let seq = self.seq.entry(channel).or_insert(0);
        *seq += 1;
        let msg = format!(r#"{{"channel":"{channel}","seq":{seq},"data":{data}}}"#);
        Some(Message::Text(msg.into()))
    }

    async fn error(&self, socket: &mut WebSocket, code: &str, message: &str) -> Result<(), End> {
        self.send_json(socket, &json!({"op": "error", "code": code, "message": message})).await
    }

    async fn on_message(&mut self, socket: &mut WebSocket, m: Message) -> Result<(), End> {
        let text = match m {
            Message::Text(t) => t,
            Message::Close(_) => return Err(End::Closed),
            Message::Binary(_) => {
                return self.error(socket, "invalid_message", "send JSON text frames").await;
            }
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
        };
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
            return self.error(socket, "invalid_message", "not JSON").await;
        };
        match v["op"].as_str() {
            Some("ping") => self.send_json(socket, &json!({"op": "pong"})).await,
            Some("auth") if v.get("api_key").is_some() => self.on_key_auth(socket, &v).await,
            Some("auth") => self.on_auth(socket, v["token"].as_str().unwrap_or("")).await,
            Some("subscribe") => self.on_subscribe(socket, &v["channels"], true).await,
            Some("unsubscribe") => self.on_subscribe(socket, &v["channels"], false).await,
            _ => {
                self.error(
                    socket,
                    "invalid_message",
                    "op must be subscribe, unsubscribe, auth or ping",
                )
                .await
            }
        }
    }

    /// `{"op":"auth","api_key","timestamp","window","signature"}`: signed with an API key that
    /// has the `read` scope, as a request would be (crate::keys::check). The connection then
    /// lives until it closes or the key expires.
    async fn on_key_auth(&mut self, socket: &mut WebSocket, v: &Value) -> Result<(), End> {
        let what = ("AUTH", "/api/v1/ws", "", &b""[..]);
        let checked = match crate::keys::signed_auth(v) {
            Ok(proof) => {
                let read = engine_core::command::KeyScopes::READ;
                crate::keys::check(&self.state, &proof, what, read, self.client).await
            }
            Err(e) => Err(e),
        };
        match checked {
            Ok(key) if self.account.is_none_or(|mine| mine == key.account) => {
                if let Some(at) = key.expires_at_ns {
                    let life = Duration::from_nanos(at.saturating_sub(crate::now_ns()));
                    self.expires = Some(tokio::time::Instant::now() + life);
                }
                self.key = Some(key.id);
                self.sign_in(key.account);
                let data = json!({"op": "authed", "user_id": key.account.0.to_string()});
                self.send_json(socket, &data).await
            }
            Ok(_) => {
                self.error(socket, "invalid_message", "this connection is another user's").await
            }
            Err(e) => self.error(socket, e.code, &e.message).await,
        }
    }

    async fn on_auth(&mut self, socket: &mut WebSocket, token: &str) -> Result<(), End> {
        match self
            .state
            .verify_token(token)
            .await
            .map(|(v, life)| (AccountId(v.account), life, v.sid))
        {
            Ok((a, life, sid)) if self.account.is_none_or(|mine| mine == a) => {
                // The newest token's session is the one whose sign-out closes it.
                self.session = Some(SessionId(sid));
                // A newer token extends the connection's life; an older one never shortens it.
                let until = tokio::time::Instant::now() + life;
                self.expires = Some(self.expires.map_or(until, |e| e.max(until)));
                self.sign_in(a);
                self.send_json(socket, &json!({"op": "authed", "user_id": a.0.to_string()})).await
            }
            // One connection, one account: a second identity needs a second connection.
            Ok(_) => {
                self.error(socket, "invalid_message", "this connection is another user's").await
            }
            Err(e) => self.error(socket, e.code, &e.message).await,
        }
    }

    async fn on_subscribe(
        &mut self,
        socket: &mut WebSocket,
        names: &Value,
        on: bool,
    ) -> Result<(), End> {
        let Some(names) = names.as_array() else {
            return self.error(socket, "invalid_message", "channels must be a list").await;
        };
        // All or nothing: every name is checked before any is applied.
        let hub = self.state.hub();
        let mut picked = Vec::with_capacity(names.len());
        for name in names {
            let name = name.as_str().unwrap_or_default();
            if let Some(i) = hub.candle_channels.iter().position(|(c, _, _)| c == name) {
                picked.push(Picked::Candles(i));
                continue;
            }
            let Some(ch) = CHANNELS.iter().copied().find(|c| *c == name) else {
                let all = "channels: prices, positions, balance, notices, orders, risk, \
                           candles.<MARKET>.<1m|5m|15m|1h|4h|1d>";
                return self.error(socket, "unknown_channel", all).await;
            };
            if ch != "prices" && self.account.is_none() {
                let why = "private channels need auth first";
                return self.error(socket, "auth_required", why).await;
            }
            picked.push(Picked::Named(ch));
        }
        let mut done: Vec<String> = Vec::new();
        for p in picked {
            match p {
                Picked::Candles(i) => {
                    self.toggle_candles(&hub, i, on);
                    done.push(hub.candle_channels[i].0.clone());
                }
                Picked::Named(ch) => {
                    self.subscribed.retain(|c| *c != ch);
                    if on {
                        self.subscribed.push(ch);
                    }
                    done.push(ch.to_owned());
                }
            }
        }
        let op = if on { "subscribed" } else { "unsubscribed" };
        self.send_json(socket, &json!({"op": op, "channels": done})).await?;
        let named = |c: &str| done.iter().any(|d| d == c);
        if on && named("prices") {
            // A new subscriber gets every market's latest price at once.
            self.sent_prices.clear();
            let latest = Arc::clone(&self.state.hub().prices.borrow());
            self.on_prices(socket, &latest).await?;
        }
        if on && (named("balance") || named("positions")) {
            self.balance_dirty = true;
            self.last_balance = None;
            self.last_marks = None;
            self.has_open = true;
            self.on_refresh(socket).await?;
        }
        if on && named("risk") {
            self.last_risk = None;
            self.on_refresh(socket).await?;
        }
        if on && done.iter().any(|d| d.starts_with("candles.")) {
            let latest = Arc::clone(&hub.candles.borrow());
            self.on_candles(socket, &latest).await?;
        }
        Ok(())
    }

    fn toggle_candles(&mut self, hub: &Hub, i: usize, on: bool) {
        let had = self.candle_subs.contains(&i);
        self.candle_subs.retain(|c| *c != i);
        if on {
            self.candle_subs.push(i);
            self.sent_candles.remove(&i);
        }
        match (had, on) {
            (false, true) => hub.candle_subscribers.fetch_add(1, Ordering::Relaxed),
            (true, false) => hub.candle_subscribers.fetch_sub(1, Ordering::Relaxed),
            _ => 0,
        };
    }

    async fn on_prices(
        &mut self,
        socket: &mut WebSocket,
        latest: &[PriceEntry],
    ) -> Result<(), End> {
        if !self.subscribed.contains(&"prices") {
            return Ok(());
        }
        // Every changed market in one write: frames are queued, then flushed once.
        let mut queued = 0;
        for p in latest {
            if self.sent_prices.get(&p.market) == Some(&p.update_id) {
                continue;
            }
            self.sent_prices.insert(p.market.clone(), p.update_id);
            if let Some(m) = self.frame("prices", &p.json) {
                self.io(socket.feed(m)).await?;
                queued += 1;
            }
        }
        if queued > 0 {
            self.io(socket.flush()).await?;
            self.state.hub().stats.sent.fetch_add(queued, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The subscribed candle channels whose latest candle changed, numbered per channel.
    async fn on_candles(
        &mut self,
        socket: &mut WebSocket,
        latest: &[CandleEntry],
    ) -> Result<(), End> {
        for e in latest {
            if !self.candle_subs.contains(&e.channel)
                || self.sent_candles.get(&e.channel) == Some(&e.json)
            {
                continue;
            }
            self.sent_candles.insert(e.channel, Arc::clone(&e.json));
            let seq = self.candle_seq.entry(e.channel).or_insert(0);
            *seq += 1;
            let name = &self.state.hub().candle_channels[e.channel].0;
            let msg = format!(r#"{{"channel":"{name}","seq":{seq},"data":{}}}"#, e.json);
            self.send(socket, Message::Text(msg.into())).await?;
        }
        Ok(())
    }

    async fn on_private(&mut self, socket: &mut WebSocket, p: &Private) -> Result<(), End> {
        if self.account != Some(p.account) {
            return Ok(()); // another account's: never delivered
        }
        match &p.data {
            None => {
                self.balance_dirty = true;
                Ok(())
            }
            Some(data) if p.channel == "keys" => {
                let v = serde_json::from_str::<Value>(data).unwrap_or_default();
                let revoked = v["revoked"].as_u64();
                if revoked.is_some() && revoked == self.key.map(|k| k.0) {
                    return Err(End::Revoked);
                }
                let scope = serde_json::from_value::<SessionScope>(v["sessions"].clone()).ok();
                if let (Some(scope), Some(mine)) = (scope, self.session)
                    && scope.ends(mine)
                {
                    return Err(End::SignedOut);
                }
                Ok(())
            }
            Some(data) => {
                if p.channel == "positions" {
                    self.has_open = true; // worth asking for marks again
                }
                self.push(socket, p.channel, data).await
            }
        }
    }

    /// Balance when it changed (or was never sent), positions' marks every refresh.
    async fn on_refresh(&mut self, socket: &mut WebSocket) -> Result<(), End> {
        let Some(account) = self.account else { return Ok(()) };
        if self.subscribed.contains(&"balance") && self.balance_dirty {
            self.balance_dirty = false;
            if let Ok(r) = self.state.call(CommandKind::QueryAccount { account }).await
                && let Ok(ReplyData::Account(a)) = r.result
                && a.id == account
            {
                let v = serde_json::to_value(balance_dto(&a)).unwrap_or_default();
                if self.last_balance.as_ref() != Some(&v) {
                    self.last_balance = Some(v.clone());
                    self.push(socket, "balance", &v.to_string()).await?;
                }
            }
        }
        if self.subscribed.contains(&"risk") {
            match crate::routes::admin::risk_view(&self.state, account, super::RISK_TOP).await {
                Ok(risk) => {
                    let v = serde_json::to_value(risk).unwrap_or_default();
                    if self.last_risk.as_ref() != Some(&v) {
                        self.last_risk = Some(v.clone());
                        self.push(socket, "risk", &v.to_string()).await?;
                    }
                }
                Err(e) if e.code == "not_admin" => {
                    self.subscribed.retain(|c| *c != "risk");
                    return self
                        .error(socket, "forbidden", "the risk channel is for operators")
                        .await;
                }
                Err(_) => {} // the engine is slow or away: the next refresh tries again
            }
        }
        if self.subscribed.contains(&"positions") && self.has_open {
            let kind = CommandKind::QueryPositions { account, status: PositionStatus::Open };
            if let Ok(r) = self.state.call(kind).await {
                let marks: Vec<Value> = r.items.iter().filter_map(|i| match i {
                    Item::Position(v) if v.account == account => Some(json!({
                        "position_id": v.id.0.to_string(), "unrealized_pnl": money(v.unrealized_pnl),
                        "margin": money(v.margin)})),
                    _ => None,
                }).collect();
                // An account without open positions is not asked again until it opens one.
                self.has_open = !marks.is_empty();
                let v = json!({"event": "marks", "positions": marks});
                if self.last_marks.as_ref() != Some(&v) {
                    self.last_marks = Some(v.clone());
                    // uPnL moves with every price: the balance (equity) does too.
                    self.balance_dirty = true;
                    self.push(socket, "positions", &v.to_string()).await?;
                }
            }
        }
        Ok(())
    }
}
