//! The core's memory: the dump's ranges made sorted and non-overlapping, with synthetic
//! bytes laid over them (a patched `_DYNAMIC`) or put where nothing else lies (`r_debug`).

use std::borrow::Cow;

/// One PT_LOAD: `data.len()` bytes at `addr`.
#[derive(Clone, Debug)]
pub struct Segment<'a> {
    pub addr: u64,
    pub data: Cow<'a, [u8]>,
    /// PF_R | PF_W | PF_X bits.
    pub flags: u32,
}

impl Segment<'_> {
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.data.len() as u64)
    }
}

pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;

/// Sorted, non-overlapping segments. Where dump ranges overlap, the one that starts lower
/// keeps its bytes (the one listed first, at one address): a well-formed dump never
/// overlaps, a damaged one must still give a valid core.
#[derive(Clone, Debug, Default)]
pub struct Layout<'a> {
    segments: Vec<Segment<'a>>,
}

impl<'a> Layout<'a> {
    /// `ranges`: (address, bytes) in the dump's order; empty ones and ones that wrap past
    /// the top of the address space are dropped.
    pub fn from_ranges(ranges: impl IntoIterator<Item = (u64, &'a [u8])>) -> Layout<'a> {
        let mut ranges: Vec<(usize, u64, &'a [u8])> = ranges
            .into_iter()
            .filter(|(addr, bytes)| !bytes.is_empty() && addr.checked_add(bytes.len() as u64).is_some())
            .enumerate()
            .map(|(i, (addr, bytes))| (i, addr, bytes))
            .collect();
        // By address, then by the dump's order: the earlier of two ranges at one address wins.
        ranges.sort_by_key(|&(i, addr, _)| (addr, i));
        let mut layout = Layout::default();
        for (_, addr, bytes) in ranges {
            layout.add_uncovered(addr, bytes);
        }
        layout
    }

    pub fn segments(&self) -> &[Segment<'a>] {
        &self.segments
    }

    /// Whether every byte of `addr..addr+len` is in some segment.
    pub fn covers(&self, addr: u64, len: u64) -> bool {
        let mut at = addr;
        let Some(end) = addr.checked_add(len) else { return false };
        while at < end {
            match self.segment_at(at) {
                Some(s) => at = s.end(),
                None => return false,
            }
        }
        true
    }

    /// Reads `buf.len()` bytes at `addr`, across adjacent segments.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let mut done = 0usize;
        while done < buf.len() {
            let Some(at) = addr.checked_add(done as u64) else { return false };
            let Some(s) = self.segment_at(at) else { return false };
            let off = (at - s.addr) as usize;
            let n = (s.data.len() - off).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&s.data[off..off + n]);
            done += n;
        }
        true
    }

    /// Puts `bytes` at `addr`: over the segments there (their bytes are replaced) and in new
    /// segments where there were none.
    pub fn overlay(&mut self, addr: u64, bytes: &[u8], flags: u32) {
        let Some(end) = addr.checked_add(bytes.len() as u64) else { return };
        for s in self.segments.iter_mut().filter(|s| s.addr < end && s.end() > addr) {
            let lo = s.addr.max(addr);
            let hi = s.end().min(end);
            let data = s.data.to_mut();
            data[(lo - s.addr) as usize..(hi - s.addr) as usize]
                .copy_from_slice(&bytes[(lo - addr) as usize..(hi - addr) as usize]);
        }
        self.fill(addr, bytes, flags);
    }

    /// Puts the parts of `bytes` (at `addr`) that no segment holds into new segments; the
    /// segments' own bytes are kept.
    pub fn fill(&mut self, addr: u64, bytes: &[u8], flags: u32) {
        let Some(end) = addr.checked_add(bytes.len() as u64) else { return };
        let mut at = addr;
        while at < end {
            match self.segment_at(at) {
                Some(s) => at = s.end(),
                None => {
                    let next = self.segments.iter().map(|s| s.addr).filter(|&a| a > at).min().unwrap_or(end);
                    let stop = next.min(end);
                    let piece = bytes[(at - addr) as usize..(stop - addr) as usize].to_vec();
                    self.insert(Segment { addr: at, data: Cow::Owned(piece), flags });
                    at = stop;
                }
            }
        }
    }

    /// The lowest page-aligned address from `min` up where `len` bytes touch no segment and
    /// none of `taken` ((start, end) pairs: mappings the process had).
    pub fn free_space(&self, len: u64, min: u64, taken: &[(u64, u64)]) -> Option<u64> {
        const PAGE: u64 = 4096;
        let mut busy: Vec<(u64, u64)> = self.segments.iter().map(|s| (s.addr, s.end())).collect();
        busy.extend(taken.iter().filter(|(lo, hi)| lo < hi));
        busy.sort_unstable();
        let mut at = min;
        for (lo, hi) in busy {
            if at.checked_add(len)? <= lo {
                return Some(at);
            }
            if hi > at {
                at = hi.checked_add(PAGE - 1)? & !(PAGE - 1);
            }
        }
        // Below the canonical user-space top (x86-64: 47 bits).
        (at.checked_add(len)? <= 0x7fff_ffff_f000).then_some(at)
    }

    fn segment_at(&self, addr: u64) -> Option<&Segment<'a>> {
        let i = self.segments.partition_point(|s| s.end() <= addr);
        self.segments.get(i).filter(|s| s.addr <= addr)
    }

