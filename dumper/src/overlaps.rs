//! A memory list without overlapping ranges.
//!
//! minidump-writer lists each thread's stack in the memory list, and then the ranges
//! crashcatch asks for (the Python structures): some of those lie on a thread's stack (from
//! 3.11 on, each `_PyEval_EvalFrameDefault` call keeps its `_PyCFrame` or its entry
//! interpreter frame in its C frame). The format does not forbid overlapping ranges, but
//! readers resolve them differently: lldb up to 20 takes the first listed range that holds
//! an address; the `minidump` crate sorts the ranges by start and drops each one that
//! overlaps the one before (a Python range starting below a stack would drop the stack);
//! lldb 21+ (LLVM PR #136040) sorts them too and looks an address up in the range that
//! starts last at or below it, so a small Python range inside a stack hid the rest of the
//! stack above it: lldb-22's unwinder could not read the return address beyond it and
//! stopped there (in the eval loop, a few frames up), and `memory read` there failed with
//! "No memory range found for address".
//!
//! This removes from every other range what a thread's stack (or an earlier range) already
//! holds: the bytes are the same (all were copied while the threads were suspended), so
//! nothing is lost. Stacks are left whole.

use crate::shrink::{u32_at, u64_at};
use crate::streams;
use std::collections::HashSet;

const THREAD_LIST: u32 = 3;
const MEMORY_LIST: u32 = 5;
const THREAD_ENTRY: usize = 48;
const MEMORY_ENTRY: usize = 16;

/// One memory list entry: where the range starts, its size, where its bytes are in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Range {
    start: u64,
    size: u32,
    rva: u32,
}

impl Range {
    fn end(&self) -> u64 {
        self.start + self.size as u64
    }

    /// The part of it in [from, to), with its file offset moved along.
    fn part(&self, from: u64, to: u64) -> Range {
        Range { start: from, size: (to - from) as u32, rva: self.rva + (from - self.start) as u32 }
    }
}

/// Makes the memory list's ranges disjoint (see the module's comment). Returns how many
/// ranges were cut or dropped; the image is unchanged when it is 0 or the list is unreadable.
pub fn remove_overlaps(image: &mut Vec<u8>) -> usize {
    let Some(dir) = streams::directory(image) else { return 0 };
    let Some(list_index) = dir.iter().position(|&(t, _, _)| t == MEMORY_LIST) else { return 0 };
    let Some(ranges) = memory_list(image, dir[list_index].2) else { return 0 };
    let stacks: Vec<Range> = dir
        .iter()
        .filter(|&&(t, _, _)| t == THREAD_LIST)
        .flat_map(|&(_, _, loc)| thread_stacks(image, loc).unwrap_or_default())
        .collect();
    let (kept, changed) = disjoint(&ranges, &stacks);
    if changed == 0 {
        return 0;
    }
    let mut data = Vec::with_capacity(4 + kept.len() * MEMORY_ENTRY);
    data.extend_from_slice(&(kept.len() as u32).to_le_bytes());
    for r in &kept {
        data.extend_from_slice(&r.start.to_le_bytes());
        data.extend_from_slice(&r.size.to_le_bytes());
        data.extend_from_slice(&r.rva.to_le_bytes());
    }
    let (_, old_size, old_rva) = dir[list_index];
    // Readers check that the stream's size is exactly 4 + 16 × count: the directory entry
    // gets the new size. A list that grew (a range split around a stack) goes at the end.
    let rva = if data.len() <= old_size as usize {
        old_rva as usize
    } else {
        image.resize(image.len().next_multiple_of(8), 0);
        let at = image.len();
        image.resize(at + data.len(), 0);
        at
    };
    let (Ok(rva32), Some(slot)) = (u32::try_from(rva), image.get_mut(rva..rva + data.len())) else {
        return 0;
    };
    slot.copy_from_slice(&data);
    streams::set_entry(image, list_index, (MEMORY_LIST, data.len() as u32, rva32));
    changed
}

