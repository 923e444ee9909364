//! SQLite implementation of [`super::Store`].
//!
//! One connection behind a mutex: every call is a short statement, and SQLite serialises
//! writers anyway. WAL mode with `synchronous = NORMAL` keeps commits off fsync (a crash
//! can lose the last commits, never corrupt the database); reconciliation on start repairs
//! any gap between the store and the backends.

use std::path::Path;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{
    BaseRecord, BoxFilter, BoxRecord, MountRecord, OpKind, OpRecord, OpState, Store, StoreError,
    StoreResult, VolumeRecord,
};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[include_str!("../../migrations/0001_init.sql")];

/// The SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        Self::init(conn)
    }

    /// An in-memory database, for tests.
    pub fn in_memory() -> StoreResult<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> StoreResult<Self> {
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            conn.execute_batch(&format!(
                "BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;",
                i + 1
            ))?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (statements are
        // atomic), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn parse_ts(what: &str, s: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(what, e))
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.to_owned(),
        message: e.to_string(),
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("maps and lists of strings always serialise")
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

/// Stored form of a mount (the volume id is internal; the rest is the wire form).
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredMount {
    volume_id: String,
    name: String,
    path: String,
    read_only: bool,
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(err, _)
            if err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || err.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

fn insert_err(what: String) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(what)
        } else {
            StoreError::Db(e)
        }
    }
}

const BOX_COLUMNS: &str = "id, project, name, status, status_reason, base, port, tags, environment, \
     data_mounts, millicpus, ram_mb, storage_gb, termination_grace_seconds, forked_from, \
     published_domains, created_at, updated_at";

/// The columns of a box row, read as stored; [`decode_box`] turns them into a record so
/// that decode errors can name the box.
struct RawBox {
    id: String,
    project: String,
    name: String,
    status: String,
    status_reason: Option<String>,
    base: String,
    port: Option<u16>,
    tags: String,
    environment: String,
    data_mounts: String,
    millicpus: u32,
    ram_mb: u64,
    storage_gb: Option<u64>,
    grace: u32,
    forked_from: Option<String>,
    published_domains: String,
    created_at: String,
    updated_at: String,
}

fn read_box_row(r: &Row<'_>) -> rusqlite::Result<RawBox> {
    Ok(RawBox {
        id: r.get(0)?,
        project: r.get(1)?,
        name: r.get(2)?,
        status: r.get(3)?,
        status_reason: r.get(4)?,
        base: r.get(5)?,
        port: r.get(6)?,
        tags: r.get(7)?,
        environment: r.get(8)?,
        data_mounts: r.get(9)?,
        millicpus: r.get(10)?,
        ram_mb: r.get(11)?,
        storage_gb: r.get(12)?,
        grace: r.get(13)?,
        forked_from: r.get(14)?,
        published_domains: r.get(15)?,
        created_at: r.get(16)?,
        updated_at: r.get(17)?,
    })
}

