//! Walking a collection's ids in id order over an ordered index of `(field, value, id)`
//! entries, whichever store keeps it: all of them, the ids under one index entry, or
//! the ids under every entry of a query at once. The embedded store walks its index
//! table, the memory store its in-memory index; the algorithm is written once, here.
//!
//! Several filters are served by a leapfrog intersection of their index ranges: each
//! range is entered by a seek at the greatest id any other range has reached, so a
//! page reads the index entries around the ids it shows and skips the rest by seeks,
//! never walking the first filter's range record by record (a listing of one
//! service's failed instances at 20,000 instances read every instance of the service).
//! A page costs `O((limit + alternations) · log n)`: an alternation is a range jumping
//! past ids another range holds, at most the size of the smaller range, and usually a
//! handful.

use std::ops::Bound;

/// A collection's ids and index as a store keeps them, ordered by id.
pub(super) trait Ranges {
    /// Why reading failed.
    type Error;

    /// Visits every id of the collection from `start` on, while `visit` says to go on.
    fn all(&self, start: Bound<&str>, visit: impl FnMut(&str) -> Result<bool, Self::Error>) -> Result<(), Self::Error>;

    /// Visits the ids indexed under `(field, value)` from `start` on, while `visit`
    /// says to go on.
    fn under(
        &self,
        field: &str,
        value: &str,
        start: Bound<&str>,
        visit: impl FnMut(&str) -> Result<bool, Self::Error>,
    ) -> Result<(), Self::Error>;
}

/// Visits the ids after `after` in id order, of the whole collection or of the records
/// indexed under every one of `filters`, while `visit` says to go on.
pub(super) fn each_id<R: Ranges>(
    ix: &R,
    filters: &[(String, String)],
    after: Option<&str>,
    visit: impl FnMut(&str) -> Result<bool, R::Error>,
) -> Result<(), R::Error> {
    let start = after.map_or(Bound::Unbounded, Bound::Excluded);
    match filters {
        [] => ix.all(start, visit),
        [(field, value)] => ix.under(field, value, start, visit),
        _ => leapfrog(ix, filters, after, visit),
    }
}

/// The ids under every one of `filters` (two or more), after `after`.
fn leapfrog<R: Ranges>(
    ix: &R,
    filters: &[(String, String)],
    after: Option<&str>,
    mut visit: impl FnMut(&str) -> Result<bool, R::Error>,
) -> Result<(), R::Error> {
    let mut from: Option<String> = after.map(str::to_owned);
    loop {
        let start = from.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let Some(mut target) = seek(ix, &filters[0], start)? else { return Ok(()) };
        // How many filters in a row (cyclically, ending with the last one asked) hold
        // `target`; all of them means a match.
        let mut agreeing = 1;
        let mut next = 1;
        while agreeing < filters.len() {
            let Some(found) = seek(ix, &filters[next], Bound::Included(&target))? else { return Ok(()) };
            if found == target {
                agreeing += 1;
            } else {
                target = found;
                agreeing = 1;
            }
            next = (next + 1) % filters.len();
        }
        if !visit(&target)? {
            return Ok(());
        }
        from = Some(target);
    }
}

/// The first id under `(field, value)` from `start` on.
fn seek<R: Ranges>(ix: &R, (field, value): &(String, String), start: Bound<&str>) -> Result<Option<String>, R::Error> {
    let mut found = None;
    ix.under(field, value, start, |id| {
        found = Some(id.to_owned());
        Ok(false)
    })?;
    Ok(found)
}

/// How many ids and records a store's reads have visited, counted under test support
/// only: what the conformance suite checks a page's cost by (`Store::visits`). Without
/// test support it counts nothing and takes no space.
#[derive(Debug, Default)]
pub(super) struct Visits {
    #[cfg(any(test, feature = "test-support"))]
    count: std::sync::atomic::AtomicU64,
}

impl Visits {
    /// Counts one more id or record read.
    pub(super) fn one(&self) {
        #[cfg(any(test, feature = "test-support"))]
        self.count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Hands each of `items` (ids, or what holds them) to `visit` while it says to go
    /// on, counting each: how every store walks one range.
    pub(super) fn each<T, E>(
        &self,
        items: impl IntoIterator<Item = Result<T, E>>,
        mut visit: impl FnMut(T) -> Result<bool, E>,
    ) -> Result<(), E> {
        for item in items {
            self.one();
            if !visit(item?)? {
                break;
            }
        }
        Ok(())
    }

    /// How many so far.
    #[cfg(any(test, feature = "test-support"))]
    pub(super) fn total(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}
