//! `GET /api/search?q&limit&cursor`: the signed-in user's own mail matching a query,
//! newest first, through the store's full-text search (see `mailbox/index.rs`).
//!
//! A query is words, `"quoted words"` and `field:word` or `field:"words"` with a field
//! of `from`, `to` (to and cc), `subject`, `body`; every part must match. Word forms
//! match in English and French (`running` finds `runs`, `école` finds `ecoles`). At most
//! [`MAX_QUERY_BYTES`] bytes and [`MAX_PARTS`] parts, no control characters: anything
//! else is a 400 naming what is wrong, and nothing is searched.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use bitmail_proto::v1 as pb;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::extract::{ApiQuery, CurrentUser};
use crate::mail::summary_json;
use crate::mailbox::SEARCH_FIELDS;
use crate::state::AppState;

pub(crate) const MAX_QUERY_BYTES: usize = 1000;
pub(crate) const MAX_PARTS: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchQuery {
    q: String,
    #[serde(default = "default_limit")]
    limit: u32,
    #[serde(default)]
    cursor: String,
}

fn default_limit() -> u32 {
    50
}

/// The query's parts as store terms; a 400 naming the problem otherwise.
pub(crate) fn parse(q: &str) -> Result<Vec<pb::SearchTerm>, ApiError> {
    let bad = |m: String| Err(ApiError::BadRequest(format!("q: {m}")));
    if q.len() > MAX_QUERY_BYTES {
        return bad(format!("{} bytes, at most {MAX_QUERY_BYTES}", q.len()));
    }
    if q.chars().any(|c| c.is_control() && c != ' ' && c != '\t') {
        return bad("holds control characters".into());
    }
    let mut terms = Vec::new();
    let mut rest = q.trim_start();
    while !rest.is_empty() {
        let (field, after) = match rest.split_once(':') {
            Some((name, after))
                if !name.contains(char::is_whitespace) && SEARCH_FIELDS.contains(&name.to_lowercase().as_str()) =>
            {
                (Some(name.to_lowercase()), after)
            }
            _ => (None, rest),
        };
        let (words, tail) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((inside, tail)) => (inside, tail),
                None => (quoted, ""),
            },
            None => after.split_once(char::is_whitespace).unwrap_or((after, "")),
        };
        if words.chars().any(char::is_alphanumeric) {
            terms.push(pb::SearchTerm { words: words.to_owned(), fields: field.into_iter().collect() });
        }
        rest = tail.trim_start();
    }
    if terms.is_empty() {
        return bad("nothing to search for: give at least one word (letters or digits)".into());
    }
    if terms.len() > MAX_PARTS {
        return bad(format!("{} parts, at most {MAX_PARTS}", terms.len()));
    }
    Ok(terms)
}

/// `GET /api/search`.
pub(crate) async fn search(
    State(state): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> Result<Json<Value>, ApiError> {
    if !(1..=200).contains(&query.limit) {
        return Err(ApiError::BadRequest("limit: 1 to 200".into()));
    }
    if query.cursor.len() > 64 || query.cursor.contains(|c: char| !c.is_ascii_hexdigit() && c != '-') {
        return Err(ApiError::BadRequest("cursor: not one this server gave".into()));
    }
    let terms = parse(&query.q)?;
    let (found, next) = state.mailbox.search(&user, terms, query.limit, &query.cursor).await?;
    let messages: Vec<Value> = found.iter().map(summary_json).collect();
    Ok(Json(json!({ "q": query.q, "messages": messages, "next_cursor": next })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(q: &str) -> Vec<(String, Vec<String>)> {
        parse(q).unwrap().into_iter().map(|t| (t.words, t.fields)).collect()
    }

    #[test]
    fn queries_split_into_parts() {
        let p = |w: &str, f: &[&str]| (w.to_owned(), f.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(parts("hello"), vec![p("hello", &[])]);
        assert_eq!(
            parts(r#"From:ada subject:"board meeting" budget"#),
            vec![p("ada", &["from"]), p("board meeting", &["subject"]), p("budget", &[])]
        );
        assert_eq!(parts("re: lunch"), vec![p("re:", &[]), p("lunch", &[])]);
        assert_eq!(parts(r#"body:"unclosed quote"#), vec![p("unclosed quote", &["body"])]);
        assert_eq!(parts("ada@example.org -- !!"), vec![p("ada@example.org", &[])]);
    }

    #[test]
    fn bad_queries_are_refused_by_name() {
        let reason = |q: &str| match parse(q) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("{q:?}: {other:?}"),
        };
        assert!(reason(&"a".repeat(100 * 1024)).contains("at most 1000"));
        assert!(reason("hello\u{0}world").contains("control"));
        assert!(reason("hello\nworld").contains("control"));
        assert!(reason("  ").contains("nothing to search"));
        assert!(reason("!! ?? from:").contains("nothing to search"));
        assert!(reason(&"w ".repeat(17)).contains("at most 16"));
    }
}
