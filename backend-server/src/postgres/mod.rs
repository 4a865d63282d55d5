//! The PostgreSQL engine: one table, documents as `jsonb`, lookups as containment queries
//! on a GIN index, optimistic versions in the row.
//!
//! ```sql
//! bitmail_documents (id UUID PRIMARY KEY, version BIGINT NOT NULL, doc JSONB NOT NULL,
//!                    unique_key TEXT)
//! bitmail_documents_doc: GIN (doc jsonb_path_ops), or GIN (doc) where that is refused
//! bitmail_documents_unique_key: UNIQUE (unique_key)
//! ```
//!
//! The SQL keeps to what PostgreSQL, CockroachDB and YugabyteDB share (no advisory locks,
//! no LISTEN/NOTIFY, no functions or triggers; see below). Every
//! statement is a single-statement (implicit) transaction, so a call that failed on a
//! serialization conflict took no effect and is retried here.
//!
//! Ids are UUIDv7 made by this process (the `uuid` column sorts like their text form), so
//! ids sort in creation order as in every engine. A lookup reads the GIN index for the
//! whole subset, so its cost follows the number of documents holding all the pairs, not
//! the size of the table; see [`LOOKUP_SUBSET`] for why the query is fenced.
//!
//! On tokio-postgres with a deadpool pool (`[postgres] url`, a `Secret`, and `pool_size`),
//! chosen over sqlx for a lighter compile: no macros, no query checking at build time.
//! TLS with `[postgres] ca_file` (`postgres_tls.rs`: the server's certificate verified
//! against that CA and the URL's host, as `sslmode=verify-full`); without it a URL with
//! `sslmode=require` is refused when the config is checked, since it would verify
//! nothing. The table
//! and index are created on start when missing, retried when two servers race on the
//! catalog.
//!
//! - Update: one statement, `SET doc = (doc - $remove::TEXT[]) || $fields, version =
//!   version + 1 WHERE id = $1 [AND version = $expected] AND <merged size> <= $max
//!   RETURNING ...` (the size from `jsonb_each_text`). When no row changed, the current
//!   version and merged size tell not-found, a version mismatch and a too-large result
//!   apart; versions only grow, so if the version now equals the expectation and the
//!   merge fits, a concurrent update got there first and the update is tried again.
//! - Create: `INSERT ... ON CONFLICT (unique_key) DO NOTHING`; when no row went in,
//!   the holder is read by its key (and, if it was deleted in between, the insert is
//!   tried again). `put`'s documents hold NULL, which the unique index lets repeat, and a
//!   deleted row takes its key with it. A table made before the column gains it on start
//!   (`ADD COLUMN IF NOT EXISTS`, only when missing).
//! - Lookup: a subset held by very many documents (say `kind = message` alone) costs
//!   that many on every page: keep subsets selective. An empty subset walks the primary
//!   key: O(page). `a_selective_lookup_reads_the_containment_index` checks the plans.
//! - Retries: a serialization conflict, deadlock or read-only host (no effect) up to 5
//!   tries in all; reads and `put` also after a broken connection (a second `put` that
//!   meets its own id answers the first one's success).
//! - Several hosts and fail-over (`connect.rs`): the URL names the primary and its
//!   standbys with `target_session_attrs=read-write`. A connection that broke is not
//!   handed out again; a host that answers SQLSTATE 25006 (read-only) or 57P0x (going
//!   away) has all idle connections dropped. New connections go to whichever host is
//!   read-write; while none is, calls fail at once with `Unavailable`, never hang, and
//!   writes in flight when the primary died are `Unavailable` (unless they were
//!   committed and their retry found them). No restart is needed when a standby is
//!   promoted: the first call after it connects to the new primary.
//! - Errors: connection problems are `Unavailable` with host:port/database and the
//!   cause, never the URL or the password; a server error by message and SQLSTATE only
//!   (its detail can quote document text). Ids that are not canonical UUIDs are simply
//!   not found.
//!
//! Distributed SQL: the SQL keeps to `UUID`, `BIGINT`, `JSONB`, `@>`, `-` with a text
//! array and `||`, `jsonb_each_text`, `CREATE ... IF NOT EXISTS`, `RETURNING`, `OFFSET
//! 0` subqueries, a unique index with `ON CONFLICT (column) DO NOTHING`, `ADD COLUMN IF
//! NOT EXISTS` and `information_schema.columns`; no sequences or session settings
//! either. CockroachDB has no `jsonb_path_ops` (hence the fallback index); YugabyteDB
//! maps `USING GIN` to `ybgin`. Only PostgreSQL is tested; ARCHITECTURE.md ("PostgreSQL
//! and compatible databases") has the table.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Json, ToSql, Type};
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

