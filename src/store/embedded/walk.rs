//! A collection's tables in one read transaction, walked in id order by the walk every
//! store shares (`store::walk`): the records table for every id, the index table for
//! the ids under an entry.

use std::ops::Bound;

use redb::{ReadOnlyTable, ReadTransaction};

use super::handle::Fail;
use super::{index_table, table};
use crate::store::Collection;
use crate::store::walk::{self, Ranges, Visits};

/// A collection's record and index tables, opened for reading.
struct Tables<'a> {
    records: ReadOnlyTable<&'static str, (u64, &'static [u8])>,
    ix: ReadOnlyTable<(&'static str, &'static str, &'static str), ()>,
    visits: &'a Visits,
}

impl Ranges for Tables<'_> {
    type Error = Fail;

    fn all(&self, start: Bound<&str>, mut visit: impl FnMut(&str) -> Result<bool, Fail>) -> Result<(), Fail> {
        let records = self.records.range::<&str>((start, Bound::Unbounded))?;
        self.visits.each(records.map(|stored| stored.map_err(Fail::from)), |stored| visit(stored.0.value()))
    }

    fn under(
        &self,
        field: &str,
        value: &str,
        start: Bound<&str>,
        mut visit: impl FnMut(&str) -> Result<bool, Fail>,
    ) -> Result<(), Fail> {
        let start = match start {
            Bound::Included(id) => Bound::Included((field, value, id)),
            Bound::Excluded(id) => Bound::Excluded((field, value, id)),
            Bound::Unbounded => Bound::Included((field, value, "")),
        };
        let indexed = self.ix.range((start, Bound::Unbounded))?;
        self.visits.each(indexed.map(|entry| entry.map_err(Fail::from)), |(key, _)| {
            let (f, v, id) = key.value();
            // Past the entry's last id: the range runs on into the next entry.
            if f != field || v != value { Ok(false) } else { visit(id) }
        })
    }
}

/// Visits the ids after `after` in id order, of the whole collection or of the records
/// indexed under every one of `filters`, while `visit` says to go on.
pub(super) fn each_id(
    txn: &ReadTransaction,
    collection: Collection,
    filters: &[(String, String)],
    after: Option<&str>,
    visits: &Visits,
    visit: impl FnMut(&str) -> Result<bool, Fail>,
) -> Result<(), Fail> {
    let tables =
        Tables { records: txn.open_table(table(collection))?, ix: txn.open_table(index_table(collection))?, visits };
    walk::each_id(&tables, filters, after, visit)
}
