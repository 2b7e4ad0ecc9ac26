-- The engine's history, projected from its numbered state changes (engine_core::event::Change).
-- One schema for SQLite and PostgreSQL: BIGINT and TEXT only. Money is in micro-USDC, prices in
-- ticks and quantities in steps of the market's decimals (see `markets`). Times are ns since the
-- epoch (command receive time).

-- What has been written: every change up to (seq, n) and nothing after. Updated in the same
-- transaction as the rows, which is what makes the writer exactly-once.
CREATE TABLE history_cursor (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    n BIGINT NOT NULL,
    insurance_fund BIGINT NOT NULL,
    house_balance BIGINT NOT NULL
);
INSERT INTO history_cursor (id, seq, n, insurance_fund, house_balance) VALUES (1, 0, -1, 0, 0);

CREATE TABLE markets (
    market BIGINT PRIMARY KEY,
    symbol TEXT NOT NULL,
    price_decimals BIGINT NOT NULL,
    qty_decimals BIGINT NOT NULL
);

-- Every change as the engine reported it (JSON body), for audits; the tables below derive from it.
CREATE TABLE changes (
    seq BIGINT NOT NULL,
    n BIGINT NOT NULL,
    at_ns BIGINT NOT NULL,
    kind TEXT NOT NULL,
    account_id BIGINT NOT NULL,
    position_id BIGINT,
    body TEXT NOT NULL,
    PRIMARY KEY (seq, n)
);
CREATE INDEX changes_account ON changes (account_id, seq, n);

-- balance = available + locked margin (cash, without unrealized PnL).
CREATE TABLE accounts (
    account_id BIGINT PRIMARY KEY,
    created_at_ns BIGINT NOT NULL,
    balance BIGINT NOT NULL,
    locked_margin BIGINT NOT NULL
);

-- Every position ever opened, and every closed part of one (its own id, `of_position` the
-- parent). Open rows keep quantity and margin current; the engine is the authority for them.
CREATE TABLE positions (
    position_id BIGINT PRIMARY KEY,
    of_position BIGINT NOT NULL,
    account_id BIGINT NOT NULL,
    market BIGINT NOT NULL,
    side TEXT NOT NULL,
    status TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    entry_price BIGINT NOT NULL,
    margin BIGINT NOT NULL,
    leverage BIGINT NOT NULL,
    open_fee BIGINT NOT NULL,
    liquidation_price BIGINT NOT NULL,
    take_profit BIGINT,
    stop_loss BIGINT,
    opened_at_ns BIGINT NOT NULL,
    exit_price BIGINT,
    realized_pnl BIGINT,
    close_fee BIGINT,
    payout BIGINT,
    close_reason TEXT,
    bad_debt BIGINT,
    insurance_paid BIGINT,
    house_paid BIGINT,
    closed_at_ns BIGINT,
    close_seq BIGINT,
    close_n BIGINT
);
CREATE INDEX positions_closed ON positions (account_id, status, close_seq, close_n);
CREATE INDEX positions_market ON positions (market, status);

-- The statement: one row per movement of an account's balance, with the balance after it.
-- kind: deposit, withdrawal, open_fee, realized_pnl, close_fee, liquidation_fee, loss_forgiven
-- (a loss beyond the margin that the insurance fund or the house paid instead of the trader).
CREATE TABLE ledger (
    seq BIGINT NOT NULL,
    n BIGINT NOT NULL,
    account_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    amount BIGINT NOT NULL,
    balance BIGINT NOT NULL,
    position_id BIGINT,
    at_ns BIGINT NOT NULL,
    PRIMARY KEY (seq, n)
);
CREATE INDEX ledger_account ON ledger (account_id, seq, n);

-- The broker's side: insurance fund and house balance after every change that moved them.
-- kind: open_fee, close, liquidation.
CREATE TABLE house_ledger (
    seq BIGINT NOT NULL,
    n BIGINT NOT NULL,
    kind TEXT NOT NULL,
    position_id BIGINT NOT NULL,
    insurance_delta BIGINT NOT NULL,
    house_delta BIGINT NOT NULL,
    insurance_fund BIGINT NOT NULL,
    house_balance BIGINT NOT NULL,
    at_ns BIGINT NOT NULL,
    PRIMARY KEY (seq, n)
);
