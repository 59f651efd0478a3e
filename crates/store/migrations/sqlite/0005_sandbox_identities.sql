-- Each organization's number among sandbox identities: its tools run, and its builds work, as
-- host uids derived from it, so no two organizations ever share one.
CREATE TABLE sandbox_identities (
    org_id  TEXT PRIMARY KEY REFERENCES organizations(id),
    slot    BIGINT NOT NULL UNIQUE
);
