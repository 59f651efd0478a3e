-- Immutable published versions of tools. JSON columns hold lists and the input schema as text.
CREATE TABLE tool_versions (
    org_id                   TEXT NOT NULL,
    id                       TEXT NOT NULL,
    tool_id                  TEXT NOT NULL,
    major                    BIGINT NOT NULL,
    minor                    BIGINT NOT NULL,
    patch                    BIGINT NOT NULL,
    required_envvars         TEXT NOT NULL,
    required_secret_envvars  TEXT NOT NULL,
    input_schema             TEXT NOT NULL,
    takes_context            BIGINT NOT NULL,
    entrypoint               TEXT NOT NULL,
    tool_commit_hash         TEXT NOT NULL,
    scaffold_hash            TEXT NOT NULL,
    project_directory        TEXT NOT NULL,
    lambda_version           BIGINT NOT NULL,
    content_digest           TEXT NOT NULL,
    environment_key          TEXT NOT NULL,
    build_id                 TEXT NOT NULL,
    deprecated               BIGINT NOT NULL DEFAULT 0,
    creator_org              TEXT NOT NULL,
    creator_user             TEXT NOT NULL,
    updated_by_org           TEXT NOT NULL,
    updated_by_user          TEXT NOT NULL,
    created_at               BIGINT NOT NULL,
    updated_at               BIGINT NOT NULL,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, tool_id) REFERENCES tools(org_id, id)
);
CREATE UNIQUE INDEX tool_versions_number ON tool_versions (org_id, tool_id, major, minor, patch);

-- One row per build (publish or test): its state and its log, kept for diagnosis.
CREATE TABLE builds (
    org_id       TEXT NOT NULL,
    id           TEXT NOT NULL,
    tool_id      TEXT,
    kind         TEXT NOT NULL,
    state        TEXT NOT NULL,
    message      TEXT NOT NULL,
    log          TEXT NOT NULL,
    created_by_org  TEXT NOT NULL,
    created_by_user TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    PRIMARY KEY (org_id, id)
);
CREATE INDEX builds_tool ON builds (org_id, tool_id, created_at);
