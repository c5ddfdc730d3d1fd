//! CPython 3.13+ describes its own structure layout in `_PyRuntime.debug_offsets`, a block
//! of 64-bit offsets that starts with the cookie `xdebugpy`. A dump that carries the runtime's
//! head therefore carries the layout of the exact build that wrote it; readers prefer it to
//! the generated table, which describes the default build of each minor version (a custom
//! build or a later patch release may differ).
//!
//! Where each offset sits inside that block is itself version knowledge: the table records it
//! as `debug.<key>` next to `<key>` (tools/layouts/probe.c).

use crate::layout::{table_version, LayoutError};
use crate::{Layout, Memory};

const COOKIE: &[u8; 8] = b"xdebugpy";

/// What the dump's own offsets said about the table's layout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// Offsets read from the dump (and used).
    pub fields_read: usize,
    /// `key: table → dump` for every offset where the dump disagrees with the table.
    pub differences: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DebugOffsetsError {
    #[error("CPython 3.{0} has no debug offsets (they start with 3.13)")]
    NotAvailable(u8),
    #[error("the layout table cannot be read: {0}")]
    BadTable(String),
    #[error("the runtime's debug offsets are not in the dump")]
    Unreadable,
    #[error("no debug offsets at the runtime's address (cookie missing)")]
    NoCookie,
    #[error("the runtime's debug offsets are for version {0:#x}, not 3.{1}")]
    OtherVersion(u64, u8),
}

/// Where, inside the debug-offsets block, the offset of each table key lives, and where the
/// block is inside `_PyRuntime`; from a table in the generator's format.
pub fn positions(json: &str, minor: u8) -> Result<(u32, Vec<(String, u32)>), LayoutError> {
    let Some(map) = table_version(json, &format!("3.{minor}"))?.0 else { return Ok((0, Vec::new())) };
    let block = map.get("runtime.debug_offsets").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
    let mut keys: Vec<(String, u32)> = map
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("debug.")?.to_string(), v.as_u64()? as u32)))
        .collect();
    keys.sort();
    Ok((block, keys))
}

/// Replaces `layout`'s offsets with the ones the runtime at `runtime` records for itself,
/// found where `table` (the generator's format, e.g. [`crate::layout::LAYOUTS_JSON`]) says; says where
/// they differed from the table.
pub fn apply(
    mem: &dyn Memory,
    layout: &mut Layout,
    runtime: u64,
    table: &str,
) -> Result<Checked, DebugOffsetsError> {
    let (block, keys) =
        positions(table, layout.minor).map_err(|e| DebugOffsetsError::BadTable(e.to_string()))?;
    if keys.is_empty() {
        return Err(DebugOffsetsError::NotAvailable(layout.minor));
    }
    let base = runtime.wrapping_add(block as u64);
    let mut cookie = [0u8; 8];
    if !mem.read(base, &mut cookie) {
        return Err(DebugOffsetsError::Unreadable);
    }
    if &cookie != COOKIE {
        return Err(DebugOffsetsError::NoCookie);
    }
    let version = mem.read_u64(base.wrapping_add(8)).ok_or(DebugOffsetsError::Unreadable)?;
    if version >> 24 != 3 || (version >> 16) & 0xff != layout.minor as u64 {
        return Err(DebugOffsetsError::OtherVersion(version, layout.minor));
    }
    let mut checked = Checked::default();
    for (key, position) in &keys {
        let Some(value) = mem.read_u64(base.wrapping_add(*position as u64)) else {
            return Err(DebugOffsetsError::Unreadable);
        };
        // Offsets are small; anything else is not an offset we can use.
        let Ok(value) = u32::try_from(value) else { continue };
        let Some(field) = layout.field_mut(key) else { continue };
        if *field != Some(value) {
            let table = field.map_or("none".to_string(), |v| v.to_string());
            checked.differences.push(format!("{key}: {table} → {value}"));
            *field = Some(value);
        }
        checked.fields_read += 1;
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::LAYOUTS_JSON;

    /// A `_PyRuntime` head in a byte buffer at address 0x1000.
    struct Buf(Vec<u8>);
    impl Memory for Buf {
        fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
            let Some(off) = addr.checked_sub(0x1000).map(|o| o as usize) else { return false };
            match self.0.get(off..off + buf.len()) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    true
                }
                None => false,
            }
        }
    }

    type Edit<'a> = &'a dyn Fn(&mut Vec<u8>, &[(String, u32)]);

    fn runtime_with(minor: u8, edit: Edit<'_>) -> (Buf, Layout) {
        let layout = Layout::for_version(3, minor).unwrap();
        let (block, keys) = positions(LAYOUTS_JSON, minor).unwrap();
        let mut bytes = vec![0u8; 4096];
        let b = block as usize;
        bytes[b..b + 8].copy_from_slice(COOKIE);
        bytes[b + 8..b + 16].copy_from_slice(&((3u64 << 24) | ((minor as u64) << 16)).to_le_bytes());
        let mut copy = layout;
        for (key, pos) in &keys {
            let value = copy.field_mut(key).and_then(|f| *f).unwrap_or(0) as u64;
            bytes[b + *pos as usize..b + *pos as usize + 8].copy_from_slice(&value.to_le_bytes());
        }
        edit(&mut bytes, &keys);
        (Buf(bytes), layout)
    }

    #[test]
    fn the_table_agrees_with_its_own_offsets() {
        for minor in [13, 14, 15] {
            let (mem, mut layout) = runtime_with(minor, &|_, _| {});
            let checked = apply(&mem, &mut layout, 0x1000, LAYOUTS_JSON).unwrap();
            assert!(checked.fields_read > 25, "3.{minor}: {checked:?}");
            assert_eq!(checked.differences, Vec::<String>::new());
        }
    }

    #[test]
    fn the_dumps_offsets_win_over_the_table() {
        let (mem, mut layout) = runtime_with(13, &|bytes, keys| {
            let (block, _) = positions(LAYOUTS_JSON, 13).unwrap();
            let pos = keys.iter().find(|(k, _)| k == "tstate.next").unwrap().1 as usize + block as usize;
            bytes[pos..pos + 8].copy_from_slice(&1234u64.to_le_bytes());
        });
        let checked = apply(&mem, &mut layout, 0x1000, LAYOUTS_JSON).unwrap();
        assert_eq!(layout.tstate_next, Some(1234));
        assert_eq!(checked.differences.len(), 1);
        assert!(checked.differences[0].starts_with("tstate.next: "), "{checked:?}");
    }

    #[test]
    fn wrong_cookie_version_or_missing_memory_are_refused() {
        let (mem, mut layout) = runtime_with(14, &|bytes, _| bytes[0] ^= 0xff);
        let block = positions(LAYOUTS_JSON, 14).unwrap().0;
        if block == 0 {
            assert_eq!(apply(&mem, &mut layout, 0x1000, LAYOUTS_JSON), Err(DebugOffsetsError::NoCookie));
        }
        let (mem, mut layout) = runtime_with(14, &|_, _| {});
        let mut other = Layout::for_version(3, 15).unwrap();
        assert!(matches!(
            apply(&mem, &mut other, 0x1000, LAYOUTS_JSON),
            Err(DebugOffsetsError::OtherVersion(..))
        ));
        assert_eq!(apply(&mem, &mut layout, 0x9000, LAYOUTS_JSON), Err(DebugOffsetsError::Unreadable));
        let mut old = Layout::for_version(3, 12).unwrap();
        assert_eq!(apply(&mem, &mut old, 0x1000, LAYOUTS_JSON), Err(DebugOffsetsError::NotAvailable(12)));
    }
}
