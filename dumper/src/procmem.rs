//! Reading another process's memory, and the readable regions of its address space.

use pylayout::Memory;
use std::io;

/// `process_vm_readv` on another process (which we have stopped with ptrace, or which is
/// our parent waiting for us).
pub struct ProcessMemory {
    pub pid: i32,
}

impl Memory for ProcessMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        if buf.is_empty() {
            return true;
        }
        let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: buf.len() };
        // SAFETY: the iovecs describe `buf` (ours) and a remote range the kernel checks.
        let n = unsafe { libc::process_vm_readv(self.pid, &local, 1, &remote, 1, 0) };
        n == buf.len() as isize
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
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    Ok(parse_maps(&maps))
}

fn parse_maps(maps: &str) -> Vec<Region> {
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