use crate::postgres_tls::VerifiedTls;
use crate::store::{Count, Document, Fields, Limits, Page, Query, Store, StoreError};
use crate::validate::{self, Request};

mod connect;
mod errors;
mod search;
mod sql;

pub(crate) use connect::parse_url;
use connect::{apply_defaults, describe_target};
use errors::{error_text, host_going_away, is_catalog_race, read_only_host, retryable};
pub use sql::LOOKUP_SUBSET;
use sql::{
    ADD_TERMS_COLUMN, ADD_UNIQUE_COLUMN, CREATE, CREATE_INDEX, CREATE_INDEX_PORTABLE, CREATE_TABLE, CREATE_TERMS_INDEX,
    CREATE_UNIQUE_INDEX, DELETE, GET, GET_VERSION, HAS_UNIQUE_COLUMN, HOLDER, INSERT, LOOKUP_ALL, UPDATE,
    UPDATE_IF_VERSION,
};

/// How many times a statement that failed on a serialization conflict or a deadlock (it
/// took no effect) is tried again. Distributed SQL engines answer conflicts this way.
const ATTEMPTS: usize = 5;

/// A [`Store`] on PostgreSQL (or a PostgreSQL-compatible distributed SQL engine).
pub struct PostgresStore {
    pool: Pool,
    /// Where the database is, for error messages: hosts, ports and database name, never
    /// the user's password.
    target: String,
    limits: Limits,
}

impl PostgresStore {
    /// Connects with at most `pool_size` connections to the database at `url`
    /// (`postgres://user:password@host:port/db?...` or `host=... dbname=...`), and creates
    /// the table and its index when they are missing (idempotent; safe when several
    /// servers start at once). Fails with [`StoreError::Unavailable`] when the database
    /// cannot be reached, and [`StoreError::InvalidArgument`] when `url` does not parse.
    pub async fn connect(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        Self::connect_with(url, pool_size, None).await
    }

