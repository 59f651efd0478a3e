-- Who made each invocation: the authenticated user and the organization that issued their
-- token, whatever source the call carried. Of the invocations recorded before, only direct calls
-- name their caller (in their source); the others keep NULL. (PostgreSQL keeps long logs out of
-- line, so the column order that SQLite's table must keep does not matter here.)
ALTER TABLE invocations ADD COLUMN caller_org_id TEXT, ADD COLUMN caller_user_id TEXT;
UPDATE invocations
SET caller_org_id = source::json ->> 'user_org_id', caller_user_id = source::json ->> 'user_id'
WHERE source_type = 'direct';
