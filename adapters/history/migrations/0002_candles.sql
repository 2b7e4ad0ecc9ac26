-- OHLC of the engine's applied bid (prices in ticks of the market's price_decimals), per market
-- and span (1m 5m 15m 1h 4h 1d), buckets aligned to UTC; built from every applied tick.
CREATE TABLE candles (
    market BIGINT NOT NULL,
    span TEXT NOT NULL,
    start_ns BIGINT NOT NULL,
    open BIGINT NOT NULL,
    high BIGINT NOT NULL,
    low BIGINT NOT NULL,
    close BIGINT NOT NULL,
    ticks BIGINT NOT NULL,
    PRIMARY KEY (market, span, start_ns)
);
