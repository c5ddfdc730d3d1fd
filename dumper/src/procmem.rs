//! Reading another process's memory, and the readable regions of its address space.
//!
//! Reads go through a page cache: the Python walk reads a few fields of each structure,
//! and one `process_vm_readv` per field made ~160 system calls per thread (issue 14).
//! A page is fetched whole the first time any of its bytes is read, so a thread state,
//! its frames and the code objects they share cost a few reads per thread. Protection is
//! per page, so a read succeeds exactly when it did without the cache; what the cache adds
//! is one snapshot per page for the whole dump (a field read twice reads the same value).

use pylayout::Memory;
use rustc_hash::FxHashMap as IntMap;
use std::cell::{Cell, RefCell};
use std::io;
use std::mem::MaybeUninit;

const PAGE: u64 = 4096;
/// Reads longer than this go straight to the process (a report buffer, a thread-name
/// table, a local's contents): read once, they gain nothing from the cache.
const CACHED_READ_MAX: usize = 2 * PAGE as usize;
/// Pages kept at most (64 MiB); past it reads go straight to the process.
const MAX_PAGES: usize = 16 * 1024;
/// Iovecs per `process_vm_readv` call (the kernel's UIO_MAXIOV).
const BATCH: usize = 1024;

/// A cached page: its bytes, or None where the process could not be read.
type Page = Option<Box<[u8; PAGE as usize]>>;

/// `process_vm_readv` on another process (which we have stopped with ptrace, or which is
/// our parent waiting for us), through a page cache.
pub struct ProcessMemory {
    pub pid: i32,
    pages: RefCell<IntMap<u64, Page>>,
    /// `process_vm_readv` calls made, for the tests and the benchmark.
    syscalls: Cell<u64>,
}

impl ProcessMemory {
    pub fn new(pid: i32) -> Self {
        ProcessMemory { pid, pages: RefCell::new(IntMap::default()), syscalls: Cell::new(0) }
    }

    /// How many `process_vm_readv` calls this reader made.
    pub fn syscalls(&self) -> u64 {
        self.syscalls.get()
    }

    /// `buf.len()` bytes at `addr`, read from the process now.
    fn read_direct(&self, addr: u64, buf: &mut [u8]) -> bool {
        // SAFETY: `buf` is ours, writable for its whole length.
        unsafe { self.read_into(addr, buf.as_mut_ptr(), buf.len()) }
    }