    /// [`PostgresStore::connect`], over TLS when `ca_file` is given: the server must
    /// offer TLS and a certificate that chains to that CA and names the URL's host;
    /// otherwise every connection fails with [`StoreError::Unavailable`] saying why.
    pub async fn connect_with(url: &str, pool_size: usize, ca_file: Option<&Path>) -> Result<Self, StoreError> {
        let mut config = parse_url(url, ca_file.is_some())?;
        let open_timeout = apply_defaults(&mut config);
        let target = describe_target(&config);
        let recycling = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match ca_file {
            Some(ca) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                let tls =
                    VerifiedTls::new(ca).map_err(|e| StoreError::InvalidArgument(format!("postgres.ca_file: {e}")))?;
                Manager::from_config(config, tls, recycling)
            }
            None => Manager::from_config(config, NoTls, recycling),
        };
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(open_timeout))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("PostgreSQL connection pool: {e}")))?;
        let store = Self { pool, target, limits: Limits::default() };
        store.create_schema().await?;
        Ok(store)
    }

    /// The same store, refusing documents over `limits`.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    async fn create_schema(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        for attempt in 1..=ATTEMPTS {
            // Two servers creating the table at the same moment can collide on
            // PostgreSQL's catalog (unique violation) even with IF NOT EXISTS: the
            // second try sees the table.
            let result = async {
                client.batch_execute(CREATE_TABLE).await?;
                let has_column: i64 = client.query_one(HAS_UNIQUE_COLUMN, &[]).await?.get(0);
                if has_column == 0 {
                    client.batch_execute(ADD_UNIQUE_COLUMN).await?;
                }
                client.batch_execute(CREATE_UNIQUE_INDEX).await?;
                client.batch_execute(ADD_TERMS_COLUMN).await?;
                client.batch_execute(CREATE_TERMS_INDEX).await?;
                match client.batch_execute(CREATE_INDEX).await {
                    Err(e) if e.as_db_error().is_some() && !retryable(&e) && !is_catalog_race(&e) => {
                        tracing::info!(error = %error_text(&e), "jsonb_path_ops refused; using the default GIN operator class");
                        client.batch_execute(CREATE_INDEX_PORTABLE).await
                    }
                    other => other,
                }
            }
            .await;
            match result {
                Ok(()) => return Ok(()),
                Err(e) if attempt < ATTEMPTS && (retryable(&e) || is_catalog_race(&e)) => backoff(attempt).await,
                Err(e) => return Err(self.error(e)),
            }
        }
        unreachable!("the last attempt returns")
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Timeout(_) => StoreError::Unavailable(format!(
                "PostgreSQL at {}: no connection became free or could be opened in time",
                self.target
            )),
            PoolError::Backend(e) => self.error(e),
            other => StoreError::Unavailable(format!("PostgreSQL at {}: {other}", self.target)),
        })
    }

    /// Runs `op` on a pooled connection, again when it failed in a way that guarantees it
    /// took no effect (serialization conflict, deadlock, a read-only host) or, with
    /// `retry_lost`, when the connection broke (for calls that are safe to repeat).
    ///
    /// When the host turned read-only or is going away, the pool's idle connections are
    /// dropped (they lead to the same host), so the next try opens a new connection,
    /// which `target_session_attrs=read-write` sends to whichever host is the primary
    /// now; while there is none, opening fails at once and the call is `Unavailable`.
    async fn run<T, F, Fut>(&self, retry_lost: bool, op: F) -> Result<T, StoreError>
    where
        F: Fn(deadpool_postgres::Object) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + Send,
    {
        for attempt in 1..=ATTEMPTS {
            let client = self.client().await?;
            // `op` owns the connection: it is back in the pool when the result is here.
            let e = match op(client).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let (read_only, going_away) = (read_only_host(&e), host_going_away(&e));
            if read_only || going_away {
                let dropped = self.pool.retain(|_, _| false).removed.len();
                tracing::warn!(target = %self.target, error = %error_text(&e), dropped,
                    "PostgreSQL host cannot take writes; its pooled connections are dropped");
            }
            let no_effect = retryable(&e) || read_only;
            if attempt < ATTEMPTS && (no_effect || (retry_lost && (e.is_closed() || going_away))) {
                tracing::debug!(error = %error_text(&e), attempt, "PostgreSQL statement retried");
                backoff(attempt).await;
                continue;
            }
            return Err(self.error(e));
        }
        unreachable!("the last attempt returns")
    }

    fn error(&self, e: tokio_postgres::Error) -> StoreError {
        match e.code() {
            // Refused values: never quote the server's detail, which can hold document text.
            Some(c) if *c == SqlState::UNTRANSLATABLE_CHARACTER || *c == SqlState::CHARACTER_NOT_IN_REPERTOIRE => {
                StoreError::InvalidArgument("PostgreSQL cannot store this text (U+0000 or invalid encoding)".into())
            }
            Some(c) if *c == SqlState::PROGRAM_LIMIT_EXCEEDED => {
                StoreError::InvalidArgument("the document is larger than PostgreSQL can store".into())
            }
            _ => StoreError::Unavailable(format!("PostgreSQL at {}: {}", self.target, error_text(&e))),
        }
    }
}

async fn backoff(attempt: usize) {
    tokio::time::sleep(Duration::from_millis(5 << attempt.min(6))).await;
}

/// The id as a UUID, only in the canonical form this store hands out, so that every
/// spelling of an id is either that id or no document.
fn parse_id(id: &str) -> Option<Uuid> {
    Uuid::parse_str(id).ok().filter(|u| u.hyphenated().to_string() == id)
}

fn version_of(raw: i64) -> u64 {
    u64::try_from(raw).unwrap_or(0)
}

