//! The leapfrog walk over sorted posting lists, in either order: the ids held by at
//! least one list of every group, each found by seeks, never by reading a list whole.
//! A group of one list is a subset pair; a group of several is a search word's forms.

use std::ops::Bound;

use crate::store::{Count, StoreError};

/// Sorted posting lists an engine can seek in.
pub(crate) trait Postings {
    type List;
    /// In `list`, the first id at or after `from` (or, `newest_first`, the last at or
    /// before it).
    fn seek(&self, list: &Self::List, from: Bound<&str>, newest_first: bool) -> Result<Option<String>, StoreError>;
}

/// The best id of any list of `group` from `from` on: the smallest, or newest first the
/// largest.
fn seek_group<P: Postings>(
    p: &P,
    group: &[P::List],
    from: Bound<&str>,
    newest_first: bool,
) -> Result<Option<String>, StoreError> {
    let mut best: Option<String> = None;
    for list in group {
        if let Some(id) = p.seek(list, from, newest_first)? {
            let better = match &best {
                None => true,
                Some(b) => (id < *b) != newest_first,
            };
            if better {
                best = Some(id);
            }
        }
    }
    Ok(best)
}

/// Calls `visit` for every id in every group, in order from `start` on, until it
/// answers false. `groups` must not be empty.
pub(crate) fn walk<P: Postings>(
    p: &P,
    groups: &[Vec<P::List>],
    newest_first: bool,
    start: Bound<&str>,
    mut visit: impl FnMut(&str) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let Some((first, rest)) = groups.split_first() else {
        return Ok(());
    };
    let mut candidate = seek_group(p, first, start, newest_first)?;
    'walk: while let Some(id) = candidate.take() {
        for group in rest {
            match seek_group(p, group, Bound::Included(&id), newest_first)? {
                None => break 'walk,
                Some(next) if next != id => {
                    candidate = seek_group(p, first, Bound::Included(&next), newest_first)?;
                    continue 'walk;
                }
                Some(_) => {}
            }
        }
        if !visit(&id)? {
            break;
        }
        candidate = seek_group(p, first, Bound::Excluded(&id), newest_first)?;
    }
    Ok(())
}

/// How many ids every group holds, counting at most `at_most`.
pub(crate) fn count<P: Postings>(p: &P, groups: &[Vec<P::List>], at_most: usize) -> Result<Count, StoreError> {
    let mut count = Count { count: 0, capped: false };
    walk(p, groups, false, Bound::Unbounded, |_| {
        if count.count == at_most {
            count.capped = true;
            return Ok(false);
        }
        count.count += 1;
        Ok(true)
    })?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    struct Lists(Vec<BTreeSet<String>>);

    impl Postings for Lists {
        type List = usize;
        fn seek(&self, list: &usize, from: Bound<&str>, newest: bool) -> Result<Option<String>, StoreError> {
            let set = &self.0[*list];
            Ok(if newest {
                set.range::<str, _>((Bound::Unbounded, from)).next_back().cloned()
            } else {
                set.range::<str, _>((from, Bound::Unbounded)).next().cloned()
            })
        }
    }

    #[test]
    fn intersects_unions_in_both_orders() {
        let set = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
        let lists = Lists(vec![set(&["a", "b", "c", "e", "f"]), set(&["b", "d"]), set(&["e", "f"]), set(&["a"])]);
        let run = |groups: &[Vec<usize>], newest: bool, start: Bound<&str>| {
            let mut out = Vec::new();
            walk(&lists, groups, newest, start, |id| {
                out.push(id.to_owned());
                Ok(true)
            })
            .unwrap();
            out
        };
        assert_eq!(run(&[vec![0], vec![1, 2]], false, Bound::Unbounded), ["b", "e", "f"]);
        assert_eq!(run(&[vec![0], vec![1, 2]], true, Bound::Unbounded), ["f", "e", "b"]);
        assert_eq!(run(&[vec![1, 2], vec![0]], true, Bound::Excluded("e")), ["b"]);
        assert_eq!(run(&[vec![0], vec![3]], false, Bound::Unbounded), ["a"]);
        assert!(run(&[vec![1], vec![3]], false, Bound::Unbounded).is_empty());
    }
}
