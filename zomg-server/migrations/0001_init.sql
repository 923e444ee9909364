-- Initial schema. JSON columns hold maps and lists that are always read and written whole.
CREATE TABLE boxes (
    id            TEXT PRIMARY KEY,
    project       TEXT NOT NULL,
    name          TEXT NOT NULL,
    status        TEXT NOT NULL,
    status_reason TEXT,
    base          TEXT NOT NULL,
    port          INTEGER,
    tags          TEXT NOT NULL DEFAULT '{}',
    environment   TEXT NOT NULL DEFAULT '{}',
    data_mounts   TEXT NOT NULL DEFAULT '[]',
    millicpus     INTEGER NOT NULL,
    ram_mb        INTEGER NOT NULL,
    storage_gb    INTEGER,
    termination_grace_seconds INTEGER NOT NULL,
    forked_from   TEXT,
    published_domains TEXT NOT NULL DEFAULT '[]',
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (project, name)
);

CREATE TABLE bases (
    alias      TEXT NOT NULL,
    tag        TEXT NOT NULL,
    source     TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (alias, tag)
);

CREATE TABLE volumes (
    id           TEXT PRIMARY KEY,
    project      TEXT NOT NULL,
    name         TEXT NOT NULL,
    size_gb      INTEGER,
    owner_box_id TEXT,
    created_at   TEXT NOT NULL,
    UNIQUE (project, name)
);

CREATE TABLE ops (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    target     TEXT NOT NULL,
    label      TEXT NOT NULL,
    state      TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX ops_by_target ON ops (kind, target);
CREATE INDEX ops_by_label ON ops (kind, label);
CREATE INDEX ops_pending ON ops (state) WHERE state = 'pending';
