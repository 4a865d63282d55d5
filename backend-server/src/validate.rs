//! The one check of bad input, run by every engine at the top of every method (and by
//! the gRPC service for what only the wire can express), so that all engines refuse the
//! same requests with the same [`StoreError::InvalidArgument`] and change nothing.
//!
//! Refused: an empty id, key or unique key; an id, key or unique key over [`MAX_KEY_BYTES`]; a document over
//! [`Limits::max_document_bytes`] (keys plus values, counted in bytes), whether sent
//! whole by a put or produced by an update's merge; a lookup limit outside
//! 1..=[`MAX_LOOKUP_LIMIT`]; over gRPC, a lookup with an empty subset and no limit.
//! Invalid UTF-8 never reaches this far: the types are `String`, and at the gRPC edge
//! the codec refuses a request whose `string` fields do not decode with
//! `INVALID_ARGUMENT` (`bitmail_proto::codec`).
//!
//! Also refused: a key or value holding U+0000 (PostgreSQL cannot store it, so no engine
//! takes it), and a page token longer than any id. The PostgreSQL engine also refuses, as
//! `InvalidArgument`, a page token that is not one of its ids (a UUID).

use crate::store::{DEFAULT_LOOKUP_LIMIT, Fields, Limits, MAX_KEY_BYTES, MAX_LOOKUP_LIMIT, StoreError};

/// A request to check, as the [`crate::store::Store`] methods receive it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Request<'a> {
    Put {
        fields: &'a Fields,
    },
    Create {
        unique_key: &'a str,
        fields: &'a Fields,
    },
    Get {
        id: &'a str,
    },
    Update {
        id: &'a str,
        fields: &'a Fields,
        remove: &'a [String],
    },
    Delete {
        id: &'a str,
    },
    Lookup {
        subset: &'a Fields,
        limit: usize,
        page_token: Option<&'a str>,
    },
    Find {
        query: &'a crate::store::Query,
        limit: usize,
        page_token: Option<&'a str>,
    },
    Count {
        subset: &'a Fields,
        at_most: usize,
    },
    /// The document an update is about to store, after merging: only its size can be
    /// wrong, and only the engine, which holds the old document, can know it.
    Merged {
        fields: &'a Fields,
    },
}

/// `Ok` when the request may proceed; otherwise the reason, naming the field.
pub(crate) fn check(request: Request<'_>, limits: &Limits) -> Result<(), StoreError> {
    match request {
        Request::Put { fields } | Request::Merged { fields } => {
            keys(fields.keys(), "fields")?;
            size(fields, limits)
        }
        Request::Create { unique_key, fields } => {
            self::unique_key(unique_key)?;
            keys(fields.keys(), "fields")?;
            size(fields, limits)
        }
        Request::Get { id } | Request::Delete { id } => self::id(id),
        Request::Update { id, fields, remove } => {
            self::id(id)?;
            keys(fields.keys(), "fields")?;
            keys(remove, "remove")?;
            if remove.iter().any(|k| k.contains('\0')) {
                return invalid("remove: a key holds the character U+0000, which no engine stores".into());
            }
            // The merged size is checked again by the engine; this refuses early what
            // cannot fit whatever the stored document holds.
            size(fields, limits)
        }
        Request::Lookup { subset, limit, page_token } => {
            keys(subset.keys(), "subset")?;
            if !(1..=MAX_LOOKUP_LIMIT).contains(&limit) {
                return invalid(format!("limit: must be between 1 and {MAX_LOOKUP_LIMIT}, got {limit}"));
            }
            if page_token.is_some_and(|t| t.len() > MAX_KEY_BYTES) {
                return invalid("page_token: not a token this store gave".into());
            }
            size(subset, limits)
        }
        Request::Find { query, limit, page_token } => {
            check(Request::Lookup { subset: &query.subset, limit, page_token }, limits)?;
            search_terms(query)
        }
        Request::Count { subset, at_most } => {
            keys(subset.keys(), "subset")?;
            if at_most == 0 {
                return invalid("at_most: must be at least 1".into());
            }
            size(subset, limits)
        }
    }
}

fn search_terms(query: &crate::store::Query) -> Result<(), StoreError> {
    use crate::store::{MAX_SEARCH_TERMS, MAX_TERM_BYTES};
    if query.terms.is_empty() {
        return Ok(());
    }
    if query.subset.is_empty() {
        return invalid("subset: a search needs at least one pair (whose documents to search)".into());
    }
    if query.terms.len() > MAX_SEARCH_TERMS {
        return invalid(format!("terms: at most {MAX_SEARCH_TERMS}, got {}", query.terms.len()));
    }
    for (i, term) in query.terms.iter().enumerate() {
        if term.words.len() > MAX_TERM_BYTES {
            return invalid(format!("terms[{i}]: {} bytes, over the limit of {MAX_TERM_BYTES}", term.words.len()));
        }
        if term.words.contains('\0') {
            return invalid(format!("terms[{i}]: holds the character U+0000"));
        }
        if crate::text::words(&term.words).next().is_none() {
            return invalid(format!("terms[{i}]: no word to search for in {:?}", term.words));
        }
        keys(term.fields.iter(), &format!("terms[{i}].fields"))?;
    }
    Ok(())
}

