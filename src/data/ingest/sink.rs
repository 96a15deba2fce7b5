//! Where the CSV reader puts parsed rows: a growing vector (one pass), or a fixed stretch
//! of one vector's spare capacity (a chunk of a file parsed in parallel, see
//! `csv_reader`).

use std::mem::MaybeUninit;

use super::rows::Row;

/// Where parsed rows go.
pub(super) trait RowSink {
    /// Adds a row; `false` when there is no room for it.
    fn push(&mut self, row: Row) -> bool;
    fn len(&self) -> usize;
    /// Room for `n` more rows, where that can be made.
    fn reserve(&mut self, n: usize);
}

impl RowSink for Vec<Row> {
    fn push(&mut self, row: Row) -> bool {
        Vec::push(self, row);
        true
    }
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn reserve(&mut self, n: usize) {
        Vec::reserve(self, n);
    }
}

/// A fixed stretch of a vector's spare capacity, filled from its start.
pub(super) struct Slots<'a> {
    pub slots: &'a mut [MaybeUninit<Row>],
    pub len: usize,
}

impl RowSink for Slots<'_> {
    fn push(&mut self, row: Row) -> bool {
        match self.slots.get_mut(self.len) {
            Some(slot) => {
                slot.write(row);
                self.len += 1;
                true
            }
            None => false,
        }
    }
    fn len(&self) -> usize {
        self.len
    }
    fn reserve(&mut self, _: usize) {}
}
