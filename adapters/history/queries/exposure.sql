-- Open exposure per market and side: positions, quantity (in steps of the market's
-- qty_decimals) and locked margin in USDC.
SELECT m.symbol, p.side, COUNT(*) AS positions, SUM(p.quantity) AS quantity_steps,
       m.qty_decimals, SUM(p.margin) / 1e6 AS margin_usdc
FROM positions p JOIN markets m ON m.market = p.market
WHERE p.status = 'open'
GROUP BY m.symbol, p.side, m.qty_decimals
ORDER BY m.symbol, p.side