    /// `len` bytes at `addr` into `dest`, read from the process now; true only if all were.
    ///
    /// # Safety
    /// `dest` must be valid for writes of `len` bytes (it need not be initialized).
    unsafe fn read_into(&self, addr: u64, dest: *mut u8, len: usize) -> bool {
        self.syscalls.set(self.syscalls.get() + 1);
        let local = libc::iovec { iov_base: dest.cast(), iov_len: len };
        let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: len };
        // SAFETY: the local iovec is writable (the caller's promise); the kernel checks the
        // remote range.
        let n = unsafe { libc::process_vm_readv(self.pid, &local, 1, &remote, 1, 0) };
        n == len as isize
    }

    /// The page at `base` (a multiple of PAGE), fetched on first use. Not zeroed first: the
    /// read fills it or it is dropped (zeroing was ~5% of the helper's instructions at 1000
    /// threads).
    fn fetch(&self, base: u64) -> Page {
        let mut page = Box::<[u8; PAGE as usize]>::new_uninit();
        // SAFETY: the box holds PAGE writable bytes.
        let whole = unsafe { self.read_into(base, page.as_mut_ptr().cast(), PAGE as usize) };
        // SAFETY: a whole read wrote every byte of the page.
        whole.then(|| unsafe { page.assume_init() })
    }

    /// The 8-byte words at `addrs`, read now (not through the cache) in one system call per
    /// 1024; None if any is unreadable. For comparing a few fields of many structures while
    /// the process is stopped (again.rs): fetching the pages that hold them cost ~7 µs per
    /// thread there.
    pub fn gather_words(&self, addrs: &[u64]) -> Option<Vec<u64>> {
        let spans: Vec<(u64, usize)> = addrs.iter().map(|&a| (a, 8)).collect();
        let bytes = self.gather(&spans)?;
        Some(bytes.chunks_exact(8).map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default())).collect())
    }

    /// The bytes of each (address, length) of `spans`, read now (not through the cache) in
    /// one system call per 1024 spans, one after the other; None if any is unreadable.
    pub fn gather(&self, spans: &[(u64, usize)]) -> Option<Vec<u8>> {
        let mut bytes = vec![0u8; spans.iter().map(|&(_, len)| len).sum()];
        let mut done = 0;
        for batch in spans.chunks(BATCH) {
            let len: usize = batch.iter().map(|&(_, len)| len).sum();
            let local = libc::iovec { iov_base: bytes[done..].as_mut_ptr().cast(), iov_len: len };
            let remote: Vec<libc::iovec> = batch
                .iter()
                .map(|&(addr, len)| libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: len })
                .collect();
            self.syscalls.set(self.syscalls.get() + 1);
            // SAFETY: the local iovec is the rest of `bytes`, at least `len` long; the kernel
            // checks the remote ones.
            let n = unsafe {
                libc::process_vm_readv(self.pid, &local, 1, remote.as_ptr(), remote.len() as libc::c_ulong, 0)
            };
            if n != len as isize {
                return None;
            }
            done += len;
        }
        Some(bytes)
    }

    /// Fetches the pages holding `addrs` that are not cached yet, up to [`BATCH`] pages per
    /// system call (`process_vm_readv` with an iovec per page, each read into its own
    /// page): for the walk's next step over every thread at once (pymem.rs), which read
    /// them one system call each (~3 µs apiece at 1000 threads; a batch costs ~1 µs a
    /// page). A call stops at the first page it cannot read; the pages before it are
    /// kept, that one is left to a later read to find unreadable, and the rest are asked
    /// again.
    fn prefetch_pages(&self, addrs: &[u64]) {
        let mut pages = self.pages.borrow_mut();
        let mut wanted: Vec<u64> =
            addrs.iter().map(|a| a & !(PAGE - 1)).filter(|base| !pages.contains_key(base)).collect();
        wanted.sort_unstable();
        wanted.dedup();
        wanted.truncate(MAX_PAGES.saturating_sub(pages.len()));
        let mut rest = &wanted[..];
        while !rest.is_empty() {
            let batch = &rest[..rest.len().min(BATCH)];
            let mut boxes: Vec<Box<MaybeUninit<[u8; PAGE as usize]>>> =
                batch.iter().map(|_| Box::new_uninit()).collect();
            let local: Vec<libc::iovec> = boxes
                .iter_mut()
                .map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: PAGE as usize })
                .collect();
            let remote: Vec<libc::iovec> = batch
                .iter()
                .map(|&base| libc::iovec { iov_base: base as *mut libc::c_void, iov_len: PAGE as usize })
                .collect();
            self.syscalls.set(self.syscalls.get() + 1);
            // SAFETY: each local iovec is one of `boxes`, PAGE writable bytes; the kernel
            // checks the remote ones. Both arrays have batch.len() entries.
            let n = unsafe {
                libc::process_vm_readv(
                    self.pid,
                    local.as_ptr(),
                    local.len() as libc::c_ulong,
                    remote.as_ptr(),
                    remote.len() as libc::c_ulong,
                    0,
                )
            };
            // Every iovec is one whole page, and protection is per page: a page is read
            // whole or not at all.
            let whole = if n > 0 { n as usize / PAGE as usize } else { 0 };
            for (&base, page) in batch.iter().zip(boxes).take(whole) {
                // SAFETY: the kernel wrote every byte of the first `whole` pages.
                pages.insert(base, Some(unsafe { page.assume_init() }));
            }
            // The page that stopped the call (if any) is skipped: a read finds out.
            rest = &rest[(whole + 1).min(rest.len())..];
        }
    }

    /// Copies [addr, addr + buf.len()) out of cached pages; false if one is unreadable.
    fn read_cached(&self, addr: u64, buf: &mut [u8]) -> bool {
        let mut pages = self.pages.borrow_mut();
        let mut done = 0usize;
        while done < buf.len() {
            let at = addr + done as u64;
            let (base, offset) = (at & !(PAGE - 1), (at & (PAGE - 1)) as usize);
            let n = (PAGE as usize - offset).min(buf.len() - done);
            if !pages.contains_key(&base) && pages.len() >= MAX_PAGES {
                drop(pages);
                return self.read_direct(addr, buf);
            }
            let page = pages.entry(base).or_insert_with(|| self.fetch(base));
            let Some(bytes) = page else { return false };
            buf[done..done + n].copy_from_slice(&bytes[offset..offset + n]);
            done += n;
        }
        true
    }
}

