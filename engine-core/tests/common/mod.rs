//! A small driver around `Engine::apply` for readable tests.
#![allow(dead_code)]

use engine_core::prelude::*;

pub const BTC: MarketId = MarketId(0);
pub const ETH: MarketId = MarketId(1);
pub const T0: u64 = 1_700_000_000_000_000_000;

/// `p` whole USD as BTC/ETH/SOL price ticks (2 decimals).
pub fn usd(p: i64) -> Price {
    Price(p * 100)
}

/// `n` whole BTC as quantity steps (5 decimals).
pub fn btc(n: i64) -> Qty {
    Qty(n * 100_000)
}

pub fn usdc(n: i64) -> Usdc {
    Usdc::from_whole(n)
}

pub struct Harness {
    pub engine: Engine,
    pub out: Vec<Output>,
    pub now: u64,
    next_rid: u64,
    update_ids: Vec<u64>,
    /// Every command applied, in order: the input log for determinism checks.
    pub log: Vec<Command>,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with(EngineConfig::default())
    }

    /// Test configs keep the default markets and limits, but reserve less: `check_conservation`
    /// runs after every command and walks the whole (reserved) position map.
    pub fn small(cfg: EngineConfig) -> EngineConfig {
        EngineConfig { max_open_positions: 20_000, max_accounts: 10_000, ..cfg }
    }

    pub fn with(cfg: EngineConfig) -> Harness {
        let n = cfg.markets.len();
        Harness {
            engine: Engine::new(Harness::small(cfg)).expect("valid config"),
            out: Vec::new(),
            now: T0,
            next_rid: 1,
            update_ids: vec![0; n],
            log: Vec::new(),
        }
    }

    /// Applies `kind` with a fresh request id; returns the reply and keeps every output in `out`.
    pub fn run(&mut self, kind: CommandKind) -> Result<ReplyData, Reason> {
        let rid = RequestId(self.next_rid);
        self.next_rid += 1;
        let start = self.out.len();
        let cmd = Command::new(rid, self.now, kind);
        self.log.push(cmd);
        self.engine.apply(&cmd, &mut self.out);
        let replies: Vec<_> = self.out[start..]
            .iter()
            .filter_map(|o| match o {
                Output::Reply { request_id, result, .. } if *request_id == rid => Some(*result),
                _ => None,
            })
            .collect();
        assert_eq!(replies.len(), 1, "exactly one reply per request");
        assert!(
            matches!(self.out.last(), Some(Output::Reply { request_id, .. }) if *request_id == rid),
            "the reply is the command's last output"
        );
        self.engine.check_conservation().expect("conservation after every command");
        replies[0]
    }

    /// Moves command time forward by `ns`.
    pub fn advance(&mut self, ns: u64) {
        self.now += ns;
    }

    /// Events emitted since output index `from`.
    pub fn events_since(&self, from: usize) -> Vec<Event> {
        self.out[from..]
            .iter()
            .filter_map(|o| if let Output::Event(e) = o { Some(*e) } else { None })
            .collect()
    }

    pub fn account(&mut self, login: &str) -> AccountId {
        let kind = CommandKind::CreateAccount {
            login: Login::new(login).unwrap(),
            credential: Credential::new("hash").unwrap(),
        };
        match self.run(kind) {
            Ok(ReplyData::AccountCreated { account }) => account,
            other => panic!("create account: {other:?}"),
        }
    }

    pub fn deposit(&mut self, account: AccountId, amount: Usdc) -> Result<ReplyData, Reason> {
        self.run(CommandKind::Deposit { account, amount, key: None })
    }

    /// A tick with the next update id for the market.
    pub fn tick(&mut self, market: MarketId, bid: Price, ask: Price) -> Result<ReplyData, Reason> {
        let i = usize::from(market.0);
        if i < self.update_ids.len() {
            self.update_ids[i] += 1;
        }
        let update_id = self.update_ids.get(i).copied().unwrap_or(1);
        self.run(CommandKind::PriceTick(Tick { market, bid, ask, update_id, exchange_time_us: 0 }))
    }

    /// Tick with bid = ask = p.
    pub fn price(&mut self, market: MarketId, p: Price) {
        self.tick(market, p, p).expect("tick accepted");
    }

    pub fn open_req(
        &self,
        account: AccountId,
        side: Side,
        leverage: u32,
        size: Size,
    ) -> OpenRequest {
        OpenRequest::new(account, BTC, side, leverage, size)
    }

    pub fn open(&mut self, req: OpenRequest) -> Result<PositionView, Reason> {
        match self.run(CommandKind::OpenPosition(req))? {
            ReplyData::Opened(v) => Ok(v),
            other => panic!("open replied {other:?}"),
        }
    }

    pub fn close(
        &mut self,
        account: AccountId,
        position: PositionId,
        quantity: Option<Qty>,
    ) -> Result<PositionView, Reason> {
        let quantity = quantity.map(CloseSize::Steps);
        match self.run(CommandKind::ClosePosition { account, position, quantity, key: None })? {
            ReplyData::Closed(v) => Ok(v),
            other => panic!("close replied {other:?}"),
        }
    }

    pub fn balance(&mut self, account: AccountId) -> AccountView {
        match self.run(CommandKind::QueryAccount { account }) {
            Ok(ReplyData::Account(a)) => a,
            other => panic!("account query: {other:?}"),
        }
    }

    pub fn position(&mut self, account: AccountId, position: PositionId) -> PositionView {
        match self.run(CommandKind::QueryPosition { account, position }) {
            Ok(ReplyData::Position(v)) => v,
            other => panic!("position query: {other:?}"),
        }
    }

    pub fn summary(&self) -> StateSummary {
        self.engine.summary()
    }

    /// The business state: the snapshot without the request-id window (which records every
    /// request, rejected ones included, so a redelivery is answered the same way) and counters.
    pub fn business(&self) -> engine_core::snapshot::EngineSnapshot {
        let mut s = self.engine.snapshot();
        s.requests.clear();
        s.max_request_id = 0;
        s.counters = Counters::default();
        // Every state-changing command takes a journal sequence, applied or rejected.
        s.seq = 0;
        s
    }
}

/// The state changes recorded since output index `from`.
pub fn changes_since(h: &Harness, from: usize) -> Vec<Change> {
    h.out[from..]
        .iter()
        .filter_map(|o| if let Output::Change(c) = o { Some(c.change) } else { None })
        .collect()
}

/// The list items emitted since output index `from`.
pub fn items_since(h: &Harness, from: usize) -> Vec<Item> {
    h.out[from..]
        .iter()
        .filter_map(|o| if let Output::Item { item, .. } = o { Some(*item) } else { None })
        .collect()
}

/// The closed positions reported by events since `from`.
pub fn closed_events(events: &[Event]) -> Vec<PositionView> {
    events
        .iter()
        .filter_map(|e| if let Event::PositionClosed(v) = e { Some(*v) } else { None })
        .collect()
}
