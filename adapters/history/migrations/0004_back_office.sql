-- The audit log (GET /api/v1/admin/audit): every operator's action, newest first, read from
-- `changes` by kind. Nothing in the API writes to `changes` but the history writer, which only
-- appends what the engine journaled.
CREATE INDEX changes_kind ON changes (kind, seq, n);

-- The daily report (GET /api/v1/admin/reports/daily) sums every account's statement rows of a
-- day range.
CREATE INDEX ledger_time ON ledger (at_ns);
