//! The PostgreSQL engine's statements, each with why it has its shape (see `mod.rs` for
//! what the SQL keeps to so that CockroachDB and YugabyteDB take it too).

pub(super) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS bitmail_documents (
    id UUID PRIMARY KEY,
    version BIGINT NOT NULL,
    doc JSONB NOT NULL,
    unique_key TEXT
)";
/// Whether a table made before unique keys still lacks their column.
pub(super) const HAS_UNIQUE_COLUMN: &str = "SELECT count(*) FROM information_schema.columns
    WHERE table_name = 'bitmail_documents' AND column_name = 'unique_key' AND table_schema = current_schema()";
pub(super) const ADD_UNIQUE_COLUMN: &str = "ALTER TABLE bitmail_documents ADD COLUMN IF NOT EXISTS unique_key TEXT";
/// The search lexemes of a document (full-text search, `search.rs`), for tables made
/// before search; and their GIN index.
pub(super) const ADD_TERMS_COLUMN: &str = "ALTER TABLE bitmail_documents ADD COLUMN IF NOT EXISTS terms TSVECTOR";
pub(super) const CREATE_TERMS_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS bitmail_documents_terms ON bitmail_documents USING GIN (terms)";
/// After an update that touched searchable fields: the lexemes of that version (a
/// later version's own update sets its own).
pub(super) const SET_TERMS: &str =
    "UPDATE bitmail_documents SET terms = array_to_tsvector($2::TEXT[]) WHERE id = $1 AND version = $3";
pub(super) const CREATE_UNIQUE_INDEX: &str =
    "CREATE UNIQUE INDEX IF NOT EXISTS bitmail_documents_unique_key ON bitmail_documents (unique_key)";
/// `jsonb_path_ops` indexes each key/value pair as one hash: smaller than the default
/// operator class and exact for `@>`. CockroachDB only has the default class.
pub(super) const CREATE_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS bitmail_documents_doc ON bitmail_documents USING GIN (doc jsonb_path_ops)";
pub(super) const CREATE_INDEX_PORTABLE: &str =
    "CREATE INDEX IF NOT EXISTS bitmail_documents_doc ON bitmail_documents USING GIN (doc)";

/// `$3`/`$4` is the document's search lexemes (`search.rs`), NULL when it has no
/// searchable field (`array_to_tsvector` is strict).
pub(super) const INSERT: &str =
    "INSERT INTO bitmail_documents (id, version, doc, terms) VALUES ($1, 1, $2, array_to_tsvector($3::TEXT[]))";
pub(super) const CREATE: &str = "INSERT INTO bitmail_documents (id, version, doc, unique_key, terms)
    VALUES ($1, 1, $2, $3, array_to_tsvector($4::TEXT[]))
    ON CONFLICT (unique_key) DO NOTHING";
pub(super) const HOLDER: &str = "SELECT id FROM bitmail_documents WHERE unique_key = $1";
pub(super) const GET: &str = "SELECT version, doc FROM bitmail_documents WHERE id = $1";
/// The stored version, and the size the document would have after merging $2/$3.
pub(super) const GET_VERSION: &str = "SELECT version, (SELECT COALESCE(SUM(octet_length(k) + octet_length(v)), 0)
    FROM jsonb_each_text((doc - $2::TEXT[]) || $3::JSONB) AS e(k, v))::BIGINT
    FROM bitmail_documents WHERE id = $1";
/// Updates only when the merged document (keys plus values, in bytes) fits in $4.
pub(super) const UPDATE: &str =
    "UPDATE bitmail_documents SET doc = (doc - $2::TEXT[]) || $3::JSONB, version = version + 1
    WHERE id = $1 AND (SELECT COALESCE(SUM(octet_length(k) + octet_length(v)), 0)
        FROM jsonb_each_text((doc - $2::TEXT[]) || $3::JSONB) AS e(k, v)) <= $4
    RETURNING version, doc";
pub(super) const UPDATE_IF_VERSION: &str =
    "UPDATE bitmail_documents SET doc = (doc - $2::TEXT[]) || $3::JSONB, version = version + 1
    WHERE id = $1 AND version = $5 AND (SELECT COALESCE(SUM(octet_length(k) + octet_length(v)), 0)
        FROM jsonb_each_text((doc - $2::TEXT[]) || $3::JSONB) AS e(k, v)) <= $4
    RETURNING version, doc";
pub(super) const DELETE: &str = "DELETE FROM bitmail_documents WHERE id = $1";
pub(super) const LOOKUP_ALL: &str = "SELECT id, version, doc FROM bitmail_documents WHERE id > $1 ORDER BY id LIMIT $2";
/// The subquery with `OFFSET 0` is an optimization fence, and it holds only the
/// containment test. Without the fence, a prepared statement's generic plan (the planner
/// cannot see the subset, so it guesses that 1 % of rows match) walks the primary key in
/// id order, filtering on `@>`, to stop early at `LIMIT`: fine for a common pair, a full
/// table scan for a rare one (measured: 700 ms at 1,000,000 documents for a pair held by
/// one). With `id > $2` inside the fence it still picks a primary-key range scan on
/// mid-sized tables. Fenced, the subset is answered from the GIN index and only the
/// matches are filtered by the page token and sorted: the cost follows the number of
/// documents holding the whole subset, whatever the size of the table. (PostgreSQL never
/// pushes the outer conditions into a subquery with OFFSET.)
///
/// It is also sent as an unnamed statement, planned with its values, never as a cached
/// prepared statement: only then does the planner see the subset and estimate from the
/// column's statistics, instead of guessing 1 % and, on a table of small documents,
/// preferring a sequential scan.
pub const LOOKUP_SUBSET: &str = "SELECT id, version, doc FROM (
    SELECT id, version, doc FROM bitmail_documents WHERE doc @> $1 OFFSET 0
) AS matches WHERE id > $2 ORDER BY id LIMIT $3";

/// Newest first, and the search forms of LOOKUP_SUBSET, fenced the same way (see there).
pub const FIND_ALL_DESC: &str =
    "SELECT id, version, doc FROM bitmail_documents WHERE id < $1 ORDER BY id DESC LIMIT $2";
pub const FIND_SUBSET_DESC: &str = "SELECT id, version, doc FROM (
    SELECT id, version, doc FROM bitmail_documents WHERE doc @> $1 OFFSET 0
) AS matches WHERE id < $2 ORDER BY id DESC LIMIT $3";
pub const SEARCH_ASC: &str = "SELECT id, version, doc FROM (
    SELECT id, version, doc FROM bitmail_documents WHERE doc @> $1 AND terms @@ $4::TSQUERY OFFSET 0
) AS matches WHERE id > $2 ORDER BY id LIMIT $3";
pub const SEARCH_DESC: &str = "SELECT id, version, doc FROM (
    SELECT id, version, doc FROM bitmail_documents WHERE doc @> $1 AND terms @@ $4::TSQUERY OFFSET 0
) AS matches WHERE id < $2 ORDER BY id DESC LIMIT $3";
/// Counting stops after $2 rows (the caller's bound plus one).
pub const COUNT_ALL: &str = "SELECT count(*) FROM (SELECT 1 FROM bitmail_documents LIMIT $1) AS m";
pub const COUNT_SUBSET: &str = "SELECT count(*) FROM (SELECT 1 FROM bitmail_documents WHERE doc @> $1 LIMIT $2) AS m";
