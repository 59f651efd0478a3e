-- Every sort the listing offers is an index walk: an index per sort field, in the order the
-- listing reads it (the field, then `created_at` and `seq`, all in one direction, which an
-- index serves forwards and backwards), and the same behind `tool_id` for the listing of one
-- tool, whose order would otherwise follow the field across every other tool's rows first.
-- `created_at`, `tool_id` and `source_type` already had theirs (0004). Writes to the table wait
-- while the indexes are built, once, when a server first starts on this version.
CREATE INDEX invocations_major ON invocations (org_id, major, created_at, seq);
CREATE INDEX invocations_minor ON invocations (org_id, minor, created_at, seq);
CREATE INDEX invocations_patch ON invocations (org_id, patch, created_at, seq);
CREATE INDEX invocations_succeeded ON invocations (org_id, succeeded, created_at, seq);
CREATE INDEX invocations_tool_major ON invocations (org_id, tool_id, major, created_at, seq);
CREATE INDEX invocations_tool_minor ON invocations (org_id, tool_id, minor, created_at, seq);
CREATE INDEX invocations_tool_patch ON invocations (org_id, tool_id, patch, created_at, seq);
CREATE INDEX invocations_tool_succeeded ON invocations (org_id, tool_id, succeeded, created_at, seq);
CREATE INDEX invocations_tool_source ON invocations (org_id, tool_id, source_type, created_at, seq);

-- Per organization, the highest `seq` that retention has deleted: a continuation token naming a
-- number up to it names a record that was deleted, not a number that never was the
-- organization's, and the listing can still continue after it.
CREATE TABLE invocation_retention (
    org_id           TEXT PRIMARY KEY,
    deleted_through  BIGINT NOT NULL
);