/// The memory list's entries, or None if it runs past the image.
fn memory_list(image: &[u8], loc: u32) -> Option<Vec<Range>> {
    let loc = loc as usize;
    (0..u32_at(image, loc)? as usize)
        .map(|i| {
            let e = loc + 4 + i * MEMORY_ENTRY;
            Some(Range { start: u64_at(image, e)?, size: u32_at(image, e + 8)?, rva: u32_at(image, e + 12)? })
        })
        .collect()
}

/// Every thread's stack descriptor in a thread list.
fn thread_stacks(image: &[u8], loc: u32) -> Option<Vec<Range>> {
    let loc = loc as usize;
    (0..u32_at(image, loc)? as usize)
        .map(|i| {
            let e = loc + 4 + i * THREAD_ENTRY;
            Some(Range {
                start: u64_at(image, e + 24)?,
                size: u32_at(image, e + 32)?,
                rva: u32_at(image, e + 36)?,
            })
        })
        .collect()
}

/// `ranges` in their order, each stack whole and every other range without what a stack or
/// another range holds (cut, split or dropped); and how many ranges changed. Where two
/// non-stack ranges overlap, the one that starts first keeps the bytes (the same bytes:
/// all were copied while the threads were suspended).
///
/// One sweep in address order: O(n log n) for the sort. The BTreeMap of claimed intervals
/// this replaced took ~1.5 µs per range (a 100-thread crash dump lists ~2,000).
fn disjoint(ranges: &[Range], stacks: &[Range]) -> (Vec<Range>, usize) {
    let stacks: HashSet<Range> = stacks.iter().filter(|s| s.size > 0).copied().collect();
    let is_stack = |r: &Range| stacks.contains(r);
    let mut claimed: Vec<(u64, u64)> =
        ranges.iter().filter(|r| is_stack(r)).map(|r| (r.start, r.end())).collect();
    claimed.sort_unstable();
    let mut others: Vec<usize> = (0..ranges.len()).filter(|&i| !is_stack(&ranges[i])).collect();
    others.sort_by_key(|&i| (ranges[i].start, i));
    // (index in `ranges`, piece), in address order within each index.
    let mut pieces: Vec<(usize, Range)> = Vec::with_capacity(others.len());
    let (mut covered_to, mut next_stack, mut changed) = (0u64, 0usize, 0usize);
    for i in others {
        let r = &ranges[i];
        // Everything from its start up to `covered_to` is held by a range that starts no
        // later: only the rest, less the stacks, is its own.
        let mut at = r.start.max(covered_to);
        while next_stack < claimed.len() && claimed[next_stack].1 <= at {
            next_stack += 1;
        }
        let first = pieces.len();
        for &(s, e) in claimed[next_stack..].iter().take_while(|&&(s, _)| s < r.end()) {
            if s > at {
                pieces.push((i, r.part(at, s.min(r.end()))));
            }
            at = at.max(e);
        }
        if at < r.end() {
            pieces.push((i, r.part(at, r.end())));
        }
        if pieces.len() - first != 1 || pieces[first].1 != *r {
            changed += 1;
        }
        covered_to = covered_to.max(r.end());
    }
    pieces.sort_by_key(|&(i, _)| i); // stable: each range's pieces stay in address order
    let mut pieces = pieces.into_iter().peekable();
    let mut kept = Vec::with_capacity(ranges.len() + 8);
    for (i, r) in ranges.iter().enumerate() {
        if is_stack(r) {
            kept.push(*r);
        }
        while let Some((_, piece)) = pieces.next_if(|&(j, _)| j == i) {
            kept.push(piece);
        }
    }
    (kept, changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: u64, size: u32, rva: u32) -> Range {
        Range { start, size, rva }
    }

    #[test]
    fn ranges_on_a_stack_are_dropped_or_cut() {
        let stack = range(0x1000, 0x3000, 100);
        let ranges = [
            stack,
            range(0x1c90, 0x52, 20_000),  // inside: dropped
            range(0x3ff0, 0x20, 21_000),  // across the stack's end: its tail stays
            range(0x800, 0x1000, 22_000), // around the stack's start: its head stays
            range(0x9000, 0x10, 23_000),  // elsewhere: untouched
        ];
        let (kept, changed) = disjoint(&ranges, &[stack]);
        assert_eq!(changed, 3);
        assert_eq!(
            kept,
            vec![
                stack,
                range(0x4000, 0x10, 21_000 + 0x10),
                range(0x800, 0x800, 22_000),
                range(0x9000, 0x10, 23_000)
            ]
        );
    }

    #[test]
    fn a_range_around_a_stack_is_split_and_later_ranges_yield_to_earlier_ones() {
        let stack = range(0x2000, 0x1000, 0);
        let ranges = [range(0x1000, 0x3000, 5000), stack, range(0x3800, 0x1000, 9000)];
        let (kept, changed) = disjoint(&ranges, &[stack]);
        assert_eq!(changed, 2);
        let pieces = [range(0x1000, 0x1000, 5000), range(0x3000, 0x1000, 5000 + 0x2000)];
        assert_eq!(kept, vec![pieces[0], pieces[1], stack, range(0x4000, 0x800, 9000 + 0x800)]);
    }

    #[test]
    fn thousands_of_stacks_and_ranges_give_what_the_pairwise_cut_gives() {
        // 2000 stacks, and for each a range inside it, one across its end and one elsewhere.
        let stacks: Vec<Range> = (0..2000u64).map(|i| range(0x10_0000 + i * 0x4000, 0x2000, 0)).collect();
        let mut ranges = stacks.clone();
        for s in &stacks {
            ranges.push(range(s.start + 0x10, 0x20, 1));
            ranges.push(range(s.end() - 0x10, 0x20, 2));
            ranges.push(range(s.end() + 0x800, 0x10, 3));
        }
        let (kept, changed) = disjoint(&ranges, &stacks);
        assert_eq!(changed, 4000);
        assert_eq!(kept.len(), 2000 + 2000 * 2);
        let mut spans: Vec<(u64, u64)> = kept.iter().map(|r| (r.start, r.end())).collect();
        spans.sort_unstable();
        assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "overlapping ranges left");
    }

    #[test]
    fn random_lists_keep_every_byte_once_with_its_own_file_offset() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..200 {
            let stacks: Vec<Range> =
                (0..3).map(|i| range(1000 * i + next(300), 50 + next(200) as u32, 0)).collect();
            let mut ranges = stacks.clone();
            for k in 0..12 {
                ranges.insert(
                    next(ranges.len() as u64 + 1) as usize,
                    range(next(3000), 1 + next(300) as u32, 10_000 * (k + 1)),
                );
            }
            let (kept, _) = disjoint(&ranges, &stacks);
            // Every byte any range held, held by exactly one kept range, at the offset the
            // same source range gave it; the stacks whole.
            let covered =
                |list: &[Range], at: u64| list.iter().filter(|r| r.start <= at && at < r.end()).count();
            for at in 0..4000 {
                assert_eq!(covered(&kept, at).min(1), covered(&ranges, at).min(1), "byte {at}");
                assert!(covered(&kept, at) <= 1, "byte {at} kept twice: {kept:?}");
            }
            for k in &kept {
                let source = ranges.iter().find(|r| {
                    r.rva.wrapping_sub(r.start as u32) == k.rva.wrapping_sub(k.start as u32)
                        && r.start <= k.start
                        && k.end() <= r.end()
                });
                assert!(source.is_some(), "{k:?} has no source range");
            }
            assert!(stacks.iter().all(|s| kept.contains(s)));
        }
    }

    #[test]
    fn disjoint_lists_are_left_alone() {
        let stack = range(0x2000, 0x1000, 0);
        let ranges = [stack, range(0x5000, 0x10, 64)];
        assert_eq!(disjoint(&ranges, &[stack]), (ranges.to_vec(), 0));
    }

    /// A dump with a thread list (one thread, its stack at 0x1000..0x2000) and a memory list
    /// of the stack and `extra` ranges (their bytes: the address's low byte).
    fn dump(extra: &[(u64, u32)]) -> Vec<u8> {
        let mut image = streams::tests::empty_minidump();
        let stack_rva = image.len() as u32;
        image.extend((0x1000u64..0x2000).map(|a| a as u8));
        let mut threads = vec![0u8; 4 + THREAD_ENTRY];
        threads[..4].copy_from_slice(&1u32.to_le_bytes());
        threads[4 + 24..4 + 32].copy_from_slice(&0x1000u64.to_le_bytes());
        threads[4 + 32..4 + 36].copy_from_slice(&0x1000u32.to_le_bytes());
        threads[4 + 36..4 + 40].copy_from_slice(&stack_rva.to_le_bytes());
        let mut list = vec![(0x1000u64, 0x1000u32, stack_rva)];
        for &(start, size) in extra {
            list.push((start, size, image.len() as u32));
            image.extend((start..start + size as u64).map(|a| a as u8));
        }
        let mut memory = (list.len() as u32).to_le_bytes().to_vec();
        for (start, size, rva) in list {
            memory.extend_from_slice(&start.to_le_bytes());
            memory.extend_from_slice(&size.to_le_bytes());
            memory.extend_from_slice(&rva.to_le_bytes());
        }
        streams::append_stream(&mut image, THREAD_LIST, &threads).expect("threads");
        streams::append_stream(&mut image, MEMORY_LIST, &memory).expect("memory");
        image
    }

    /// (start, size, bytes) of every memory list entry; the directory's size must match.
    fn entries(image: &[u8]) -> Vec<(u64, u32, Vec<u8>)> {
        let dir = streams::directory(image).expect("directory");
        let &(_, size, loc) = dir.iter().find(|e| e.0 == MEMORY_LIST).expect("memory list");
        let list = memory_list(image, loc).expect("list");
        assert_eq!(size as usize, 4 + list.len() * MEMORY_ENTRY);
        list.iter().map(|r| (r.start, r.size, image[r.rva as usize..][..r.size as usize].to_vec())).collect()
    }

    #[test]
    fn the_list_is_rewritten_in_place_and_the_bytes_still_match_their_addresses() {
        let mut image = dump(&[(0x1c90, 0x52), (0x1ff0, 0x20), (0x8000, 8)]);
        let before = image.len();
        assert_eq!(remove_overlaps(&mut image), 2);
        assert_eq!(image.len(), before);
        let got = entries(&image);
        assert_eq!(
            got.iter().map(|e| (e.0, e.1)).collect::<Vec<_>>(),
            [(0x1000, 0x1000), (0x2000, 0x10), (0x8000, 8)]
        );
        for (start, _, bytes) in got {
            assert!(bytes.iter().enumerate().all(|(i, &b)| b == (start + i as u64) as u8));
        }
        assert_eq!(remove_overlaps(&mut image), 0);
    }

    #[test]
    fn a_longer_list_goes_to_the_end_of_the_image() {
        let mut image = dump(&[(0x800, 0x2000)]);
        let before = image.len();
        assert_eq!(remove_overlaps(&mut image), 1);
        assert!(image.len() > before);
        let got = entries(&image);
        let spans: Vec<_> = got.iter().map(|e| (e.0, e.1)).collect();
        assert_eq!(spans, [(0x1000, 0x1000), (0x800, 0x800), (0x2000, 0x800)]);
        for (start, _, bytes) in got {
            assert!(bytes.iter().enumerate().all(|(i, &b)| b == (start + i as u64) as u8));
        }
    }

    #[test]
    fn unreadable_dumps_are_left_alone() {
        let mut image = streams::tests::empty_minidump();
        assert_eq!(remove_overlaps(&mut image), 0);
        let mut image = b"not a dump".to_vec();
        assert_eq!(remove_overlaps(&mut image), 0);
    }
}