/// The lookup limit a gRPC request asks for: 0 means [`DEFAULT_LOOKUP_LIMIT`], except
/// with an empty subset, where "everything, no limit" is refused rather than guessed.
pub(crate) fn wire_lookup_limit(subset: &Fields, limit: u32) -> Result<usize, StoreError> {
    match limit {
        0 if subset.is_empty() => {
            invalid("limit: required when the subset is empty (it would match every document)".into())
        }
        0 => Ok(DEFAULT_LOOKUP_LIMIT),
        n => Ok(n as usize),
    }
}

/// The size a document counts for: its keys' and values' bytes.
pub(crate) fn document_bytes(fields: &Fields) -> usize {
    fields.iter().map(|(k, v)| k.len() + v.len()).sum()
}

fn invalid<T>(reason: String) -> Result<T, StoreError> {
    Err(StoreError::InvalidArgument(reason))
}

fn id(id: &str) -> Result<(), StoreError> {
    if id.is_empty() {
        return invalid("id: required".into());
    }
    if id.len() > MAX_KEY_BYTES {
        return invalid(format!("id: {} bytes, at most {MAX_KEY_BYTES}", id.len()));
    }
    Ok(())
}

fn unique_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return invalid("unique_key: required".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return invalid(format!("unique_key: {} bytes, at most {MAX_KEY_BYTES}", key.len()));
    }
    if key.contains('\0') {
        return invalid("unique_key: holds the character U+0000, which no engine stores".into());
    }
    Ok(())
}

fn keys<'a>(keys: impl IntoIterator<Item = &'a String>, field: &str) -> Result<(), StoreError> {
    for key in keys {
        if key.is_empty() {
            return invalid(format!("{field}: keys must not be empty"));
        }
        if key.len() > MAX_KEY_BYTES {
            let start: String = key.chars().take(32).collect();
            return invalid(format!("{field}: key {start:?}… is {} bytes, at most {MAX_KEY_BYTES}", key.len()));
        }
    }
    Ok(())
}

/// No key or value may hold U+0000: PostgreSQL cannot store it in text or `jsonb`, so
/// every engine refuses it alike.
fn no_nul(fields: &Fields, field: &str) -> Result<(), StoreError> {
    if let Some((k, _)) = fields.iter().find(|(k, v)| k.contains('\0') || v.contains('\0')) {
        let start: String = k.chars().take(32).collect();
        return invalid(format!("{field}: {start:?} holds the character U+0000, which no engine stores"));
    }
    Ok(())
}

fn size(fields: &Fields, limits: &Limits) -> Result<(), StoreError> {
    no_nul(fields, "fields")?;
    let bytes = document_bytes(fields);
    if bytes > limits.max_document_bytes {
        return invalid(format!("document: {bytes} bytes, at most {}", limits.max_document_bytes));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn reason(r: Result<(), StoreError>) -> String {
        match r {
            Err(StoreError::InvalidArgument(m)) => m,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn each_bad_input_is_named() {
        let limits = Limits { max_document_bytes: 10 };
        let ok = fields(&[("k", "v")]);
        assert_eq!(check(Request::Put { fields: &ok }, &limits), Ok(()));
        assert!(reason(check(Request::Put { fields: &fields(&[("", "v")]) }, &limits)).contains("fields: keys"));
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        let big = Limits::default();
        assert!(reason(check(Request::Put { fields: &fields(&[(&long, "")]) }, &big)).contains("257 bytes"));
        assert!(reason(check(Request::Put { fields: &fields(&[("k", "0123456789")]) }, &limits)).contains("11 bytes"));
        assert!(reason(check(Request::Get { id: "" }, &limits)).contains("id: required"));
        let create = |unique_key| check(Request::Create { unique_key, fields: &ok }, &limits);
        assert_eq!(create("user/ada"), Ok(()));
        assert!(reason(create("")).contains("unique_key: required"));
        assert!(reason(create(&long)).contains("unique_key: 257 bytes"));
        assert!(reason(create("a\0b")).contains("unique_key: holds"));
        let remove = vec![String::new()];
        assert!(reason(check(Request::Update { id: "x", fields: &ok, remove: &remove }, &limits)).contains("remove"));
        let lookup = |limit| check(Request::Lookup { subset: &ok, limit, page_token: None }, &limits);
        assert!(reason(lookup(0)).contains("limit"));
        assert!(reason(lookup(MAX_LOOKUP_LIMIT + 1)).contains("limit"));
        assert_eq!(lookup(MAX_LOOKUP_LIMIT), Ok(()));
    }

    #[test]
    fn an_empty_subset_needs_a_limit_on_the_wire() {
        assert!(wire_lookup_limit(&Fields::new(), 0).is_err());
        assert_eq!(wire_lookup_limit(&Fields::new(), 5), Ok(5));
        assert_eq!(wire_lookup_limit(&fields(&[("k", "v")]), 0), Ok(DEFAULT_LOOKUP_LIMIT));
    }
}
