//! This process's mappings, from `/proc/self/maps`, read without allocation: the bounds of
//! the stack an unwind walks, and whether an address outside every module is executable
//! (JIT code). The unwinder refuses steps that leave the stack or return into data.

use super::lines::{for_each_line, with_file};

/// One line of `/proc/self/maps`: [start, end) and its permissions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

impl Mapping {
    fn is_stack_like(&self) -> bool {
        self.read && self.write
    }
}

/// How far above a stack pointer in a guard region its stack may begin: the kernel's
/// stack guard gap (1 MiB since Linux 4.12), as minidump-writer assumes too.
const GUARD_MAX: u64 = 1 << 20;
/// Bytes of a line looked at: `start-end perms` fits in 40.
const PREFIX: usize = 64;

/// Parses `start-end perms …`; None for anything else.
fn parse(line: &[u8]) -> Option<Mapping> {
    let mut fields = line.split(|&b| b == b' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    let dash = range.iter().position(|&b| b == b'-')?;
    let (start, end) = (hex(range.get(..dash)?)?, hex(range.get(dash + 1..)?)?);
    let flag = |i: usize, c: u8| perms.get(i) == Some(&c);
    Some(Mapping { start, end, read: flag(0, b'r'), write: flag(1, b'w'), exec: flag(2, b'x') })
}

fn hex(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| Some(acc << 4 | (d as char).to_digit(16)? as u64))
}

/// Calls `f` for each mapping in the maps text that `read` delivers (chunks into a buffer,
/// 0 at the end), in order, until `f` returns false.
pub fn for_each_with(read: &mut dyn FnMut(&mut [u8]) -> usize, f: &mut dyn FnMut(Mapping) -> bool) {
    // Only the start of a line matters; a path that does not fit is simply cut.
    let mut line = [0u8; PREFIX];
    for_each_line(read, &mut line, &mut |line, _| parse(line).is_none_or(&mut *f));
}

/// [`for_each_with`] over `/proc/self/maps`; false if it cannot be read.
pub fn for_each(f: &mut dyn FnMut(Mapping) -> bool) -> bool {
    with_file(c"/proc/self/maps", |read| for_each_with(read, f))
}

/// The stack that `sp` is on, from `mappings` (in address order): the readable and writable
/// mapping holding it, or — when `sp` went into the guard region below a stack (an
/// overflow) — the first such mapping above it, within the guard gap.
pub fn stack_bounds_in(
    for_each: impl FnOnce(&mut dyn FnMut(Mapping) -> bool),
    sp: u64,
) -> Option<(u64, u64)> {
    let mut found = None;
    for_each(&mut |m| {
        if m.end <= sp {
            return true;
        }
        if m.is_stack_like() && m.start <= sp.saturating_add(GUARD_MAX) {
            found = Some((m.start.min(sp), m.end));
            return false;
        }
        // A guard mapping (no access) between sp and its stack: keep looking above it.
        !m.read && !m.write && m.start <= sp.saturating_add(GUARD_MAX)
    });
    found
}

/// [`stack_bounds_in`] over `/proc/self/maps`.
pub fn stack_bounds(sp: u64) -> Option<(u64, u64)> {
    stack_bounds_in(|f| _ = for_each(f), sp)
}

/// The executable mapping holding `addr`, if any.
pub fn executable_mapping(addr: u64) -> Option<(u64, u64)> {
    let mut found = None;
    for_each(&mut |m| {
        if m.end <= addr {
            return true;
        }
        if m.start <= addr && m.exec {
            found = Some((m.start, m.end));
        }
        false
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0000000-55d0c0001000 r--p 00000000 08:01 1234 /usr/bin/python3.11
55d0c0001000-55d0c0002000 r-xp 00001000 08:01 1234 /usr/bin/python3.11
7f0000000000-7f0000001000 rwxp 00000000 00:00 0
7f0000100000-7f0000101000 ---p 00000000 00:00 0
7f0000101000-7f0000901000 rw-p 00000000 00:00 0
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]
";

    fn bounds(sp: u64) -> Option<(u64, u64)> {
        stack_bounds_in(
            |f| {
                let mut text = MAPS.as_bytes();
                for_each_with(
                    &mut |buf| {
                        let n = text.len().min(buf.len()).min(13); // lines span reads
                        buf[..n].copy_from_slice(&text[..n]);
                        text = &text[n..];
                        n
                    },
                    f,
                )
            },
            sp,
        )
    }

    #[test]
    fn lines_parse_into_ranges_and_permissions() {
        let m = parse(b"7f0000000000-7f0000001000 rwxp 00000000 00:00 0").expect("parsed");
        assert_eq!(
            (m.start, m.end, m.read, m.write, m.exec),
            (0x7f00_0000_0000, 0x7f00_0000_1000, true, true, true)
        );
        assert_eq!(parse(b"garbage"), None);
        assert_eq!(parse(b"12345678901234567-1 rw-p"), None);
    }

    #[test]
    fn a_stack_is_the_writable_mapping_holding_sp_or_the_one_above_its_guard() {
        assert_eq!(bounds(0x7ffc_0000_0100), Some((0x7ffc_0000_0000, 0x7ffc_0002_1000)));
        // Overflowed into the thread's guard page, or below the main stack (the guard gap).
        assert_eq!(bounds(0x7f00_0010_0fe0), Some((0x7f00_0010_0fe0, 0x7f00_0090_1000)));
        assert_eq!(bounds(0x7ffb_ffff_ffe0), Some((0x7ffb_ffff_ffe0, 0x7ffc_0002_1000)));
        // Nowhere near a stack.
        assert_eq!(bounds(0x1000), None);
    }
}
