-- The insurance fund and the house balance at the end of every hour that moved them.
SELECT hour, insurance_usdc, house_usdc FROM (
    SELECT at_ns / 3600000000000 AS hour,
           insurance_fund / 1e6 AS insurance_usdc,
           house_balance / 1e6 AS house_usdc,
           ROW_NUMBER() OVER (PARTITION BY at_ns / 3600000000000 ORDER BY seq DESC, n DESC) AS r
    FROM house_ledger
) t
WHERE r = 1
ORDER BY hour
