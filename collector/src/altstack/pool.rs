//! A bounded, lock-free set of free alternate stacks, so that a thread start takes a mapped
//! stack instead of mapping one (mmap + mprotect) and a thread end gives it back instead of
//! unmapping it (munmap, with its cross-CPU TLB shootdown).
//!
//! Lock-free on purpose: a fork while another thread is inside `take`/`give` cannot leave
//! a lock held in the child. Each stack is in exactly one place at a time: a slot here, or
//! one thread's own record of what it installed; `swap`/`compare_exchange` move it, so two
//! threads can never get the same stack. The signal handler never touches the pool.

use core::sync::atomic::{AtomicUsize, Ordering};

/// Fixed slots, each holding the base address of a free stack's mapping, or 0.
pub struct Pool<const SLOTS: usize> {
    slots: [AtomicUsize; SLOTS],
}

impl<const SLOTS: usize> Pool<SLOTS> {
    pub const fn new() -> Self {
        Pool { slots: [const { AtomicUsize::new(0) }; SLOTS] }
    }

    /// A free stack's base, now owned by the caller; `None` when the pool is empty.
    pub fn take(&self) -> Option<usize> {
        self.slots.iter().find_map(|slot| {
            // Only empty-looking slots are skipped without a write: a load is cheaper than
            // a swap on a cache line other threads may own.
            if slot.load(Ordering::Relaxed) == 0 {
                return None;
            }
            Some(slot.swap(0, Ordering::Acquire)).filter(|&base| base != 0)
        })
    }

    /// Hands `base` (non-zero) to the pool. `false` when every slot is taken: the caller
    /// still owns it and frees it (the pool stays bounded).
    pub fn give(&self, base: usize) -> bool {
        debug_assert!(base != 0);
        self.slots.iter().any(|slot| {
            slot.load(Ordering::Relaxed) == 0
                && slot.compare_exchange(0, base, Ordering::Release, Ordering::Relaxed).is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Pool;
    use std::collections::HashSet;
    use std::sync::Mutex;

    #[test]
    fn an_empty_pool_gives_nothing() {
        let pool = Pool::<4>::new();
        assert_eq!(pool.take(), None);
    }

    #[test]
    fn what_is_given_is_taken_back_once() {
        let pool = Pool::<4>::new();
        assert!(pool.give(0x1000));
        assert!(pool.give(0x2000));
        let mut taken = [pool.take().unwrap(), pool.take().unwrap()];
        taken.sort();
        assert_eq!(taken, [0x1000, 0x2000]);
        assert_eq!(pool.take(), None);
    }

    #[test]
    fn a_full_pool_refuses_the_surplus() {
        let pool = Pool::<2>::new();
        assert!(pool.give(0x1000));
        assert!(pool.give(0x2000));
        assert!(!pool.give(0x3000));
        assert!(pool.take().is_some());
        assert!(pool.give(0x3000));
    }

    /// Threads taking and giving concurrently never hold the same stack at once, and no
    /// stack is lost or duplicated.
    #[test]
    fn concurrent_takers_never_share_a_stack() {
        const STACKS: usize = 8;
        let pool = Pool::<STACKS>::new();
        for i in 1..=STACKS {
            assert!(pool.give(i * 0x1000));
        }
        let held = Mutex::new(HashSet::new());
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..20_000 {
                        let Some(base) = pool.take() else { continue };
                        assert!(held.lock().unwrap().insert(base), "{base:#x} handed out twice");
                        std::thread::yield_now(); // hold it a while
                        assert!(held.lock().unwrap().remove(&base));
                        assert!(pool.give(base));
                    }
                });
            }
        });
        let mut left: Vec<usize> = std::iter::from_fn(|| pool.take()).collect();
        left.sort();
        assert_eq!(left, (1..=STACKS).map(|i| i * 0x1000).collect::<Vec<_>>());
    }
}
