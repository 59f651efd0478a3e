-- Every recorded tool invocation. `seq` numbers rows in the order they were recorded: it breaks
-- ties in every sort and is the position a continuation token names. JSON columns hold text.
CREATE TABLE invocations (
    seq                    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
    logs                   TEXT NOT NULL,
    -- The distinct words of the searchable fields, weighted by field: A output, B exception
    -- message, C exception type, D stack trace. Written by the store (its own tokenization,
    -- shared with SQLite), so a query can name the fields it searches through weights.
    search                 TSVECTOR NOT NULL
);
CREATE UNIQUE INDEX invocations_id ON invocations (org_id, id);
-- Newest first within an organization: what search walks when a word is too common for the
-- text index to pay off.
CREATE INDEX invocations_recent ON invocations (org_id, seq);
-- The default order, and the common filters in that order, so that pages are index walks.
CREATE INDEX invocations_created ON invocations (org_id, created_at, seq);
CREATE INDEX invocations_tool ON invocations (org_id, tool_id, created_at, seq);
CREATE INDEX invocations_source ON invocations (org_id, source_type, created_at, seq);
CREATE INDEX invocations_conversation ON invocations (org_id, conversation_id, created_at, seq)
    WHERE conversation_id IS NOT NULL;
CREATE INDEX invocations_simulation ON invocations (org_id, simulation_run_id, created_at, seq)
    WHERE simulation_run_id IS NOT NULL;
-- New entries wait in a pending list that every search reads in full until it is merged into the
-- index; a small list keeps that read short at the price of more frequent merges on insert.
CREATE INDEX invocations_search ON invocations USING gin (search) WITH (gin_pending_list_limit = 512);
