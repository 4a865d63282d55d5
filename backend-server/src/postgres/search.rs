//! Newest-first lookups, counts and full-text search on PostgreSQL.
//!
//! Search uses PostgreSQL's full-text machinery (a `tsvector` column with a GIN index,
//! `@@` against a `tsquery`) over the lexemes of BitMail's own analysis
//! ([`crate::text`]), handed over as they are (`array_to_tsvector`, and quoted lexemes
//! in the query, which PostgreSQL takes literally): so every engine finds the same
//! documents for the same words, in English and French alike, whatever text search
//! configuration the database has. A lexeme is `NAME/form` for a form under the field
//! `_text.NAME`, `/form` unrestricted.

use tokio_postgres::types::{Json, ToSql, Type};
use uuid::Uuid;

use super::sql::{
    COUNT_ALL, COUNT_SUBSET, FIND_ALL_DESC, FIND_SUBSET_DESC, LOOKUP_ALL, LOOKUP_SUBSET, SEARCH_ASC, SEARCH_DESC,
    SET_TERMS,
};
use super::{PostgresStore, parse_id};
use crate::store::{Count, Document, Fields, Page, Query, StoreError};
use crate::text::{self, TEXT_PREFIX};

/// The lexeme of an index pair from [`text::index_pairs`].
fn lexeme(key: &str, form: &str) -> String {
    let any = text::form_key(None);
    let name = key.strip_prefix(any.as_str()).and_then(|r| r.strip_prefix('.')).unwrap_or("");
    format!("{name}/{form}")
}

/// The search lexemes of a document; `None` (SQL NULL) when it has no searchable field.
pub(super) fn lexemes(fields: &Fields) -> Option<Vec<String>> {
    let pairs = text::index_pairs(fields);
    (!pairs.is_empty()).then(|| pairs.iter().map(|(k, f)| lexeme(k, f)).collect())
}

/// Whether an update sets or removes a searchable field.
pub(super) fn touches_text(fields: &Fields, remove: &[String]) -> bool {
    fields.keys().chain(remove).any(|k| k.starts_with(TEXT_PREFIX))
}

/// The `tsquery` of a query's terms: a group's forms or'ed, the groups and'ed.
fn tsquery(query: &Query) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"));
    text::term_groups(&query.terms)
        .iter()
        .map(|group| {
            let forms: Vec<String> = group.iter().map(|(k, f)| quote(&lexeme(k, f))).collect();
            format!("({})", forms.join(" | "))
        })
        .collect::<Vec<_>>()
        .join(" & ")
}

impl PostgresStore {
    /// After an update of searchable fields: the lexemes of the version it stored.
    pub(super) async fn set_terms(&self, id: Uuid, doc: &Document) -> Result<(), StoreError> {
        let terms = lexemes(&doc.fields);
        let version = i64::try_from(doc.version).unwrap_or(i64::MAX);
        let terms = &terms;
        self.run(true, move |client| async move {
            let statement = client.prepare_cached(SET_TERMS).await?;
            client.execute(&statement, &[&id, terms, &version]).await
        })
        .await?;
        Ok(())
    }

    pub(super) async fn find_rows(
        &self,
        query: &Query,
        limit: usize,
        page_token: Option<&str>,
    ) -> Result<Page, StoreError> {
        let newest = query.newest_first;
        let from = match page_token {
            None if newest => Uuid::max(),
            None => Uuid::nil(),
            Some(token) => parse_id(token)
                .ok_or_else(|| StoreError::InvalidArgument("page_token: not a token this store handed out".into()))?,
        };
        let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
        let tsquery = (!query.terms.is_empty()).then(|| tsquery(query));
        let (subset, tsquery) = (&query.subset, &tsquery);
        let rows = self
            .run(true, move |client| async move {
                let subset = Json(subset);
                match (subset.0.is_empty(), tsquery) {
                    (true, _) => {
                        let sql = if newest { FIND_ALL_DESC } else { LOOKUP_ALL };
                        let statement = client.prepare_cached(sql).await?;
                        client.query(&statement, &[&from, &fetch]).await
                    }
                    (false, None) => {
                        let sql = if newest { FIND_SUBSET_DESC } else { LOOKUP_SUBSET };
                        let params: [(&(dyn ToSql + Sync), Type); 3] =
                            [(&subset, Type::JSONB), (&from, Type::UUID), (&fetch, Type::INT8)];
                        client.query_typed(sql, &params).await
                    }
                    (false, Some(q)) => {
                        let sql = if newest { SEARCH_DESC } else { SEARCH_ASC };
                        let params: [(&(dyn ToSql + Sync), Type); 4] =
                            [(&subset, Type::JSONB), (&from, Type::UUID), (&fetch, Type::INT8), (q, Type::TEXT)];
                        client.query_typed(sql, &params).await
                    }
                }
            })
            .await?;
        self.page_of(&rows, limit)
    }

    pub(super) async fn count_rows(&self, subset: &Fields, at_most: usize) -> Result<Count, StoreError> {
        let fetch = i64::try_from(at_most.saturating_add(1)).unwrap_or(i64::MAX);
        let n: i64 = self
            .run(true, move |client| async move {
                let row = if subset.is_empty() {
                    let statement = client.prepare_cached(COUNT_ALL).await?;
                    client.query_one(&statement, &[&fetch]).await?
                } else {
                    let subset = Json(subset);
                    let params: [(&(dyn ToSql + Sync), Type); 2] = [(&subset, Type::JSONB), (&fetch, Type::INT8)];
                    let mut rows = client.query_typed(COUNT_SUBSET, &params).await?;
                    rows.remove(0)
                };
                Ok(row.get(0))
            })
            .await?;
        let n = usize::try_from(n).unwrap_or(0);
        Ok(Count { count: n.min(at_most), capped: n > at_most })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Term;

    #[test]
    fn lexemes_and_queries_are_quoted_literals() {
        let fields = Fields::from([("_text.subject".to_owned(), "Écoles".to_owned())]);
        let found = lexemes(&fields).unwrap();
        assert!(found.contains(&"/ecoles".to_owned()) && found.contains(&"subject/ecol".to_owned()), "{found:?}");
        assert_eq!(lexemes(&Fields::new()), None);
        let query = Query {
            subset: Fields::from([("k".to_owned(), "v".to_owned())]),
            terms: vec![Term { words: "runs".into(), fields: vec!["o'k".into()] }],
            newest_first: true,
        };
        assert_eq!(tsquery(&query), "('o''k/run' | 'o''k/runs')");
    }
}
