-- Which toolsmith user pushed each commit that arrived through the service's git endpoint.
CREATE TABLE pushed_commits (
    org_id       TEXT NOT NULL REFERENCES organizations(id),
    sha          TEXT NOT NULL,
    user_org_id  TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    pushed_at    BIGINT NOT NULL,
    PRIMARY KEY (org_id, sha)
);
