-- Every recorded tool invocation. `seq` numbers rows in the order they were recorded and is never
-- reused (AUTOINCREMENT): it breaks ties in every sort, is the position a continuation token
-- names, and is the row id of the search index. JSON columns hold text.
CREATE TABLE invocations (
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
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL,
    -- Last, so that reading the other columns never touches the pages of a long log.
    logs                   TEXT NOT NULL
);
CREATE UNIQUE INDEX invocations_id ON invocations (org_id, id);
-- The default order, and the common filters in that order, so that pages are index walks.
CREATE INDEX invocations_created ON invocations (org_id, created_at, seq);
CREATE INDEX invocations_tool ON invocations (org_id, tool_id, created_at, seq);
CREATE INDEX invocations_source ON invocations (org_id, source_type, created_at, seq);
CREATE INDEX invocations_conversation ON invocations (org_id, conversation_id, created_at, seq)
    WHERE conversation_id IS NOT NULL;
CREATE INDEX invocations_simulation ON invocations (org_id, simulation_run_id, created_at, seq)
    WHERE simulation_run_id IS NOT NULL;

-- Full-text index of the four searchable fields, row id = `seq`. Contentless: the store writes
-- the distinct words of each field (its own tokenization, shared with PostgreSQL) in the same
-- transaction as the row, so the index holds no second copy of the text.
CREATE VIRTUAL TABLE invocations_fts USING fts5 (
    output,
    exception_message,
    exception_type,
    exception_stack_trace,
    content = '',
    contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 0'
);
