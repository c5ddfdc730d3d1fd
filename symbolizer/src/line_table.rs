//! A unit's line-table rows, decoded at most once per run and only as far as a lookup needs.
//!
//! Reading a line program from its start for every address (as the symbolizer did) decoded
//! the same rows again for each frame in a unit: the eval loop's unit holds a frame per
//! Python call, and its program is tens of thousands of rows (a third of a run's
//! instructions). Here the rows decoded so far are kept, by sequence, with where decoding
//! stopped: a lookup first searches what is decoded (a binary search per sequence), then
//! decodes on from there, stopping at the row pair that covers the address. The answer is
//! the one a read from the start gives: the first covering pair in the program's order.

use crate::elf::Reader;

type ProgramRows = gimli::LineRows<Reader, gimli::IncompleteLineProgram<Reader>>;

/// A row of the line table: where it starts, its file index and line (0: none).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    pub address: u64,
    pub file: u64,
    pub line: u32,
}

/// The rows of one sequence in the program's order; a row covers the addresses from its own
/// to the next row's (so the last row of a sequence, its end, covers none).
#[derive(Default)]
struct Sequence {
    rows: Vec<Row>,
    /// Some row's address is below the one before it (DWARF says they never are): searched
    /// pair by pair then, as a read from the start does.
    unsorted: bool,
}

impl Sequence {
    fn push(&mut self, row: Row) {
        self.unsorted |= self.rows.last().is_some_and(|last| row.address < last.address);
        self.rows.push(row);
    }

    /// The first row, in order, whose address is at or below `probe` and the next row's above.
    fn covering(&self, probe: u64) -> Option<Row> {
        if self.unsorted {
            return self
                .rows
                .windows(2)
                .find(|w| w[0].address <= probe && probe < w[1].address)
                .map(|w| w[0]);
        }
        // Sorted: only the last row at or below `probe` can start a covering pair.
        let below = self.rows.partition_point(|r| r.address <= probe);
        if below == 0 || below >= self.rows.len() {
            return None;
        }
        self.rows.get(below - 1).copied()
    }
}

pub struct LineTable {
    /// Where decoding stopped; None once the program is read to its end (or failed).
    rows: Option<ProgramRows>,
    /// The sequences decoded to their end row, in the program's order.
    done: Vec<Sequence>,
    /// The sequence being decoded.
    current: Sequence,
}

impl LineTable {
    pub fn new(program: gimli::IncompleteLineProgram<Reader>) -> LineTable {
        LineTable { rows: Some(program.rows()), done: Vec::new(), current: Sequence::default() }
    }

    /// The row covering `probe`: the first such in the program's order.
    pub fn find(&mut self, probe: u64) -> Option<Row> {
        let decoded = self.done.iter().chain(std::iter::once(&self.current));
        if let Some(found) = decoded.into_iter().find_map(|s| s.covering(probe)) {
            return Some(found);
        }
        let rows = self.rows.as_mut()?;
        loop {
            let Ok(Some((_, row))) = rows.next_row() else {
                // The end, or an error (a read from the start stops there too).
                self.rows = None;
                return None;
            };
            let end = row.end_sequence();
            let row = Row {
                address: row.address(),
                file: row.file_index(),
                line: row.line().map_or(0, |l| l.get() as u32),
            };
            let previous = self.current.rows.last().copied();
            self.current.push(row);
            if end {
                self.done.push(std::mem::take(&mut self.current));
            }
            if let Some(found) = previous.filter(|p| p.address <= probe && probe < row.address) {
                return Some(found);
            }
        }
    }

    #[cfg(test)]
    fn decoded(&self) -> usize {
        self.done.iter().map(|s| s.rows.len()).sum::<usize>() + self.current.rows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::ElfFile;

    /// Every row pair of `program` read from its start, as the symbolizer did before: the
    /// first pair covering `probe`.
    fn from_the_start(program: gimli::IncompleteLineProgram<Reader>, probe: u64) -> Option<Row> {
        let mut rows = program.rows();
        let mut previous: Option<Row> = None;
        while let Ok(Some((_, row))) = rows.next_row() {
            if let Some(p) = previous.filter(|p| p.address <= probe && probe < row.address()) {
                return Some(p);
            }
            previous = (!row.end_sequence()).then(|| Row {
                address: row.address(),
                file: row.file_index(),
                line: row.line().map_or(0, |l| l.get() as u32),
            });
        }
        None
    }

    /// Every address of this test binary's own units (several sequences each, in no order of
    /// address), looked up in one table in a scrambled order, answers as a read from the start.
    #[test]
    fn lookups_in_any_order_answer_as_a_read_from_the_start() {
        let file = ElfFile::open(&std::env::current_exe().unwrap()).unwrap();
        let dwarf = file.dwarf().unwrap();
        let mut units = dwarf.units();
        let (mut checked, mut units_checked) = (0, 0);
        while let Ok(Some(header)) = units.next() {
            let unit = dwarf.unit(header).unwrap();
            let Some(program) = unit.line_program.clone() else { continue };
            // Every row's address, its neighbours and the gaps between sequences.
            let mut probes = Vec::new();
            let mut rows = program.clone().rows();
            while let Ok(Some((_, row))) = rows.next_row() {
                probes.extend([row.address().saturating_sub(1), row.address(), row.address() + 1]);
            }
            if probes.len() < 30 {
                continue;
            }
            // At most 300 of them (each checked by a read from the start), in a fixed scramble.
            let order: Vec<u64> =
                (0..probes.len().min(300)).map(|i| probes[(i * 7919) % probes.len()]).collect();
            let mut table = LineTable::new(program.clone());
            for probe in order {
                assert_eq!(table.find(probe), from_the_start(program.clone(), probe), "{probe:#x}");
                checked += 1;
            }
            units_checked += 1;
            if units_checked == 40 {
                break;
            }
        }
        assert!(units_checked >= 10 && checked > 3000, "{units_checked} units, {checked} lookups");
    }

    /// A lookup decodes only up to the row it needs, and the rows decoded are never decoded
    /// again: a second lookup of an earlier address decodes nothing.
    #[test]
    fn rows_are_decoded_once_and_only_as_far_as_needed() {
        let file = ElfFile::open(&std::env::current_exe().unwrap()).unwrap();
        let dwarf = file.dwarf().unwrap();
        let mut units = dwarf.units();
        // The unit with the longest program.
        let mut longest: Option<(usize, gimli::IncompleteLineProgram<Reader>)> = None;
        while let Ok(Some(header)) = units.next() {
            let Ok(unit) = dwarf.unit(header) else { continue };
            let Some(program) = unit.line_program.clone() else { continue };
            let mut rows = program.clone().rows();
            let mut count = 0;
            while let Ok(Some(_)) = rows.next_row() {
                count += 1;
            }
            if longest.as_ref().is_none_or(|l| count > l.0) {
                longest = Some((count, program));
            }
        }
        let (count, program) = longest.unwrap();
        // An address of a row in the middle of the program.
        let mut rows = program.clone().rows();
        let mut middle = None;
        for index in 0.. {
            let (_, row) = rows.next_row().unwrap().unwrap();
            if index >= count / 2 && !row.end_sequence() {
                middle = Some(row.address());
                break;
            }
        }
        let probe = middle.unwrap();
        let mut table = LineTable::new(program.clone());
        assert!(table.find(probe).is_some());
        let decoded = table.decoded();
        assert!(decoded < count, "{decoded} of {count} rows decoded to find a row in the middle");
        assert!(table.find(probe).is_some());
        assert_eq!(table.decoded(), decoded, "the same lookup again decoded rows");
    }
}
