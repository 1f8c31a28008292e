//! Walking a collection's ids in id order: all of them, the ids under one index entry,
//! or the ids under every entry of a query at once.
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

use redb::ReadOnlyTable;

use super::handle::Fail;
use super::{index_table, table};
use crate::store::Collection;

/// An index table opened for reading: `(field, value, id)` → `()`.
type Index = ReadOnlyTable<(&'static str, &'static str, &'static str), ()>;

/// Visits the ids after `after` in id order, of the whole collection or of the records
/// indexed under every one of `filters`, while `visit` says to go on.
pub(super) fn each_id(
    txn: &redb::ReadTransaction,
    collection: Collection,
    filters: &[(String, String)],
    after: Option<&str>,
    mut visit: impl FnMut(&str) -> Result<bool, Fail>,
) -> Result<(), Fail> {
    if filters.is_empty() {
        let records = txn.open_table(table(collection))?;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        for stored in records.range::<&str>((start, Bound::Unbounded))? {
            if !visit(stored?.0.value())? {
                break;
            }
        }
        return Ok(());
    }
    let ix = txn.open_table(index_table(collection))?;
    if let [(field, value)] = filters {
        let start = (field.as_str(), value.as_str(), after.unwrap_or(""));
        let start = if after.is_some() { Bound::Excluded(start) } else { Bound::Included(start) };
        for indexed in ix.range((start, Bound::Unbounded))? {
            let (key, _) = indexed?;
            let (f, v, id) = key.value();
            if f != field || v != value || !visit(id)? {
                break;
            }
        }
        return Ok(());
    }
    leapfrog(&ix, filters, after, visit)
}

/// The ids under every one of `filters` (two or more), after `after`.
fn leapfrog(
    ix: &Index,
    filters: &[(String, String)],
    after: Option<&str>,
    mut visit: impl FnMut(&str) -> Result<bool, Fail>,
) -> Result<(), Fail> {
    let mut from: Option<String> = after.map(str::to_owned);
    loop {
        let first = &filters[0];
        let start = from.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let Some(mut target) = seek(ix, first, start)? else { return Ok(()) };
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
fn seek(ix: &Index, (field, value): &(String, String), start: Bound<&str>) -> Result<Option<String>, Fail> {
    let (field, value) = (field.as_str(), value.as_str());
    let start = match start {
        Bound::Included(id) => Bound::Included((field, value, id)),
        Bound::Excluded(id) => Bound::Excluded((field, value, id)),
        Bound::Unbounded => Bound::Included((field, value, "")),
    };
    let Some(entry) = ix.range((start, Bound::Unbounded))?.next() else {
        return Ok(None);
    };
    let (key, _) = entry?;
    let (f, v, id) = key.value();
    Ok((f == field && v == value).then(|| id.to_owned()))
}
