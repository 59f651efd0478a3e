-- Who made each invocation: the authenticated user and the organization that issued their
-- token, whatever source the call carried. Of the invocations recorded before, only direct calls
-- name their caller (in their source); the others keep NULL.
--
-- SQLite appends an added column after the last one, and `logs` must stay last (reading the other
-- columns must not walk the overflow pages of a long log). So the table is rebuilt with the same
-- rows, the same `seq` (the row ids of the search index, and what continuation tokens name) and
-- the same counter, so that no number is ever given twice.
CREATE TABLE invocations_new (
    seq                    INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id                 TEXT NOT NULL,
    id                     TEXT NOT NULL,
    tool_id                TEXT NOT NULL,
    major                  BIGINT NOT NULL,
    minor                  BIGINT NOT NULL,
    patch                  BIGINT NOT NULL,
    succeeded              BIGINT NOT NULL,
    output                 TEXT,
    exception_type         TEXT,
    exception_message      TEXT,
    exception_stack_trace  TEXT NOT NULL,
    duration_ms            BIGINT NOT NULL,
    inputs                 TEXT NOT NULL,
    source                 TEXT NOT NULL,
    source_type            TEXT NOT NULL,
    conversation_id        TEXT,
    simulation_run_id      TEXT,
    caller_org_id          TEXT,
    caller_user_id         TEXT,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL,
    logs                   TEXT NOT NULL
);
INSERT INTO invocations_new (
    seq, org_id, id, tool_id, major, minor, patch, succeeded, output, exception_type, exception_message,
    exception_stack_trace, duration_ms, inputs, source, source_type, conversation_id, simulation_run_id,
    caller_org_id, caller_user_id, created_at, updated_at, logs
)
SELECT
    seq, org_id, id, tool_id, major, minor, patch, succeeded, output, exception_type, exception_message,
    exception_stack_trace, duration_ms, inputs, source, source_type, conversation_id, simulation_run_id,
    CASE WHEN source_type = 'direct' THEN json_extract(source, '$.user_org_id') END,
    CASE WHEN source_type = 'direct' THEN json_extract(source, '$.user_id') END,
    created_at, updated_at, logs
FROM invocations
ORDER BY seq;
DELETE FROM sqlite_sequence WHERE name = 'invocations_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'invocations_new', seq FROM sqlite_sequence WHERE name = 'invocations';
DROP TABLE invocations;
ALTER TABLE invocations_new RENAME TO invocations;

CREATE UNIQUE INDEX invocations_id ON invocations (org_id, id);
CREATE INDEX invocations_created ON invocations (org_id, created_at, seq);
CREATE INDEX invocations_tool ON invocations (org_id, tool_id, created_at, seq);
CREATE INDEX invocations_source ON invocations (org_id, source_type, created_at, seq);
CREATE INDEX invocations_conversation ON invocations (org_id, conversation_id, created_at, seq)
    WHERE conversation_id IS NOT NULL;
CREATE INDEX invocations_simulation ON invocations (org_id, simulation_run_id, created_at, seq)
    WHERE simulation_run_id IS NOT NULL;
