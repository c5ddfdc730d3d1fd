//! Fault-proof reads of our own address space.

use super::pagecache::REPORT_CACHE;
use core::sync::atomic::{AtomicI32, Ordering};
use pylayout::Memory;

/// Our pid, refreshed at the start of every report (`refresh_pid`) so reads need no
/// `getpid()` each, yet a forked child reads itself.
static PID: AtomicI32 = AtomicI32::new(0);

/// Records the current pid for the reads that follow.
pub fn refresh_pid() {
    // SAFETY: getpid has no preconditions.
    PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
}

/// Reads this process's memory with `process_vm_readv(getpid())`, which returns an error
/// instead of faulting on unmapped or protected addresses. When the syscall is forbidden
/// (seccomp), `direct` is set at prepare time and reads go straight to memory, as
/// faulthandler always does. Call [`refresh_pid`] before a batch of reads: after `fork()`
/// the child must read itself, not its parent.
///
/// `cached` reads go through [`REPORT_CACHE`], a page at a time: only the holder of the
/// report lock may read so, in a report that began with
/// [`super::pagecache::begin_report`] (see
/// `Target::for_report`).
#[derive(Clone, Copy, Debug)]
pub struct SelfMemory {
    pub direct: bool,
    pub cached: bool,
}

impl SelfMemory {
    /// Probes whether `process_vm_readv` works on ourselves.
    pub fn probe() -> SelfMemory {
        let value: u64 = 0x1234_5678;
        refresh_pid();
        let ok = SelfMemory::UNCACHED.read_u64(&value as *const u64 as u64) == Some(value);
        SelfMemory { direct: !ok, cached: false }
    }

    /// `process_vm_readv`, one call per read.
    pub const UNCACHED: SelfMemory = SelfMemory { direct: false, cached: false };
}

impl Memory for SelfMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        if buf.is_empty() {
            return true;
        }
        if addr == 0 || addr.checked_add(buf.len() as u64).is_none() {
            return false;
        }
        if self.direct {
            // SAFETY: only used when process_vm_readv is unavailable; like faulthandler, we
            // then trust the interpreter's pointers. Source and destination do not overlap.
            unsafe { core::ptr::copy_nonoverlapping(addr as *const u8, buf.as_mut_ptr(), buf.len()) };
            return true;
        }
        if self.cached {
            return REPORT_CACHE.read(addr, buf, &read_self);
        }
        read_self(addr, buf)
    }
}

/// One `process_vm_readv` of our own memory: all of `buf` or failure.
pub(super) fn read_self(addr: u64, buf: &mut [u8]) -> bool {
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: both iovecs describe valid lengths; the kernel checks the remote range
    // and writes only into `buf`.
    let n = unsafe { libc::process_vm_readv(PID.load(Ordering::Relaxed), &local, 1, &remote, 1, 0) };
    n == buf.len() as isize
}