    /// Adds the parts of `addr..addr+bytes.len()` that no segment holds yet.
    fn add_uncovered(&mut self, addr: u64, bytes: &'a [u8]) {
        let end = addr + bytes.len() as u64;
        // Ranges arrive by address: only the last segment can overlap this one's start.
        let start = self.segments.last().map_or(addr, |s| s.end().max(addr));
        if start < end {
            let piece = &bytes[(start - addr) as usize..];
            self.segments.push(Segment { addr: start, data: Cow::Borrowed(piece), flags: PF_R | PF_W });
        }
    }

    fn insert(&mut self, segment: Segment<'a>) {
        let i = self.segments.partition_point(|s| s.addr < segment.addr);
        self.segments.insert(i, segment);
    }

    /// Sets each segment's permissions from `perms_at` (the process's mapping there).
    pub fn set_flags(&mut self, perms_at: impl Fn(u64) -> Option<u32>) {
        for s in &mut self.segments {
            if let Some(flags) = perms_at(s.addr) {
                s.flags = flags;
            }
        }
    }
}

impl pylayout::Memory for Layout<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        Layout::read(self, addr, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_ranges_become_disjoint_segments_the_lower_one_wins() {
        let a = [1u8; 16];
        let b = [2u8; 16];
        let c = [3u8; 4];
        let layout =
            Layout::from_ranges([(0x1008, &b[..]), (0x1000, &a[..]), (0x1004, &c[..]), (5, &[][..])]);
        let segs: Vec<(u64, usize)> = layout.segments().iter().map(|s| (s.addr, s.data.len())).collect();
        assert_eq!(segs, [(0x1000, 16), (0x1010, 8)]);
        let mut buf = [0u8; 24];
        assert!(layout.read(0x1000, &mut buf));
        assert_eq!(buf[..16], [1; 16]);
        assert_eq!(buf[16..], [2; 8]);
        assert!(!layout.read(0x1000, &mut [0u8; 25]));
    }

    #[test]
    fn overlay_patches_held_bytes_and_adds_the_rest() {
        let a = [1u8; 8];
        let mut layout = Layout::from_ranges([(0x100, &a[..])]);
        layout.overlay(0x104, &[9; 8], PF_R);
        let mut buf = [0u8; 12];
        assert!(layout.read(0x100, &mut buf));
        assert_eq!(buf, [1, 1, 1, 1, 9, 9, 9, 9, 9, 9, 9, 9]);
        assert_eq!(layout.segments().len(), 2);
        assert!(layout.covers(0x100, 12) && !layout.covers(0x100, 13));
        layout.fill(0xfc, &[5; 20], PF_R);
        let mut buf = [0u8; 20];
        assert!(layout.read(0xfc, &mut buf));
        assert_eq!(buf, [5, 5, 5, 5, 1, 1, 1, 1, 9, 9, 9, 9, 9, 9, 9, 9, 5, 5, 5, 5]);
    }

    #[test]
    fn free_space_avoids_segments_and_mappings() {
        let a = [0u8; 0x100];
        let layout = Layout::from_ranges([(0x10000, &a[..])]);
        assert_eq!(layout.free_space(0x1000, 0x10000, &[(0x11000, 0x13000)]), Some(0x13000));
        assert_eq!(layout.free_space(0x1000, 0x20000, &[]), Some(0x20000));
    }
}
