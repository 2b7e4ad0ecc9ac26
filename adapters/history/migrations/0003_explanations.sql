-- A position's changes, for its explanations (GET /api/v1/positions/{id}/explain).
CREATE INDEX changes_position ON changes (position_id, seq, n);
