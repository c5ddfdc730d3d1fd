//! Thread start and end on real threads: what is installed, what the pool gets back.

use super::*;
use std::sync::Mutex;

/// The pool is process-wide: these tests take turns.
static SERIAL: Mutex<()> = Mutex::new(());

fn installed() -> libc::stack_t {
    // SAFETY: stack_t is plain data; all-zero is a valid value.
    let mut st: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: querying only writes `st`.
    assert_eq!(unsafe { libc::sigaltstack(std::ptr::null(), &mut st) }, 0);
    st
}

fn set(st: &libc::stack_t) {
    // SAFETY: every caller passes a disabled stack or memory it keeps alive while installed.
    assert_eq!(unsafe { libc::sigaltstack(st, std::ptr::null_mut()) }, 0);
}

fn disabled() -> libc::stack_t {
    libc::stack_t { ss_sp: std::ptr::null_mut(), ss_flags: libc::SS_DISABLE, ss_size: 0 }
}

/// Runs `f` on a new thread that starts, like a pthread, without an alternate stack (Rust's
/// own threads get a small one for their overflow message).
fn on_fresh_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(|| {
        set(&disabled());
        f()
    })
    .join()
    .unwrap()
}

#[test]
fn a_thread_end_gives_its_stack_to_the_next_thread_start() {
    let _serial = SERIAL.lock().unwrap();
    let first = on_fresh_thread(|| {
        on_thread_start().unwrap();
        let st = installed();
        assert_eq!(st.ss_flags, 0);
        assert_eq!(st.ss_size, ALT_STACK_SIZE);
        release();
        assert_ne!(installed().ss_flags & libc::SS_DISABLE, 0, "released, so disabled");
        st.ss_sp as usize
    });
    let second = on_fresh_thread(|| {
        on_thread_start().unwrap();
        let sp = installed().ss_sp as usize;
        release();
        sp
    });
    assert_eq!(first, second);
}

#[test]
fn a_large_enough_stack_of_the_thread_is_kept() {
    let _serial = SERIAL.lock().unwrap();
    on_fresh_thread(|| {
        let mut own = vec![0u8; ALT_STACK_SIZE];
        let theirs = libc::stack_t { ss_sp: own.as_mut_ptr().cast(), ss_flags: 0, ss_size: own.len() };
        set(&theirs);
        on_thread_start().unwrap();
        assert_eq!(installed().ss_sp, theirs.ss_sp);
        release();
        assert_eq!(installed().ss_sp, theirs.ss_sp, "not ours to disable");
        set(&disabled());
    });
}

#[test]
fn a_too_small_stack_is_replaced_and_someone_elses_later_one_survives_release() {
    let _serial = SERIAL.lock().unwrap();
    on_fresh_thread(|| {
        let mut small = vec![0u8; 16 * 1024];
        let theirs = libc::stack_t { ss_sp: small.as_mut_ptr().cast(), ss_flags: 0, ss_size: small.len() };
        set(&theirs);
        on_thread_start().unwrap();
        assert_eq!(installed().ss_size, ALT_STACK_SIZE);
        set(&theirs); // installed over ours later (faulthandler.enable() in this thread)
        release();
        assert_eq!(installed().ss_sp, theirs.ss_sp);
        set(&disabled());
    });
}

#[test]
fn more_threads_at_once_than_slots_leave_a_full_pool() {
    let _serial = SERIAL.lock().unwrap();
    let threads = POOL_SLOTS + 8;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(threads));
    let stacks: Vec<usize> = (0..threads)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                set(&disabled());
                on_thread_start().unwrap();
                let sp = installed().ss_sp as usize;
                barrier.wait(); // all alive at once: each holds its own
                release();
                sp
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let distinct: std::collections::HashSet<_> = stacks.iter().collect();
    assert_eq!(distinct.len(), threads);
    let pooled: Vec<usize> = std::iter::from_fn(|| FREE.take()).collect();
    assert_eq!(pooled.len(), POOL_SLOTS, "the surplus was unmapped");
    pooled.into_iter().for_each(give_back);
}

/// Reads `len` bytes at `addr` of this process through the kernel, as a report would:
/// whether they could be read.
fn readable(addr: usize, len: usize) -> bool {
    let mut buf = vec![0u8; len];
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: len };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: len };
    // SAFETY: reads our own memory into `buf`; the kernel checks the remote range.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    n == len as isize
}

#[test]
fn a_mapped_stack_has_a_guard_page_below_it() {
    let len = 4 * GUARD;
    let base = map_stack(len).expect("map") as usize;
    assert!(!readable(base, 8), "the guard page can be read");
    assert!(readable(base + GUARD, len - GUARD), "the stack cannot be read");
    // SAFETY: our own mapping, used by nothing.
    unsafe { libc::munmap(base as *mut libc::c_void, len) };
}