impl PostgresStore {
    /// A page from rows `(id, version, doc)` fetched with one more than `limit`.
    fn page_of(&self, rows: &[Row], limit: usize) -> Result<Page, StoreError> {
        let more = rows.len() > limit;
        let mut documents = Vec::with_capacity(rows.len().min(limit));
        for row in rows.iter().take(limit) {
            let id: Uuid = row.get(0);
            documents.push(self.document(id.hyphenated().to_string(), row.get(1), row, 2)?);
        }
        let next_page_token = if more { documents.last().map(|d| d.id.clone()) } else { None };
        Ok(Page { documents, next_page_token })
    }

    fn document(&self, id: String, version: i64, row: &Row, column: usize) -> Result<Document, StoreError> {
        let Json(fields) = row.try_get::<_, Json<Fields>>(column).map_err(|e| {
            StoreError::Unavailable(format!(
                "PostgreSQL at {}: document {id} is not a map of strings ({})",
                self.target,
                error_text(&e)
            ))
        })?;
        Ok(Document { id, version: version_of(version), fields })
    }
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn put(&self, fields: Fields) -> Result<Document, StoreError> {
        validate::check(Request::Put { fields: &fields }, &self.limits)?;
        let id = Uuid::now_v7();
        let retried = AtomicBool::new(false);
        let terms = search::lexemes(&fields);
        let (fields_ref, retried, terms) = (&fields, &retried, &terms);
        let result = self
            .run(true, move |client| async move {
                let statement = client.prepare_cached(INSERT).await?;
                let result = client.execute(&statement, &[&id, &Json(fields_ref), terms]).await;
                match result {
                    // The first try was committed but its answer lost: the row is ours.
                    Err(e) if retried.load(Ordering::Relaxed) && e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Ok(1),
                    other => {
                        retried.store(true, Ordering::Relaxed);
                        other
                    }
                }
            })
            .await;
        result?;
        Ok(Document { id: id.hyphenated().to_string(), version: 1, fields })
    }

    async fn create(&self, unique_key: &str, fields: Fields) -> Result<Document, StoreError> {
        validate::check(Request::Create { unique_key, fields: &fields }, &self.limits)?;
        let id = Uuid::now_v7();
        let terms = search::lexemes(&fields);
        let (fields_ref, terms) = (&fields, &terms);
        loop {
            // Safe to repeat after a lost answer: a first try that went in holds the key,
            // and the holder read below is then this very id.
            let inserted = self
                .run(true, move |client| async move {
                    let statement = client.prepare_cached(CREATE).await?;
                    client.execute(&statement, &[&id, &Json(fields_ref), &unique_key, terms]).await
                })
                .await?;
            if inserted == 0 {
                let holder = self
                    .run(true, move |client| async move {
                        let statement = client.prepare_cached(HOLDER).await?;
                        client.query_opt(&statement, &[&unique_key]).await
                    })
                    .await?;
                match holder.map(|row| row.get::<_, Uuid>(0)) {
                    Some(holder) if holder != id => {
                        return Err(StoreError::AlreadyExists { id: holder.hyphenated().to_string() });
                    }
                    Some(_) => {}
                    // The holder was deleted in between: the key is free again.
                    None => continue,
                }
            }
            return Ok(Document { id: id.hyphenated().to_string(), version: 1, fields });
        }
    }

    async fn get(&self, id: &str) -> Result<Document, StoreError> {
        validate::check(Request::Get { id }, &self.limits)?;
        let Some(uuid) = parse_id(id) else {
            return Err(StoreError::NotFound(id.to_owned()));
        };
        let row = self
            .run(true, move |client| async move {
                let statement = client.prepare_cached(GET).await?;
                client.query_opt(&statement, &[&uuid]).await
            })
            .await?;
        let row = row.ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        self.document(id.to_owned(), row.get(0), &row, 1)
    }

