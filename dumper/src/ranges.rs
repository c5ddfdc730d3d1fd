//! The set of memory ranges to copy into the dump: merged, and clamped to what is really
//! readable, so one bad pointer can never make the writer fail the whole dump.

use crate::procmem::Region;

#[derive(Default, Debug, Clone)]
pub struct RangeSet {
    ranges: Vec<(u64, u64)>,
}

impl RangeSet {
    /// Adds [start, start + len); empty or overflowing ranges are ignored.
    pub fn add(&mut self, start: u64, len: u64) {
        if len == 0 || start == 0 {
            return;
        }
        if let Some(end) = start.checked_add(len) {
            self.ranges.push((start, end));
        }
    }

    /// Merged, sorted ranges intersected with `readable` (sorted, non-overlapping).
    pub fn finish(mut self, readable: &[Region]) -> Vec<(u64, u64)> {
        self.ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (s, e) in self.ranges {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        let mut out = Vec::new();
        for (s, e) in merged {
            // Clip against every readable region it overlaps (ranges may span two mappings).
            let first = readable.partition_point(|r| r.end <= s);
            for r in &readable[first..] {
                if r.start >= e {
                    break;
                }
                let (cs, ce) = (s.max(r.start), e.min(r.end));
                if cs < ce {
                    match out.last_mut() {
                        Some((_, last_end)) if *last_end == cs => *last_end = ce,
                        _ => out.push((cs, ce)),
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_and_clamps() {
        let mut set = RangeSet::default();
        set.add(100, 50);
        set.add(120, 100);
        set.add(1000, 10);
        set.add(5000, 10); // unreadable
        set.add(0, 10); // NULL
        let readable = [
            Region { start: 0, end: 200 },
            Region { start: 200, end: 210 },
            Region { start: 990, end: 1005 },
        ];
        assert_eq!(set.finish(&readable), vec![(100, 210), (1000, 1005)]);
    }
}
