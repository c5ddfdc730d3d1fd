//! Capping an overflowed stack after minidump-writer has written it.
//!
//! minidump-writer copies the crashing thread's stack from its stack pointer to the end of
//! the mapping: after a stack overflow, all 8 MiB. We keep its top (the innermost frames,
//! `keep` bytes from the stack pointer) here, and its bottom (the thread's start) was added
//! beforehand as an ordinary memory range. This cuts the rest out of the file and moves
//! every file offset (RVA) that pointed past the cut.
//!
//! Only the streams minidump-writer 0.13 writes on Linux are understood; a dump with any
//! other stream is left as it is.

use std::collections::HashSet;

const THREAD_LIST: u32 = 3;
const MODULE_LIST: u32 = 4;
const MEMORY_LIST: u32 = 5;
const EXCEPTION: u32 = 6;
const SYSTEM_INFO: u32 = 7;
const HANDLE_DATA: u32 = 0xc;
const MEMORY_INFO_LIST: u32 = 0x10;
const THREAD_NAMES: u32 = 0x18;
const DSO_DEBUG: u32 = 0x4767_000a;
/// Streams without file offsets inside: Linux /proc copies, Mozilla's text streams.
fn is_plain(stream: u32) -> bool {
    stream == MEMORY_INFO_LIST
        || (0x4767_0001..=0x4767_0009).contains(&stream)
        || (0x4d7a_0000..=0x4d7a_00ff).contains(&stream)
}

pub(crate) fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
pub(crate) fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// What the cut did: the stack's original and new size.
#[derive(Debug, PartialEq, Eq)]
pub struct Capped {
    pub start: u64,
    pub original: u32,
    pub kept: u32,
}

/// Cuts the stack of thread `tid` down to its first `keep` bytes. Returns None (and leaves
/// `dump` untouched) when there is nothing to cut or the dump has unknown streams.
pub fn cap_stack(dump: &mut Vec<u8>, tid: u32, keep: u32) -> Option<Capped> {
    let (stream_count, dir) = (u32_at(dump, 8)? as usize, u32_at(dump, 12)? as usize);
    let mut streams = Vec::new();
    for i in 0..stream_count {
        let e = dir + i * 12;
        streams.push((u32_at(dump, e)?, u32_at(dump, e + 4)?, u32_at(dump, e + 8)?));
    }
    let known =
        [THREAD_LIST, MODULE_LIST, MEMORY_LIST, EXCEPTION, SYSTEM_INFO, HANDLE_DATA, THREAD_NAMES, DSO_DEBUG];
    if streams.iter().any(|(t, _, _)| !known.contains(t) && !is_plain(*t)) {
        return None;
    }
    // The thread's stack descriptor.
    let &(_, _, threads) = streams.iter().find(|(t, _, _)| *t == THREAD_LIST)?;
    let threads = threads as usize;
    let n = u32_at(dump, threads)? as usize;
    let entry = (0..n).map(|i| threads + 4 + i * 48).find(|&e| u32_at(dump, e) == Some(tid))?;
    let (start, size, rva) =
        (u64_at(dump, entry + 24)?, u32_at(dump, entry + 32)?, u32_at(dump, entry + 36)?);
    if size <= keep {
        return None;
    }
    let (cut_start, cut_end) = (rva as usize + keep as usize, rva as usize + size as usize);
    if cut_end > dump.len() {
        return None;
    }
    let delta = (cut_end - cut_start) as u64;

    // Every offset field in the file: (position of the field, width in bytes).
    let mut fields: Vec<(usize, usize)> = vec![(12, 4)];
    let mut seen = HashSet::new();
    for (i, &(stream, _, loc)) in streams.iter().enumerate() {
        fields.push((dir + i * 12 + 8, 4));
        let loc = loc as usize;
        match stream {
            THREAD_LIST => {
                for i in 0..u32_at(dump, loc)? as usize {
                    let t = loc + 4 + i * 48;
                    fields.extend([(t + 36, 4), (t + 44, 4)]);
                }
            }
            MODULE_LIST => {
                for i in 0..u32_at(dump, loc)? as usize {
                    let m = loc + 4 + i * 108;
                    fields.extend([(m + 20, 4), (m + 80, 4), (m + 88, 4)]);
                }
            }
            MEMORY_LIST => {
                for i in 0..u32_at(dump, loc)? as usize {
                    fields.push((loc + 4 + i * 16 + 12, 4));
                }
            }
            EXCEPTION => fields.push((loc + 164, 4)),
            SYSTEM_INFO => fields.push((loc + 24, 4)),
            THREAD_NAMES => {
                for i in 0..u32_at(dump, loc)? as usize {
                    fields.push((loc + 4 + i * 12 + 4, 8));
                }
            }
            HANDLE_DATA => {
                let (header, desc, count) = (
                    u32_at(dump, loc)? as usize,
                    u32_at(dump, loc + 4)? as usize,
                    u32_at(dump, loc + 8)? as usize,
                );
                for i in 0..count {
                    let d = loc + header + i * desc;
                    fields.extend([(d + 8, 4), (d + 12, 4)]);
                    if desc >= 40 {
                        fields.push((d + 32, 4));
                    }
                }
            }
            DSO_DEBUG => {
                let (map, count) = (u32_at(dump, loc + 4)?, u32_at(dump, loc + 8)? as usize);
                if map != u32::MAX {
                    fields.push((loc + 4, 4));
                    for i in 0..count {
                        fields.push((map as usize + i * 20 + 8, 4));
                    }
                }
            }
            _ => {}
        }
    }
    // Move every offset past the cut; none may point into it (except the stack itself).
    for (pos, width) in fields {
        if !seen.insert(pos) {
            continue;
        }
        let value = if width == 8 { u64_at(dump, pos)? } else { u32_at(dump, pos)? as u64 };
        let moved = if value >= cut_end as u64 {
            value - delta
        } else if value >= cut_start as u64 && value != 0 && value != u32::MAX as u64 {
            return None; // something we do not understand points into the cut
        } else {
            continue;
        };
        if width == 8 {
            dump.get_mut(pos..pos + 8)?.copy_from_slice(&moved.to_le_bytes());
        } else {
            dump.get_mut(pos..pos + 4)?.copy_from_slice(&(moved as u32).to_le_bytes());
        }
    }
    // The stack's new size, in the thread list and in the memory list.
    dump.get_mut(entry + 32..entry + 36)?.copy_from_slice(&keep.to_le_bytes());
    if let Some(&(_, _, list)) = streams.iter().find(|(t, _, _)| *t == MEMORY_LIST) {
        let list = list as usize;
        for i in 0..u32_at(dump, list)? as usize {
            let d = list + 4 + i * 16;
            if u64_at(dump, d)? == start && u32_at(dump, d + 12)? == rva {
                dump.get_mut(d + 8..d + 12)?.copy_from_slice(&keep.to_le_bytes());
            }
        }
    }
    dump.drain(cut_start..cut_end);
    Some(Capped { start, original: size, kept: keep })
}