fn decode_box(raw: RawBox) -> StoreResult<BoxRecord> {
    let what = format!("box {}", raw.id);
    let mounts: Vec<StoredMount> = from_json(&what, &raw.data_mounts)?;
    let data_mounts = mounts
        .into_iter()
        .map(|m| {
            Ok(MountRecord {
                volume_id: m.volume_id,
                name: m.name.parse().map_err(|e| corrupt(&what, e))?,
                path: m.path,
                read_only: m.read_only,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(BoxRecord {
        project: raw.project.parse().map_err(|e| corrupt(&what, e))?,
        name: raw.name.parse().map_err(|e| corrupt(&what, e))?,
        status: raw.status.parse().map_err(|e| corrupt(&what, e))?,
        status_reason: raw.status_reason,
        base: raw.base,
        port: raw.port,
        tags: from_json(&what, &raw.tags)?,
        environment: from_json(&what, &raw.environment)?,
        data_mounts,
        millicpus: raw.millicpus,
        ram_mb: raw.ram_mb,
        storage_gb: raw.storage_gb,
        termination_grace_seconds: raw.grace,
        forked_from: raw.forked_from,
        published_domains: from_json(&what, &raw.published_domains)?,
        created_at: parse_ts(&what, &raw.created_at)?,
        updated_at: parse_ts(&what, &raw.updated_at)?,
        id: raw.id,
    })
}

fn mounts_json(b: &BoxRecord) -> String {
    json(
        &b.data_mounts
            .iter()
            .map(|m| StoredMount {
                volume_id: m.volume_id.clone(),
                name: m.name.to_string(),
                path: m.path.clone(),
                read_only: m.read_only,
            })
            .collect::<Vec<_>>(),
    )
}

/// The columns of a volume row, as stored.
struct RawVolume {
    id: String,
    project: String,
    name: String,
    size_gb: Option<u64>,
    owner_box_id: Option<String>,
    created_at: String,
}

fn read_volume(r: &Row<'_>) -> rusqlite::Result<RawVolume> {
    Ok(RawVolume {
        id: r.get(0)?,
        project: r.get(1)?,
        name: r.get(2)?,
        size_gb: r.get(3)?,
        owner_box_id: r.get(4)?,
        created_at: r.get(5)?,
    })
}

fn decode_volume(raw: RawVolume) -> StoreResult<VolumeRecord> {
    let what = format!("volume {}", raw.id);
    Ok(VolumeRecord {
        project: raw.project.parse().map_err(|e| corrupt(&what, e))?,
        name: raw.name.parse().map_err(|e| corrupt(&what, e))?,
        size_gb: raw.size_gb,
        owner_box_id: raw.owner_box_id,
        created_at: parse_ts(&what, &raw.created_at)?,
        id: raw.id,
    })
}

fn op_state_str(s: OpState) -> &'static str {
    match s {
        OpState::Pending => "pending",
        OpState::Done => "done",
        OpState::Failed => "failed",
    }
}

type OpRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    String,
    String,
);

fn read_op(r: &Row<'_>) -> rusqlite::Result<OpRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

fn decode_op(
    (id, kind, target, label, state, attempts, last_error, created, updated): OpRow,
) -> StoreResult<OpRecord> {
    let what = format!("operation {id}");
    let kind = match kind.as_str() {
        "delete_box" => OpKind::DeleteBox,
        other => return Err(corrupt(&what, format!("unknown kind {other:?}"))),
    };
    let state = match state.as_str() {
        "pending" => OpState::Pending,
        "done" => OpState::Done,
        "failed" => OpState::Failed,
        other => return Err(corrupt(&what, format!("unknown state {other:?}"))),
    };
    Ok(OpRecord {
        kind,
        target,
        label,
        state,
        attempts: u32::try_from(attempts).map_err(|e| corrupt(&what, e))?,
        last_error,
        created_at: parse_ts(&what, &created)?,
        updated_at: parse_ts(&what, &updated)?,
        id,
    })
}

const OP_COLUMNS: &str =
    "id, kind, target, label, state, attempts, last_error, created_at, updated_at";

impl Store for SqliteStore {
    fn insert_box(&self, b: &BoxRecord) -> StoreResult<()> {
        self.conn()
            .execute(
                &format!("INSERT INTO boxes ({BOX_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"),
                params![
                    b.id,
                    b.project.as_str(),
                    b.name.as_str(),
                    b.status.as_str(),
                    b.status_reason,
                    b.base,
                    b.port,
                    json(&b.tags),
                    json(&b.environment),
                    mounts_json(b),
                    b.millicpus,
                    b.ram_mb,
                    b.storage_gb,
                    b.termination_grace_seconds,
                    b.forked_from,
                    json(&b.published_domains),
                    ts(&b.created_at),
                    ts(&b.updated_at),
                ],
            )
            .map_err(insert_err(format!("box {}:{}", b.project, b.name)))?;
        Ok(())
    }

    fn update_box(&self, b: &BoxRecord) -> StoreResult<()> {
        let n = self.conn().execute(
            "UPDATE boxes SET status = ?2, status_reason = ?3, base = ?4, port = ?5, tags = ?6, \
             environment = ?7, data_mounts = ?8, millicpus = ?9, ram_mb = ?10, storage_gb = ?11, \
             termination_grace_seconds = ?12, forked_from = ?13, published_domains = ?14, \
             updated_at = ?15 WHERE id = ?1",
            params![
                b.id,
                b.status.as_str(),
                b.status_reason,
                b.base,
                b.port,
                json(&b.tags),
                json(&b.environment),
                mounts_json(b),
                b.millicpus,
                b.ram_mb,
                b.storage_gb,
                b.termination_grace_seconds,
                b.forked_from,
                json(&b.published_domains),
                ts(&b.updated_at),
            ],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("box {}", b.id)));
        }
        Ok(())
    }

    fn delete_box(&self, id: &str) -> StoreResult<()> {
        self.conn()
            .execute("DELETE FROM boxes WHERE id = ?1", [id])?;
        Ok(())
    }

    fn get_box(&self, project: &str, name: &str) -> StoreResult<Option<BoxRecord>> {
        let row = self
            .conn()
            .query_row(
                &format!("SELECT {BOX_COLUMNS} FROM boxes WHERE project = ?1 AND name = ?2"),
                [project, name],
                read_box_row,
            )
            .optional()?;
        row.map(decode_box).transpose()
    }

    fn get_box_by_id(&self, id: &str) -> StoreResult<Option<BoxRecord>> {
        let row = self
            .conn()
            .query_row(
                &format!("SELECT {BOX_COLUMNS} FROM boxes WHERE id = ?1"),
                [id],
                read_box_row,
            )
            .optional()?;
        row.map(decode_box).transpose()
    }

    fn list_boxes(&self, filter: &BoxFilter) -> StoreResult<Vec<BoxRecord>> {
        let mut sql = format!("SELECT {BOX_COLUMNS} FROM boxes WHERE 1 = 1");
        let mut args: Vec<String> = Vec::new();
        // Adds a bound value and returns its placeholder.
        let mut bind = |v: &str| {
            args.push(v.to_owned());
            format!("?{}", args.len())
        };
        if let Some(p) = &filter.project {
            sql += &format!(" AND project = {}", bind(p.as_str()));
        }
        if let Some(prefix) = &filter.prefix {
            // substr rather than LIKE: user input may contain LIKE wildcards.
            let ph = bind(prefix);
            sql += &format!(" AND substr(name, 1, length({ph})) = {ph}");
        }
        for (k, v) in &filter.tags {
            // Tag keys are validated to [a-z0-9_.-], so quoting them in the JSON path is safe.
            sql += &format!(" AND json_extract(tags, '$.\"{k}\"') = {}", bind(v));
        }
        if let Some((p, n)) = &filter.after {
            let (p, n) = (bind(p), bind(n));
            sql += &format!(" AND (project, name) > ({p}, {n})");
        }
        sql.push_str(" ORDER BY project, name");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), read_box_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        drop(stmt);
        drop(conn);
        rows.into_iter().map(decode_box).collect()
    }

    fn insert_base(&self, b: &BaseRecord) -> StoreResult<()> {
        self.conn()
            .execute(
                "INSERT INTO bases (alias, tag, source, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![b.alias, b.tag, b.source, ts(&b.created_at)],
            )
            .map_err(insert_err(format!("base {}:{}", b.alias, b.tag)))?;
        Ok(())
    }

    fn get_base(&self, alias: &str, tag: &str) -> StoreResult<Option<BaseRecord>> {
        let row = self
            .conn()
            .query_row(
                "SELECT alias, tag, source, created_at FROM bases WHERE alias = ?1 AND tag = ?2",
                [alias, tag],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get(2)?,
                        r.get::<_, String>(3)?,
                    ))
                },
            )
            .optional()?;
        row.map(|(alias, tag, source, created)| {
            Ok(BaseRecord {
                created_at: parse_ts(&format!("base {alias}:{tag}"), &created)?,
                alias,
                tag,
                source,
            })
        })
        .transpose()
    }

    fn list_bases(&self) -> StoreResult<Vec<BaseRecord>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT alias, tag, source, created_at FROM bases ORDER BY alias, tag")?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(alias, tag, source, created)| {
                Ok(BaseRecord {
                    created_at: parse_ts(&format!("base {alias}:{tag}"), &created)?,
                    alias,
                    tag,
                    source,
                })
            })
            .collect()
    }

    fn delete_base(&self, alias: &str, tag: &str) -> StoreResult<()> {
        self.conn().execute(
            "DELETE FROM bases WHERE alias = ?1 AND tag = ?2",
            [alias, tag],
        )?;
        Ok(())
    }

    fn insert_volume(&self, v: &VolumeRecord) -> StoreResult<()> {
        self.conn()
            .execute(
                "INSERT INTO volumes (id, project, name, size_gb, owner_box_id, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    v.id,
                    v.project.as_str(),
                    v.name.as_str(),
                    v.size_gb,
                    v.owner_box_id,
                    ts(&v.created_at)
                ],
            )
            .map_err(insert_err(format!("volume {}:{}", v.project, v.name)))?;
        Ok(())
    }

    fn get_volume(&self, project: &str, name: &str) -> StoreResult<Option<VolumeRecord>> {
        let row = self
            .conn()
            .query_row(
                "SELECT id, project, name, size_gb, owner_box_id, created_at FROM volumes \
                 WHERE project = ?1 AND name = ?2",
                [project, name],
                read_volume,
            )
            .optional()?;
        row.map(decode_volume).transpose()
    }

    fn get_volume_by_id(&self, id: &str) -> StoreResult<Option<VolumeRecord>> {
        let row = self
            .conn()
            .query_row(
                "SELECT id, project, name, size_gb, owner_box_id, created_at FROM volumes WHERE id = ?1",
                [id],
                read_volume,
            )
            .optional()?;
        row.map(decode_volume).transpose()
    }

    fn list_volumes(&self, project: Option<&str>) -> StoreResult<Vec<VolumeRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, project, name, size_gb, owner_box_id, created_at FROM volumes \
             WHERE ?1 IS NULL OR project = ?1 ORDER BY project, name",
        )?;
        let rows = stmt
            .query_map([project], read_volume)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(decode_volume).collect()
    }

    fn delete_volume(&self, id: &str) -> StoreResult<()> {
        self.conn()
            .execute("DELETE FROM volumes WHERE id = ?1", [id])?;
        Ok(())
    }

    fn insert_op(&self, op: &OpRecord) -> StoreResult<()> {
        self.conn()
            .execute(
                &format!(
                    "INSERT INTO ops ({OP_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ),
                params![
                    op.id,
                    op.kind.as_str(),
                    op.target,
                    op.label,
                    op_state_str(op.state),
                    op.attempts,
                    op.last_error,
                    ts(&op.created_at),
                    ts(&op.updated_at)
                ],
            )
            .map_err(insert_err(format!("operation {}", op.id)))?;
        Ok(())
    }

    fn update_op(&self, op: &OpRecord) -> StoreResult<()> {
        let n = self.conn().execute(
            "UPDATE ops SET state = ?2, attempts = ?3, last_error = ?4, updated_at = ?5 WHERE id = ?1",
            params![op.id, op_state_str(op.state), op.attempts, op.last_error, ts(&op.updated_at)],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("operation {}", op.id)));
        }
        Ok(())
    }

    fn latest_op(&self, kind: OpKind, target: &str) -> StoreResult<Option<OpRecord>> {
        let row = self
            .conn()
            .query_row(
                &format!("SELECT {OP_COLUMNS} FROM ops WHERE kind = ?1 AND target = ?2 ORDER BY created_at DESC, rowid DESC LIMIT 1"),
                [kind.as_str(), target],
                read_op,
            )
            .optional()?;
        row.map(decode_op).transpose()
    }

    fn pending_ops(&self) -> StoreResult<Vec<OpRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {OP_COLUMNS} FROM ops WHERE state = 'pending' ORDER BY created_at, rowid"
        ))?;
        let rows = stmt
            .query_map([], read_op)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(decode_op).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use zomg_sdk::BoxStatus;

    fn record(project: &str, name: &str) -> BoxRecord {
        let now = Utc::now();
        BoxRecord {
            id: format!("id-{project}-{name}"),
            project: project.parse().unwrap(),
            name: name.parse().unwrap(),
            status: BoxStatus::Running,
            status_reason: None,
            base: "box-base:latest".into(),
            port: Some(8080),
            tags: BTreeMap::new(),
            environment: [("A".to_owned(), "1".to_owned())].into(),
            data_mounts: vec![MountRecord {
                volume_id: "v1".into(),
                name: "data".parse().unwrap(),
                path: "/data".into(),
                read_only: false,
            }],
            millicpus: 500,
            ram_mb: 512,
            storage_gb: Some(5),
            termination_grace_seconds: 10,
            forked_from: None,
            published_domains: vec![],
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn box_crud_round_trip() {
        let s = SqliteStore::in_memory().unwrap();
        let b = record("default", "web");
        s.insert_box(&b).unwrap();
        let got = s.get_box("default", "web").unwrap().unwrap();
        // Timestamps are stored with microsecond precision.
        assert_eq!(got.id, b.id);
        assert_eq!(got.data_mounts, b.data_mounts);
        assert_eq!(got.environment, b.environment);
        assert_eq!(got.storage_gb, Some(5));
        assert!(matches!(s.insert_box(&b), Err(StoreError::Conflict(m)) if m == "box default:web"));

        let mut changed = got.clone();
        changed.status = BoxStatus::Stopped;
        changed.tags.insert("env".into(), "dev".into());
        s.update_box(&changed).unwrap();
        assert_eq!(
            s.get_box_by_id(&b.id).unwrap().unwrap().status,
            BoxStatus::Stopped
        );

        s.delete_box(&b.id).unwrap();
        s.delete_box(&b.id).unwrap();
        assert!(s.get_box("default", "web").unwrap().is_none());
        assert!(matches!(
            s.update_box(&changed),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn list_filters_and_pages() {
        let s = SqliteStore::in_memory().unwrap();
        for (p, n, tag) in [
            ("a", "web-1", "x"),
            ("a", "web-2", "y"),
            ("a", "db", "x"),
            ("b", "web-1", "x"),
        ] {
            let mut r = record(p, n);
            r.tags.insert("role".into(), tag.into());
            r.tags.insert("team.name".into(), "core".into());
            s.insert_box(&r).unwrap();
        }
        let names = |f: &BoxFilter| {
            s.list_boxes(f)
                .unwrap()
                .into_iter()
                .map(|b| format!("{}:{}", b.project, b.name))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&BoxFilter::default()),
            ["a:db", "a:web-1", "a:web-2", "b:web-1"]
        );
        let mut f = BoxFilter {
            project: Some("a".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(names(&f), ["a:db", "a:web-1", "a:web-2"]);
        f.prefix = Some("web".into());
        assert_eq!(names(&f), ["a:web-1", "a:web-2"]);
        f.tags.insert("role".into(), "x".into());
        f.tags.insert("team.name".into(), "core".into());
        assert_eq!(names(&f), ["a:web-1"]);

        let page = BoxFilter {
            limit: Some(2),
            ..Default::default()
        };
        assert_eq!(names(&page), ["a:db", "a:web-1"]);
        let next = BoxFilter {
            after: Some(("a".into(), "web-1".into())),
            limit: Some(2),
            ..Default::default()
        };
        assert_eq!(names(&next), ["a:web-2", "b:web-1"]);
        // LIKE wildcards in a prefix are literal.
        let wild = BoxFilter {
            prefix: Some("%".into()),
            ..Default::default()
        };
        assert!(names(&wild).is_empty());
    }

    #[test]
    fn bases_volumes_ops() {
        let s = SqliteStore::in_memory().unwrap();
        let base = BaseRecord {
            alias: "box-base".into(),
            tag: "latest".into(),
            source: Some("debootstrap".into()),
            created_at: Utc::now(),
        };
        s.insert_base(&base).unwrap();
        assert!(matches!(s.insert_base(&base), Err(StoreError::Conflict(_))));
        assert_eq!(s.list_bases().unwrap().len(), 1);
        assert!(s.get_base("box-base", "latest").unwrap().is_some());
        s.delete_base("box-base", "latest").unwrap();
        assert!(s.get_base("box-base", "latest").unwrap().is_none());

        let vol = VolumeRecord {
            id: "v1".into(),
            project: "default".parse().unwrap(),
            name: "Data.1".parse().unwrap(),
            size_gb: Some(1),
            owner_box_id: None,
            created_at: Utc::now(),
        };
        s.insert_volume(&vol).unwrap();
        assert!(matches!(
            s.insert_volume(&vol),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(s.get_volume("default", "Data.1").unwrap().unwrap().id, "v1");
        assert_eq!(s.list_volumes(Some("default")).unwrap().len(), 1);
        assert_eq!(s.list_volumes(None).unwrap().len(), 1);
        assert!(s.list_volumes(Some("other")).unwrap().is_empty());
        s.delete_volume("v1").unwrap();
        assert!(s.get_volume_by_id("v1").unwrap().is_none());

        let now = Utc::now();
        let mut op = OpRecord {
            id: "op1".into(),
            kind: OpKind::DeleteBox,
            target: "box1".into(),
            label: "default:web".into(),
            state: OpState::Pending,
            attempts: 0,
            last_error: None,
            created_at: now,
            updated_at: now,
        };
        s.insert_op(&op).unwrap();
        assert_eq!(s.pending_ops().unwrap().len(), 1);
        op.state = OpState::Failed;
        op.attempts = 3;
        op.last_error = Some("busy".into());
        s.update_op(&op).unwrap();
        assert!(s.pending_ops().unwrap().is_empty());
        assert_eq!(s.latest_op(OpKind::DeleteBox, "box1").unwrap().unwrap(), op);
    }

    #[test]
    fn reopen_keeps_data_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zomg.db");
        SqliteStore::open(&path)
            .unwrap()
            .insert_box(&record("default", "web"))
            .unwrap();
        let again = SqliteStore::open(&path).unwrap();
        assert!(again.get_box("default", "web").unwrap().is_some());
    }
}