    async fn update(
        &self,
        id: &str,
        fields: Fields,
        remove: Vec<String>,
        expected_version: Option<u64>,
    ) -> Result<Document, StoreError> {
        validate::check(Request::Update { id, fields: &fields, remove: &remove }, &self.limits)?;
        let max = i64::try_from(self.limits.max_document_bytes).unwrap_or(i64::MAX);
        let Some(uuid) = parse_id(id) else {
            return Err(StoreError::NotFound(id.to_owned()));
        };
        loop {
            // Versions never exceed i64::MAX; a larger expectation can only mismatch.
            let expected = expected_version.map(|v| i64::try_from(v).unwrap_or(-1));
            let (fields, remove) = (&fields, &remove);
            let row = self
                .run(false, move |client| async move {
                    match expected {
                        None => {
                            let statement = client.prepare_cached(UPDATE).await?;
                            client.query_opt(&statement, &[&uuid, remove, &Json(fields), &max]).await
                        }
                        Some(v) => {
                            let statement = client.prepare_cached(UPDATE_IF_VERSION).await?;
                            client.query_opt(&statement, &[&uuid, remove, &Json(fields), &max, &v]).await
                        }
                    }
                })
                .await?;
            if let Some(row) = row {
                let doc = self.document(id.to_owned(), row.get(0), &row, 1)?;
                if search::touches_text(fields, remove) {
                    self.set_terms(uuid, &doc).await?;
                }
                return Ok(doc);
            }
            // Nothing changed. Tell "no such document", "another version" and "too
            // large once merged" apart by reading the version and the merged size now.
            // The version only grows, so if it now equals the expectation and the merge
            // fits, a concurrent update got there in between: try again.
            let current = self
                .run(true, move |client| async move {
                    let statement = client.prepare_cached(GET_VERSION).await?;
                    client.query_opt(&statement, &[&uuid, remove, &Json(fields)]).await
                })
                .await?;
            let Some(row) = current else {
                return Err(StoreError::NotFound(id.to_owned()));
            };
            let (actual, merged): (u64, i64) = (version_of(row.get(0)), row.get(1));
            match expected_version {
                Some(expected) if actual != expected => {
                    return Err(StoreError::VersionMismatch { id: id.to_owned(), expected, actual });
                }
                _ if merged > max => {
                    return Err(StoreError::InvalidArgument(format!(
                        "fields: the document would be {merged} bytes after this update, over the limit of {max} bytes"
                    )));
                }
                _ => continue,
            }
        }
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        validate::check(Request::Delete { id }, &self.limits)?;
        let Some(uuid) = parse_id(id) else {
            return Err(StoreError::NotFound(id.to_owned()));
        };
        let deleted = self
            .run(false, move |client| async move {
                let statement = client.prepare_cached(DELETE).await?;
                client.execute(&statement, &[&uuid]).await
            })
            .await?;
        if deleted == 0 { Err(StoreError::NotFound(id.to_owned())) } else { Ok(()) }
    }

    async fn lookup(&self, subset: &Fields, limit: usize, page_token: Option<&str>) -> Result<Page, StoreError> {
        validate::check(Request::Lookup { subset, limit, page_token }, &self.limits)?;
        let after = match page_token {
            None => Uuid::nil(),
            Some(token) => parse_id(token)
                .ok_or_else(|| StoreError::InvalidArgument("page_token: not a token this store handed out".into()))?,
        };
        // One more than asked tells whether another page follows.
        let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
        let rows = self
            .run(true, move |client| async move {
                if subset.is_empty() {
                    let statement = client.prepare_cached(LOOKUP_ALL).await?;
                    client.query(&statement, &[&after, &fetch]).await
                } else {
                    // Unnamed, so planned with this subset's values (see LOOKUP_SUBSET).
                    let subset = Json(subset);
                    let params: [(&(dyn ToSql + Sync), Type); 3] =
                        [(&subset, Type::JSONB), (&after, Type::UUID), (&fetch, Type::INT8)];
                    client.query_typed(LOOKUP_SUBSET, &params).await
                }
            })
            .await?;
        self.page_of(&rows, limit)
    }

    async fn find(&self, query: &Query, limit: usize, page_token: Option<&str>) -> Result<Page, StoreError> {
        validate::check(Request::Find { query, limit, page_token }, &self.limits)?;
        self.find_rows(query, limit, page_token).await
    }

    async fn count(&self, subset: &Fields, at_most: usize) -> Result<Count, StoreError> {
        validate::check(Request::Count { subset, at_most }, &self.limits)?;
        self.count_rows(subset, at_most).await
    }
}
