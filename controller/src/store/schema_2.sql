CREATE TABLE revisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    git_commit TEXT,
    summary TEXT NOT NULL,
    errors TEXT NOT NULL,
    applied INTEGER NOT NULL
);
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    host TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);
CREATE TABLE credentials (
    hash TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    host TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE agents (
    namespace TEXT NOT NULL,
    host TEXT NOT NULL,
    applied_version INTEGER,
    applied_digest TEXT,
    rejected TEXT,
    agent_version TEXT,
    restic_version TEXT,
    protocol_version INTEGER,
    os TEXT,
    arch TEXT,
    last_seen TEXT,
    PRIMARY KEY (namespace, host)
);
CREATE TABLE runs (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    host TEXT NOT NULL,
    job TEXT NOT NULL,
    schedule TEXT,
    operation TEXT NOT NULL,
    repo TEXT,
    phase TEXT NOT NULL,
    requested INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    scheduled_at TEXT,
    started_at TEXT,
    finished_at TEXT,
    exit_code INTEGER,
    snapshot_id TEXT,
    summary TEXT,
    progress TEXT,
    reason TEXT,
    message TEXT,
    log_tail TEXT,
    PRIMARY KEY (kind, namespace, name),
    UNIQUE (namespace, host, job)
);
CREATE TABLE run_logs (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name, seq, idx)
);
CREATE TABLE run_history (
    namespace TEXT NOT NULL,
    host TEXT NOT NULL,
    name TEXT NOT NULL,
    schedule TEXT,
    operation TEXT NOT NULL,
    phase TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT NOT NULL,
    data_added INTEGER,
    PRIMARY KEY (namespace, host, name)
);
CREATE INDEX run_history_by_time ON run_history (finished_at);
CREATE TABLE repo_sizes (
    namespace TEXT NOT NULL,
    repo TEXT NOT NULL,
    at TEXT NOT NULL,
    total_size INTEGER NOT NULL,
    uncompressed_size INTEGER,
    snapshots INTEGER NOT NULL
);
CREATE INDEX repo_sizes_by_repo ON repo_sizes (namespace, repo, at);
CREATE TABLE repo_snapshots (
    namespace TEXT NOT NULL,
    repo TEXT NOT NULL,
    host TEXT NOT NULL,
    count INTEGER NOT NULL,
    latest TEXT,
    PRIMARY KEY (namespace, repo, host)
);
CREATE TABLE objects (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    uid TEXT NOT NULL,
    generation INTEGER NOT NULL,
    spec_digest TEXT NOT NULL,
    created_at TEXT NOT NULL,
    status TEXT,
    resource_version INTEGER NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
