//! Full-text search's analysis, the same for every engine that keeps its own index
//! (memory, embedded) and for the terms the PostgreSQL engine hands to its `tsvector`.
//!
//! A document's searchable text is its fields named `_text.NAME`. Each is cut into words
//! (runs of letters and digits), lowercased, with accents folded (`é` is `e`), and each
//! word gives its *forms*: the folded word, its English Snowball stem and its French one
//! (each stem taken from the lowercased word before folding, then folded). A form is
//! indexed twice, under `NAME` and unrestricted, as an index pair whose key starts with
//! U+0000, which no caller's field may hold (`validate.rs`), so it never meets a real
//! pair. A query word matches a document when one of the query word's forms is one of
//! the document's forms: "running" finds "runs", "mangeons" finds "manger", "ecole"
//! finds "école".
//!
//! Bounded: the first [`MAX_INDEXED_BYTES`] of each field are indexed, words over
//! [`MAX_WORD_BYTES`] are skipped (they are not words: base64, hashes).

use std::collections::BTreeSet;

use rust_stemmers::{Algorithm, Stemmer};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::store::{Fields, Term};

/// The prefix of a searchable field.
pub const TEXT_PREFIX: &str = "_text.";
/// The key of an unrestricted form's index pair, and the prefix of a restricted one's.
const ANY: &str = "\u{0}text";
/// What is indexed of one field at most.
pub const MAX_INDEXED_BYTES: usize = 64 * 1024;
/// Longer words are not indexed.
pub const MAX_WORD_BYTES: usize = 48;

fn stemmers() -> &'static (Stemmer, Stemmer) {
    static STEMMERS: std::sync::OnceLock<(Stemmer, Stemmer)> = std::sync::OnceLock::new();
    STEMMERS.get_or_init(|| (Stemmer::create(Algorithm::English), Stemmer::create(Algorithm::French)))
}

fn fold(word: &str) -> String {
    word.nfkd().filter(|c| !is_combining_mark(*c)).collect()
}

/// The words of `text`, lowercased (not folded), within the bounds above.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    let cut = match text.char_indices().find(|(i, _)| *i >= MAX_INDEXED_BYTES) {
        Some((at, _)) => &text[..at],
        None => text,
    };
    cut.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && w.len() <= MAX_WORD_BYTES)
        .map(str::to_lowercase)
}

/// A lowercased word's forms: itself folded, and its English and French stems, folded.
pub fn forms(word: &str) -> BTreeSet<String> {
    let (en, fr) = stemmers();
    let mut out = BTreeSet::new();
    out.insert(fold(word));
    out.insert(fold(&en.stem(word)));
    out.insert(fold(&fr.stem(word)));
    out.retain(|f| !f.is_empty());
    out
}

/// The index key of a form under the field `name` (`None`: unrestricted).
pub fn form_key(name: Option<&str>) -> String {
    match name {
        None => ANY.to_owned(),
        Some(name) => format!("{ANY}.{name}"),
    }
}

/// Every index pair the searchable fields of `fields` give (none without `_text.`
/// fields).
pub fn index_pairs(fields: &Fields) -> BTreeSet<(String, String)> {
    let mut pairs = BTreeSet::new();
    for (key, value) in fields {
        let Some(name) = key.strip_prefix(TEXT_PREFIX) else {
            continue;
        };
        let restricted = form_key(Some(name));
        for word in words(value) {
            for form in forms(&word) {
                pairs.insert((restricted.clone(), form.clone()));
                pairs.insert((ANY.to_owned(), form));
            }
        }
    }
    pairs
}

/// What a search asks, as groups of index pairs: a document matches when it holds at
/// least one pair of every group (one group per query word).
pub fn term_groups(terms: &[Term]) -> Vec<Vec<(String, String)>> {
    let mut groups = Vec::new();
    for term in terms {
        for word in words(&term.words) {
            let forms = forms(&word);
            let mut group = Vec::new();
            if term.fields.is_empty() {
                group.extend(forms.iter().map(|f| (ANY.to_owned(), f.clone())));
            } else {
                for name in &term.fields {
                    group.extend(forms.iter().map(|f| (form_key(Some(name)), f.clone())));
                }
            }
            groups.push(group);
        }
    }
    groups
}

/// The whole index (subset pairs, then searchable forms) of a document.
pub fn all_pairs(fields: &Fields) -> BTreeSet<(String, String)> {
    let mut pairs: BTreeSet<(String, String)> = fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    pairs.extend(index_pairs(fields));
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(words: &str, fields: &[&str]) -> Term {
        Term { words: words.into(), fields: fields.iter().map(|f| (*f).to_owned()).collect() }
    }

    fn matches(text: &str, query: &str) -> bool {
        let fields = Fields::from([("_text.body".to_owned(), text.to_owned())]);
        let pairs = index_pairs(&fields);
        term_groups(&[term(query, &[])]).iter().all(|g| g.iter().any(|p| pairs.contains(p)))
    }

    #[test]
    fn word_forms_in_english_and_french() {
        assert!(matches("She runs every morning", "running"));
        assert!(matches("Nous avons mangé à l'école", "manger"));
        assert!(matches("Trois lettres et une continuation", "lettre continuer"));
        assert!(matches("Nous mangeons à l'école", "ecole"));
        assert!(matches("Réunion du CONSEIL", "reunion conseil"));
        assert!(!matches("Réunion du conseil", "budget"));
        assert!(matches("ada@example.org wrote", "ada@example.org"));
    }

    #[test]
    fn fields_restrict_and_bounds_hold() {
        let fields = Fields::from([
            ("_text.from".to_owned(), "Ada Lovelace".to_owned()),
            ("_text.subject".to_owned(), "Engines".to_owned()),
            ("kind".to_owned(), "ada".to_owned()),
        ]);
        let pairs = index_pairs(&fields);
        let holds = |t: Term| term_groups(&[t]).iter().all(|g| g.iter().any(|p| pairs.contains(p)));
        assert!(holds(term("ada", &["from"])));
        assert!(!holds(term("ada", &["subject"])));
        assert!(holds(term("engine", &["subject", "from"])));
        assert!(words(&"x".repeat(100)).next().is_none());
        assert_eq!(words(&"a ".repeat(MAX_INDEXED_BYTES)).count(), MAX_INDEXED_BYTES / 2);
        assert!(term_groups(&[term("  ,;  ", &[])]).is_empty());
    }
}