impl Memory for ProcessMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        if buf.is_empty() {
            return true;
        }
        if buf.len() > CACHED_READ_MAX || addr.checked_add(buf.len() as u64).is_none() {
            return self.read_direct(addr, buf);
        }
        self.read_cached(addr, buf)
    }

    fn prefetch(&self, addrs: &[u64]) {
        self.prefetch_pages(addrs);
    }
}

/// A readable mapping of the process: [start, end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
}

/// The readable regions from /proc/PID/maps, sorted.
pub fn readable_regions(pid: i32) -> io::Result<Vec<Region>> {
    Ok(parse_maps(&read_maps(pid)?))
}

/// The text of /proc/PID/maps.
pub fn read_maps(pid: i32) -> io::Result<String> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
}

/// The readable regions of a maps text, sorted.
pub fn parse_maps(maps: &str) -> Vec<Region> {
    let mut out: Vec<Region> = maps
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let range = parts.next()?;
            let perms = parts.next()?;
            // [vvar] is mapped readable but faults on read through process_vm_readv.
            if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vvar_vclock]") {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            Some(Region { start: u64::from_str_radix(a, 16).ok()?, end: u64::from_str_radix(b, 16).ok()? })
        })
        .collect();
    out.sort_by_key(|r| r.start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pages` pages of ours, page `hole` unreadable, every other byte its offset from the
    /// start (as u8); unmapped on drop.
    struct Guarded(*mut u8, usize);

    impl Guarded {
        /// Two pages, the second unreadable.
        fn new() -> Guarded {
            Guarded::with_hole(2, 1)
        }

        fn with_hole(pages: usize, hole: usize) -> Guarded {
            let len = pages * PAGE as usize;
            // SAFETY: a fresh anonymous mapping of `len` bytes, written within it, then one
            // of its pages made unreadable.
            unsafe {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                assert_ne!(p, libc::MAP_FAILED);
                for i in 0..len {
                    *p.cast::<u8>().add(i) = i as u8;
                }
                let unreadable = p.cast::<u8>().add(hole * PAGE as usize).cast();
                assert_eq!(libc::mprotect(unreadable, PAGE as usize, libc::PROT_NONE), 0);
                Guarded(p.cast(), len)
            }
        }
    }

    impl Drop for Guarded {
        fn drop(&mut self) {
            // SAFETY: unmapping our own mapping.
            unsafe { libc::munmap(self.0.cast(), self.1) };
        }
    }

    #[test]
    fn cached_reads_succeed_and_fail_as_direct_ones() {
        let g = Guarded::new();
        let base = g.0 as u64;
        let mem = ProcessMemory::new(std::process::id() as i32);
        let mut buf = [0u8; 16];
        for (addr, len) in
            [(base, 16), (base + PAGE - 16, 16), (base + PAGE - 8, 16), (base + PAGE, 8), (base + 100, 8)]
        {
            let cached = mem.read(addr, &mut buf[..len]);
            let direct = mem.read_direct(addr, &mut [0u8; 16][..len]);
            assert_eq!(cached, direct, "read of {len} bytes at page offset {}", addr - base);
        }
        assert!(mem.read(base + PAGE - 16, &mut buf));
        assert_eq!(buf[0], (PAGE - 16) as u8);
        assert!(!mem.read(base + PAGE - 8, &mut buf), "a read into the unreadable page fails");
    }

    #[test]
    fn a_page_is_read_once() {
        let g = Guarded::new();
        let base = g.0 as u64;
        let mem = ProcessMemory::new(std::process::id() as i32);
        for i in 0..100 {
            assert_eq!(
                mem.read_u64(base + 8 * i),
                Some(u64::from_le_bytes(std::array::from_fn(|j| (8 * i as usize + j) as u8)))
            );
        }
        assert_eq!(mem.syscalls(), 1);
        // A large read goes straight to the process (and fails as a direct one does).
        assert!(!mem.read(base, &mut vec![0u8; CACHED_READ_MAX + 1]));
        assert_eq!(mem.syscalls(), 2);
    }

    #[test]
    fn prefetched_pages_read_as_direct_ones_and_an_unreadable_one_stays_unreadable() {
        let h = Guarded::with_hole(3, 1);
        let base = h.0 as u64;
        let mem = ProcessMemory::new(std::process::id() as i32);
        // Two addresses in the first page, one in each of the others, out of order.
        mem.prefetch(&[base + 2 * PAGE + 8, base + 16, base + PAGE + 8, base + 24]);
        // One call stopped at the middle page, one more for the last.
        assert_eq!(mem.syscalls(), 2);
        assert_eq!(mem.read_u8(base + 100), Some(100));
        assert_eq!(mem.read_u8(base + 2 * PAGE + 7), Some(7));
        assert_eq!(mem.syscalls(), 2, "both readable pages came from the prefetch");
        assert_eq!(mem.read_u8(base + PAGE + 100), None);
        assert!(!mem.read(base + PAGE - 8, &mut [0u8; 16]), "a read into the hole fails");
        // Cached pages are not fetched again.
        mem.prefetch(&[base, base + 2 * PAGE]);
        assert_eq!(mem.syscalls(), 3, "only the middle page's own read since");
    }

    #[test]
    fn gathered_words_come_in_one_call_or_not_at_all() {
        let g = Guarded::new();
        let base = g.0 as u64;
        let mem = ProcessMemory::new(std::process::id() as i32);
        let word = |at: u64| u64::from_le_bytes(std::array::from_fn(|j| (at as usize + j) as u8));
        assert_eq!(
            mem.gather_words(&[base + 16, base, base + 800]),
            Some(vec![word(16), word(0), word(800)])
        );
        assert_eq!(mem.syscalls(), 1);
        assert_eq!(mem.gather_words(&[base + 16, base + PAGE + 8]), None, "one word is unreadable");
        // Neighbours and others, in the order asked.
        assert_eq!(
            mem.gather_words(&[base + 40, base + 48, base + 56, base + 8, base + 16, base + 400]),
            Some([40, 48, 56, 8, 16, 400].map(word).to_vec())
        );
        // Next to a readable word, an unreadable one still fails the whole gather.
        assert_eq!(mem.gather_words(&[base + PAGE - 8, base + PAGE]), None);
    }

    #[test]
    fn maps_keep_only_readable_regions() {
        let maps = "00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/dbus-daemon\n\
                    00651000-00652000 ---p 00051000 08:02 173521 /usr/bin/dbus-daemon\n\
                    7ffd1000-7ffd3000 r--p 00000000 00:00 0 [vvar]\n\
                    7ffe1000-7ffe3000 rw-p 00000000 00:00 0 [stack]\n";
        assert_eq!(
            parse_maps(maps),
            vec![Region { start: 0x400000, end: 0x452000 }, Region { start: 0x7ffe1000, end: 0x7ffe3000 }]
        );
    }
}
