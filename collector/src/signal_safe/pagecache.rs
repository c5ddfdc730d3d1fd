//! The page cache a report reads its own process through (issue 14: one
//! `process_vm_readv` per field made a report cost some 137 reads per thread).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

/// Bytes per cached page: x86-64's protection granularity, so a page is readable whole or
/// not at all, and reading it whole fails exactly when any smaller read inside it would.
pub const PAGE: usize = 4096;
/// Pages one report keeps (256 KiB, in .bss: untouched until a report), in sets of
/// [`WAYS`] by page number, the least recently used of a set replaced: the thread states,
/// frames, code objects and strings of a traceback, or a module table, fit without evicting
/// each other (measured with bench/crash_to_exit.py's read counts).
pub const CACHE_PAGES: usize = 64;
/// Pages per set: 4 ways read 100 threads' tracebacks with about half the reads of a
/// direct-mapped cache of the same size.
pub const WAYS: usize = 4;
const SETS: usize = CACHE_PAGES / WAYS;

/// What one page of the cache holds: which page (page number + 1; 0: none) and whether it
/// could be read (an unreadable page is remembered too, so it costs one read per report).
/// Kept apart from the bytes: clearing the cache, and looking a page up, touch this small
/// table only (issue 14: with a tag beside each page, a crash's first report faulted in
/// every page of the cache just to clear it, 64 page faults before its first read).
#[derive(Clone, Copy)]
struct Slot {
    tag: u64,
    readable: bool,
    /// When it was last used (the cache's clock then): the oldest of a set goes first.
    used: u64,
}

/// The slots, their pages' bytes and the clock that orders their use.
struct Slots {
    clock: u64,
    slots: [Slot; CACHE_PAGES],
    bytes: [[u8; PAGE]; CACHE_PAGES],
}

/// A small set-associative cache of whole pages: a structure, a frame or a string costs one
/// read of its page instead of one per field. It never allocates; `fill` reads the memory.
/// Reads longer than a page go straight to `fill`.
///
/// Not synchronised: one thread at a time uses it (for [`REPORT_CACHE`], the holder of the
/// report lock), and [`PageCache::clear`] starts each report, so no report sees another's
/// pages. Within a report, memory that changes after its page was read is seen as it was.
pub struct PageCache {
    slots: UnsafeCell<Slots>,
    /// Reads made through `fill` (misses and long reads), for tests and measurements.
    fills: AtomicU64,
}

// SAFETY: see the type's documentation: a single user at a time, by contract.
unsafe impl Sync for PageCache {}

/// The cache the signal handlers' reports read through.
pub static REPORT_CACHE: PageCache = PageCache::new();

/// Starts a report's reads: forgets every page the previous report kept. The caller holds
/// the report lock.
pub fn begin_report() {
    REPORT_CACHE.clear();
}

impl PageCache {
    pub const fn new() -> PageCache {
        const EMPTY: Slot = Slot { tag: 0, readable: false, used: 0 };
        let slots = Slots { clock: 0, slots: [EMPTY; CACHE_PAGES], bytes: [[0; PAGE]; CACHE_PAGES] };
        PageCache { slots: UnsafeCell::new(slots), fills: AtomicU64::new(0) }
    }

    /// Forgets every page.
    pub fn clear(&self) {
        // SAFETY: the single user (see the type) is the caller; no reference into the
        // slots outlives a call.
        let slots = unsafe { &mut *self.slots.get() };
        slots.slots.iter_mut().for_each(|s| (s.tag, s.used) = (0, 0));
        slots.clock = 0;
    }

    /// How many reads went to `fill` so far.
    #[cfg(test)]
    pub fn fills(&self) -> u64 {
        self.fills.load(Ordering::Relaxed)
    }

    /// Fills `buf` from `addr` (non-zero, not wrapping) page by page; false if any byte
    /// is unreadable.
    pub fn read(&self, addr: u64, buf: &mut [u8], fill: &dyn Fn(u64, &mut [u8]) -> bool) -> bool {
        if buf.len() > PAGE {
            self.fills.fetch_add(1, Ordering::Relaxed);
            return fill(addr, buf);
        }
        let (mut at, mut done) = (addr, 0usize);
        while done < buf.len() {
            let page = at / PAGE as u64;
            let offset = (at % PAGE as u64) as usize;
            let n = (PAGE - offset).min(buf.len() - done);
            let (Some(bytes), Some(dest)) = (self.page(page, fill), buf.get_mut(done..done + n)) else {
                return false;
            };
            match bytes.get(offset..offset + n) {
                Some(src) => dest.copy_from_slice(src),
                None => return false,
            }
            done += n;
            at += n as u64;
        }
        true
    }

    /// The bytes of page number `page`, read on a miss; None if it is unreadable.
    fn page(&self, page: u64, fill: &dyn Fn(u64, &mut [u8]) -> bool) -> Option<&[u8; PAGE]> {
        // SAFETY: the single user (see the type) is the caller; the returned borrow ends
        // before the next call into the cache.
        let Slots { clock, slots, bytes } = unsafe { &mut *self.slots.get() };
        *clock += 1;
        let first = (page % SETS as u64) as usize * WAYS;
        let set = slots.get_mut(first..first + WAYS)?;
        let way = match set.iter().position(|s| s.tag == page + 1) {
            Some(hit) => hit,
            None => {
                let oldest = set.iter().enumerate().min_by_key(|(_, s)| s.used).map_or(0, |(i, _)| i);
                let slot = set.get_mut(oldest)?;
                self.fills.fetch_add(1, Ordering::Relaxed);
                slot.readable = fill(page * PAGE as u64, bytes.get_mut(first + oldest)?);
                slot.tag = page + 1;
                oldest
            }
        };
        let slot = set.get_mut(way)?;
        slot.used = *clock;
        let readable = slot.readable;
        bytes.get(first + way).filter(|_| readable)
    }
}

