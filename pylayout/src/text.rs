//! Reading `str` objects without allocating: characters are streamed to a callback in
//! fixed-size chunks.

use crate::{Layout, Memory};

/// What [`for_each_char`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrRead {
    /// All requested characters were delivered; `truncated` when the string was longer
    /// than the limit.
    Done { truncated: bool },
    /// The object is not a `str` (or its header is unreadable).
    NotStr,
    /// The header was fine but the character data could not be read.
    Unreadable,
}

/// Size of the stack buffer used to read character data.
const CHUNK: usize = 256;

/// Streams up to `limit` code points of the `str` at `obj` to `sink`.
/// `str_type` is the address of `PyUnicode_Type` in the target process.
pub fn for_each_char(
    mem: &dyn Memory,
    layout: &Layout,
    str_type: u64,
    obj: u64,
    limit: usize,
    sink: &mut dyn FnMut(u32),
) -> StrRead {
    let Some(info) = str_info(mem, layout, str_type, obj) else {
        return StrRead::NotStr;
    };
    let count = info.length.min(limit as u64);
    let mut buf = [0u8; CHUNK];
    let per_chunk = (CHUNK / info.kind as usize) as u64;
    let mut done = 0u64;
    while done < count {
        let n = (count - done).min(per_chunk);
        let bytes = (n * info.kind as u64) as usize;
        let Some(src) = done.checked_mul(info.kind as u64).and_then(|off| info.data.checked_add(off)) else {
            return StrRead::Unreadable;
        };
        if !mem.read(src, &mut buf[..bytes]) {
            return StrRead::Unreadable;
        }
        for ch in buf[..bytes].chunks_exact(info.kind as usize) {
            sink(match info.kind {
                1 => ch[0] as u32,
                2 => u16::from_le_bytes([ch[0], ch[1]]) as u32,
                _ => u32::from_le_bytes([ch[0], ch[1], ch[2], ch[3]]),
            });
        }
        done += n;
    }
    StrRead::Done { truncated: info.length > limit as u64 }
}

/// Where a str's characters are and how wide each is.
#[derive(Clone, Copy, Debug)]
pub struct StrInfo {
    pub length: u64,
    /// Bytes per character: 1, 2 or 4.
    pub kind: u8,
    pub data: u64,
    pub ascii: bool,
}

/// Decodes a str header; `None` if `obj` is not a readable, ready `str`.
pub fn str_info(mem: &dyn Memory, layout: &Layout, str_type: u64, obj: u64) -> Option<StrInfo> {
    if obj == 0 || mem.ptr_at(obj, layout.object_ob_type?)? != str_type {
        return None;
    }
    let length = mem.ptr_at(obj, layout.unicode_length?)?;
    let state = mem.read_u32(obj.wrapping_add(layout.unicode_state? as u64))?;
    let kind_mask = layout.unicode_state_kind_mask?;
    let kind = ((state & kind_mask) >> kind_mask.trailing_zeros()) as u8;
    if !matches!(kind, 1 | 2 | 4) || length > isize::MAX as u64 {
        return None;
    }
    let compact = state & layout.unicode_state_compact_mask? != 0;
    let ascii = state & layout.unicode_state_ascii_mask? != 0;
    let data = match (compact, ascii) {
        (true, true) => obj.wrapping_add(layout.unicode_ascii_size? as u64),
        (true, false) => obj.wrapping_add(layout.unicode_compact_size? as u64),
        (false, _) => mem.ptr_at(obj, layout.unicode_data_any?).filter(|&p| p != 0)?,
    };
    Some(StrInfo { length, kind, data, ascii })
}
