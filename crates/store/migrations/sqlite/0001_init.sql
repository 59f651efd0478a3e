CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, id)
);

-- A grant of a role in org_id to a user who may belong to another organization (user_org_id).
CREATE TABLE role_grants (
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    user_org_id TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    role        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_org_id, user_id, role)
);

CREATE TABLE api_keys (
    org_id        TEXT NOT NULL REFERENCES organizations(id),
    id            TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    description   TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    revoked_at    BIGINT,
    PRIMARY KEY (org_id, id)
);

CREATE TABLE tools (
    org_id          TEXT NOT NULL REFERENCES organizations(id),
    id              TEXT NOT NULL,
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    deprecated      BIGINT NOT NULL DEFAULT 0,
    tags_json       TEXT NOT NULL,
    creator_org     TEXT NOT NULL,
    creator_user    TEXT NOT NULL,
    updated_by_org  TEXT NOT NULL,
    updated_by_user TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (org_id, id)
);
-- Names are unique among live tools only: deprecating a tool frees its name.
CREATE UNIQUE INDEX tools_live_name ON tools (org_id, name) WHERE deprecated = 0;
CREATE INDEX tools_created ON tools (org_id, created_at, id);
CREATE INDEX tools_name ON tools (org_id, name);

CREATE TABLE tool_tags (
    org_id   TEXT NOT NULL,
    tool_id  TEXT NOT NULL,
    key      TEXT NOT NULL,
    value    TEXT,
    PRIMARY KEY (org_id, tool_id, key),
    FOREIGN KEY (org_id, tool_id) REFERENCES tools(org_id, id)
);
CREATE INDEX tool_tags_key ON tool_tags (org_id, key, value);

-- value holds plaintext bytes for ordinary variables and nonce||ciphertext for secrets.
-- deleted_at marks a tombstone: the name cannot be inserted again until the window passes.
CREATE TABLE envvars (
    org_id      TEXT NOT NULL,
    tool_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    is_secret   BIGINT NOT NULL,
    value       BLOB NOT NULL,
    key_id      TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    deleted_at  BIGINT,
    PRIMARY KEY (org_id, tool_id, name),
    FOREIGN KEY (org_id, tool_id) REFERENCES tools(org_id, id)
);

CREATE TABLE tool_operation_locks (
    org_id      TEXT NOT NULL,
    tool_id     TEXT NOT NULL,
    holder      TEXT NOT NULL,
    operation   TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, tool_id)
);

CREATE TABLE rate_limit_hits (
    bucket        TEXT NOT NULL,
    window_start  BIGINT NOT NULL,
    hits          BIGINT NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