impl Default for PageCache {
    fn default() -> PageCache {
        PageCache::new()
    }
}

#[cfg(test)]
mod tests {
    use super::super::memory::{read_self, refresh_pid, SelfMemory};
    use super::{PageCache, PAGE};
    use pylayout::Memory;

    /// `pages` fresh pages, each byte its offset's low bits plus the page's index; the
    /// pages listed in `unreadable` are made PROT_NONE.
    fn mapping(pages: usize, unreadable: &[usize]) -> u64 {
        // SAFETY: a fresh anonymous mapping, written only within its length, then
        // protected page by page; it is never unmapped (tests are short-lived).
        unsafe {
            let len = pages * PAGE;
            let p = libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            let bytes = core::slice::from_raw_parts_mut(p as *mut u8, len);
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = (i as u8).wrapping_add((i / PAGE) as u8 * 16);
            }
            for &page in unreadable {
                assert_eq!(libc::mprotect((p as *mut u8).add(page * PAGE).cast(), PAGE, libc::PROT_NONE), 0);
            }
            p as u64
        }
    }

    fn boxed_cache() -> Box<PageCache> {
        refresh_pid();
        Box::default()
    }

    #[test]
    fn a_read_across_two_pages_costs_two_fills_then_none() {
        let cache = boxed_cache();
        let base = mapping(2, &[]);
        let (mut got, mut want) = ([0u8; 24], [0u8; 24]);
        assert!(cache.read(base + PAGE as u64 - 8, &mut got, &read_self));
        assert!(read_self(base + PAGE as u64 - 8, &mut want));
        assert_eq!(got, want);
        assert_eq!(cache.fills(), 2);
        // Every field of both pages now comes from the cache.
        for offset in (0..2 * PAGE as u64 - 8).step_by(40) {
            let mut field = [0u8; 8];
            assert!(cache.read(base + offset, &mut field, &read_self));
            assert!(read_self(base + offset, &mut want[..8]));
            assert_eq!(field, want[..8]);
        }
        assert_eq!(cache.fills(), 2);
    }

    #[test]
    fn unreadable_pages_fail_as_uncached_reads_do() {
        let cache = boxed_cache();
        let base = mapping(3, &[1]);
        let page = PAGE as u64;
        for (addr, len) in [
            (base, 8),
            (base + page - 4, 8),
            (base + page - 1, 1),
            (base + page, 1),
            (base + 2 * page - 4, 8),
            (base + 2 * page, 16),
            (base + page - 100, PAGE),
            (base + 3 * page - 8, 16),
        ] {
            let (mut got, mut want) = (vec![0u8; len], vec![0u8; len]);
            let ok = read_self(addr, &mut want);
            assert_eq!(cache.read(addr, &mut got, &read_self), ok, "{:#x}+{len}", addr - base);
            if ok {
                assert_eq!(got, want);
            }
        }
        // The unreadable page is remembered: failing again costs no read.
        let fills = cache.fills();
        assert!(!cache.read(base + page + 8, &mut [0u8; 8], &read_self));
        assert_eq!(cache.fills(), fills);
    }

    #[test]
    fn reads_longer_than_a_page_bypass_the_cache() {
        let cache = boxed_cache();
        let base = mapping(3, &[]);
        let (mut got, mut want) = (vec![0u8; 2 * PAGE + 16], vec![0u8; 2 * PAGE + 16]);
        assert!(cache.read(base + 8, &mut got, &read_self));
        assert!(read_self(base + 8, &mut want));
        assert_eq!(got, want);
        assert_eq!(cache.fills(), 1);
    }

    #[test]
    fn the_least_recently_used_page_of_a_set_makes_room() {
        let cache = boxed_cache();
        let base = mapping(super::CACHE_PAGES + 1, &[]);
        // Pages 0, SETS, 2 * SETS… of the mapping share a set: one more than it holds.
        let page = |k: usize| base + (k * super::SETS * PAGE) as u64 + 16;
        let check = |addr: u64| {
            let (mut got, mut want) = ([0u8; 8], [0u8; 8]);
            assert!(cache.read(addr, &mut got, &read_self));
            assert!(read_self(addr, &mut want));
            assert_eq!(got, want);
        };
        for k in 0..super::WAYS {
            check(page(k));
        }
        check(page(0)); // now the most recently used: page 1 is the oldest
        assert_eq!(cache.fills(), super::WAYS as u64);
        check(page(super::WAYS));
        check(page(0));
        assert_eq!(cache.fills(), super::WAYS as u64 + 1);
        check(page(1));
        assert_eq!(cache.fills(), super::WAYS as u64 + 2);
    }

    #[test]
    fn a_new_report_sees_memory_as_it_is_now() {
        refresh_pid();
        let base = mapping(1, &[]);
        let mem = SelfMemory { direct: false, cached: true };
        super::begin_report();
        let before = mem.read_u64(base).unwrap();
        // SAFETY: writing inside the test's own mapping.
        unsafe { *(base as *mut u64) = !before };
        // Within one report the page is kept as first read...
        assert_eq!(mem.read_u64(base), Some(before));
        // ...and the next report reads it again.
        super::begin_report();
        assert_eq!(mem.read_u64(base), Some(!before));
    }
}
