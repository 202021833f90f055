-- Networks, specifications, versions, tasks and API keys. Ids of user resources are never reused.
CREATE TABLE networks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    organisation TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    metadata TEXT NOT NULL DEFAULT '{}',
    framework TEXT NOT NULL,
    preprocessing TEXT NOT NULL,
    signature TEXT NOT NULL,
    files TEXT NOT NULL DEFAULT '[]',
    state TEXT NOT NULL,
    task_id TEXT NOT NULL,
    create_date TEXT NOT NULL,
    update_date TEXT NOT NULL
);
CREATE INDEX networks_organisation ON networks (organisation, id);

CREATE TABLE specifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    organisation TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    metadata TEXT NOT NULL DEFAULT '{}',
    outputs TEXT NOT NULL,
    current_version_id TEXT,
    update_date TEXT NOT NULL
);
CREATE INDEX specifications_organisation ON specifications (organisation, id);

CREATE TABLE versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    organisation TEXT NOT NULL,
    spec_id INTEGER NOT NULL,
    network_id TEXT NOT NULL,
    post_processings TEXT NOT NULL,
    update_date TEXT NOT NULL
);
CREATE INDEX versions_spec ON versions (spec_id, id);
CREATE INDEX versions_network ON versions (network_id);

CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    organisation TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    data TEXT,
    date_created TEXT NOT NULL,
    date_updated TEXT NOT NULL
);
CREATE INDEX tasks_finished ON tasks (status, date_updated);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    organisation TEXT NOT NULL,
    kind TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
