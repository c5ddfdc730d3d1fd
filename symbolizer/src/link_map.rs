//! The dynamic loader's list of loaded objects, walked in a process's memory as gdb walks
//! it: the executable's `_DYNAMIC` → `DT_DEBUG` → `r_debug` → the `link_map` chain. Read on
//! a debugger's target (`debugger::modules`) and checked in a core's memory before it is
//! written (`core::link_map`).

use pylayout::Memory;

const DT_NULL: u64 = 0;
pub const DT_DEBUG: u64 = 21;
/// Entries of a dynamic section read at most (a corrupt one may have no DT_NULL).
const MAX_DYNAMIC_ENTRIES: u64 = 4096;

/// One `link_map` entry's public part, as it is in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// The object's load bias.
    pub l_addr: u64,
    /// The address of its file name (a C string; empty for the program).
    pub l_name: u64,
}

/// The address of `r_debug`: DT_DEBUG's value in the dynamic section at `dynamic`. None
/// when the section cannot be read up to its DT_NULL, has no DT_DEBUG, or the loader has
/// not set it (0).
pub fn r_debug(mem: &dyn Memory, dynamic: u64) -> Option<u64> {
    let mut found = None;
    for i in 0..MAX_DYNAMIC_ENTRIES {
        let entry = dynamic.wrapping_add(16 * i);
        match mem.read_u64(entry)? {
            DT_NULL => return found.filter(|&r| r != 0),
            DT_DEBUG => found = Some(mem.read_u64(entry.wrapping_add(8))?),
            _ => {}
        }
    }
    None
}

/// The chain's entries from `r_debug`, in order, `max` at most (a corrupt or cyclic list
/// ends there); and whether the list could be read to its end (or to `max`).
pub fn links(mem: &dyn Memory, r_debug: u64, max: usize) -> (Vec<Link>, bool) {
    let mut out = Vec::new();
    let Some(mut at) = mem.read_u64(r_debug.wrapping_add(8)) else { return (out, false) };
    while at != 0 && out.len() < max {
        let (Some(l_addr), Some(l_name), Some(next)) =
            (mem.read_u64(at), mem.read_u64(at.wrapping_add(8)), mem.read_u64(at.wrapping_add(24)))
        else {
            return (out, false);
        };
        out.push(Link { l_addr, l_name });
        at = next;
    }
    (out, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Words at addresses.
    struct Words(HashMap<u64, u64>);
    impl Memory for Words {
        fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
            match (buf.len(), self.0.get(&addr)) {
                (8, Some(w)) => {
                    buf.copy_from_slice(&w.to_le_bytes());
                    true
                }
                _ => false,
            }
        }
    }

    fn memory(words: &[(u64, u64)]) -> Words {
        Words(words.iter().copied().collect())
    }

    #[test]
    fn the_chain_is_walked_from_the_dynamic_section() {
        // _DYNAMIC at 0x100: DT_NEEDED, DT_DEBUG → r_debug at 0x200, DT_NULL.
        // r_debug.r_map → 0x300 → 0x400 → end.
        let mem = memory(&[
            (0x100, 1),
            (0x108, 7),
            (0x110, DT_DEBUG),
            (0x118, 0x200),
            (0x120, DT_NULL),
            (0x208, 0x300),
            (0x300, 0),
            (0x308, 0x900),
            (0x318, 0x400),
            (0x400, 0x7000),
            (0x408, 0x910),
            (0x418, 0),
        ]);
        assert_eq!(r_debug(&mem, 0x100), Some(0x200));
        let (links, complete) = links(&mem, 0x200, 100);
        assert!(complete);
        assert_eq!(links, vec![Link { l_addr: 0, l_name: 0x900 }, Link { l_addr: 0x7000, l_name: 0x910 }]);
        // At most `max`; a cut entry ends the list as incomplete.
        assert_eq!(super::links(&mem, 0x200, 1).0.len(), 1);
        let cut = memory(&[(0x208, 0x300), (0x300, 0), (0x308, 0x900)]);
        assert_eq!(super::links(&cut, 0x200, 100), (vec![], false));
    }

    #[test]
    fn no_r_debug_without_a_readable_section_or_a_set_entry() {
        // DT_DEBUG still 0 (before the loader ran); no DT_NULL readable.
        assert_eq!(r_debug(&memory(&[(0x100, DT_DEBUG), (0x108, 0), (0x110, DT_NULL)]), 0x100), None);
        assert_eq!(r_debug(&memory(&[(0x100, DT_DEBUG), (0x108, 0x200)]), 0x100), None);
    }
}
