//! Inflated copies of compressed DWARF sections, kept by build id so that the next run maps
//! them instead of inflating them again: Debian's libc debug file (libc6-dbg) stores
//! .debug_info, .debug_line, ... zlib-compressed, and inflating them was about half of the
//! symbolizer's CPU on a typical crash.
//!
//! `<root>/<build id>/<section name>`: a header (magic, the payload's length and CRC32) and
//! the inflated bytes. A file is used only when its header matches what the section says
//! and its CRC32 checks, so a corrupt or truncated entry is inflated again and rewritten.
//! The CRC32 is taken once per entry, not on every run (it was 8% of a run's instructions):
//! see [`verified`].
//! Entries are written under a temporary name and renamed, so a mapping of one never sees it
//! change. The root is per user (`$XDG_CACHE_HOME/crashcatch/dwarf`, else
//! `~/.cache/crashcatch/dwarf`; `$CRASHCATCH_DWARF_CACHE` overrides it, empty turns the cache
//! off), made 0700 and used only when the user owns it; the least recently written build ids
//! are removed beyond [`MAX_CACHE_BYTES`]. Nothing here ever fails a run: a cache that cannot
//! be read or written (read-only, full disk) only costs the inflating.

use crate::elf::Bytes;
use memmap2::Mmap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"CCDWARF1";
/// Magic, payload length (u64 LE), payload CRC32 (u32 LE), 4 bytes reserved.
const HEADER: usize = 24;
/// The whole cache's size cap (libc's inflated DWARF is about 10 MB).
pub const MAX_CACHE_BYTES: u64 = 256 << 20;

/// The cache root for this user, None when turned off.
pub fn root() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CRASHCATCH_DWARF_CACHE") {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    let xdg = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()).map(PathBuf::from);
    let base = xdg.or_else(|| {
        std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| Path::new(&h).join(".cache"))
    })?;
    Some(base.join("crashcatch").join("dwarf"))
}

/// The inflated bytes of section `name` (`len` bytes inflated) of the file with `build_id`:
/// mapped from the cache when it holds them, else `inflate()`d and stored for next time.
pub fn inflated(
    root: Option<&Path>,
    build_id: &str,
    name: &str,
    len: u64,
    inflate: impl FnOnce() -> Option<Vec<u8>>,
) -> Option<Bytes> {
    let usable = build_id.len() >= 8 && build_id.bytes().all(|b| b.is_ascii_hexdigit());
    let dir = root.filter(|_| usable).map(|r| (r, r.join(build_id)));
    let file_name = name.trim_start_matches('.');
    if let Some(bytes) = dir.as_ref().and_then(|(_, d)| read(&d.join(file_name), len)) {
        return Some(bytes);
    }
    let data = inflate()?;
    if let Some((root, dir)) = dir.filter(|_| data.len() as u64 == len && len <= MAX_CACHE_BYTES / 4) {
        // Best effort: an unwritable cache only means inflating again next time.
        if write(root, &dir, file_name, &data).is_ok() {
            trim(root, MAX_CACHE_BYTES);
        }
    }
    Some(Bytes::Owned(Arc::new(data)))
}

/// The entry at `path` if it holds `len` bytes whose CRC32 checks.
///
/// The checksum is taken over the file read in chunks, not over its mapping: hashing the
/// mapping would fault every page of it into this process (libc's inflated DWARF is 8 MB),
/// where a run reads only the few units its frames are in. The mapping is of the same open
/// file, which a rename never changes.
fn read(path: &Path, len: u64) -> Option<Bytes> {
    let mut file = fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.uid() != euid() || meta.len() != HEADER as u64 + len {
        return None;
    }
    let mut header = [0u8; HEADER];
    file.read_exact(&mut header).ok()?;
    let stored_len = u64::from_le_bytes(header[8..16].try_into().ok()?);
    let crc = u32::from_le_bytes(header[16..20].try_into().ok()?);
    if &header[..8] != MAGIC || stored_len != len {
        return None;
    }
    let stamp = Stamp::of(&meta, crc);
    let marker = marker_path(path)?;
    if !verified(&marker, &stamp) {
        if payload_crc(&mut file)? != crc {
            return None;
        }
        remember_verified(&file, &marker, &stamp);
    }
    // SAFETY: a read-only private mapping of a cache entry, which is only ever replaced by
    // a rename, never written in place (a mapping keeps the old file's pages).
    let map = unsafe { Mmap::map(&file) }.ok()?;
    let end = map.len();
    (end == HEADER + usize::try_from(len).ok()?).then(|| Bytes::Mapped(Arc::new(map), HEADER..end))
}

/// What identifies an entry's file as the one whose CRC32 was checked: its inode, size and
/// modification and change times, and the CRC32 its header gives.
#[derive(PartialEq, Debug)]
struct Stamp([u8; STAMP]);

const MARKER_MAGIC: &[u8; 8] = b"CCDWOK01";
/// Magic, then device, inode, size, mtime (s, ns), ctime (s, ns), CRC32: all u64 LE.
const STAMP: usize = 8 + 8 * 8;
/// How old an entry's change time must be for its check to be remembered (see [`verified`]).
const SETTLED_SECS: i64 = 2;

impl Stamp {
    fn of(meta: &fs::Metadata, crc: u32) -> Stamp {
        let mut bytes = [0u8; STAMP];
        bytes[..8].copy_from_slice(MARKER_MAGIC);
        let fields = [
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime() as u64,
            meta.mtime_nsec() as u64,
            meta.ctime() as u64,
            meta.ctime_nsec() as u64,
            u64::from(crc),
        ];
        for (slot, field) in bytes[8..].chunks_exact_mut(8).zip(fields) {
            slot.copy_from_slice(&field.to_le_bytes());
        }
        Stamp(bytes)
    }
}

/// `.<entry>.verified`, beside the entry (dot files: never taken for entries).
fn marker_path(entry: &Path) -> Option<PathBuf> {
    let name = entry.file_name()?.to_str()?;
    Some(entry.with_file_name(format!(".{name}.verified")))
}

/// Whether the entry stamped `stamp` is the file whose CRC32 an earlier run checked, by the
/// marker that run left (ours, and holding exactly this stamp).
///
/// Why that is safe. The cache itself never changes an entry in place: it writes a new file
/// and renames it over the old one, which gives a new inode, so the stamp no longer matches.
/// Anything else that writes or truncates the file in place sets its change time to the
/// current time, which no user can set back (utimensat sets only the modification time);
/// and a marker is left only for an entry whose change time is [`SETTLED_SECS`] or more in
/// the past, so even with the kernel's coarse clock for file times a later change gets a
/// different change time. A file cut short by a crash while it was written never gets the
/// entry's name (written under a temporary name, then renamed), and one cut short after is
/// changed, as above. Before the marker is written the entry's data is synced to disk, so a
/// power loss cannot leave a marker beside an entry whose data never reached the disk. A
/// marker that is missing, not ours, cut short or stale only means the CRC32 is checked.
fn verified(marker: &Path, stamp: &Stamp) -> bool {
    let Ok(mut file) = fs::File::open(marker) else { return false };
    let ours = file.metadata().is_ok_and(|m| m.is_file() && m.uid() == euid() && m.len() == STAMP as u64);
    let mut stored = [0u8; STAMP];
    ours && file.read_exact(&mut stored).is_ok() && Stamp(stored) == *stamp
}

/// Leaves the marker of an entry whose CRC32 just checked (best effort), once its change
/// time is settled.
fn remember_verified(entry: &fs::File, marker: &Path, stamp: &Stamp) {
    let settled = entry.metadata().is_ok_and(|m| {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        m.ctime().saturating_add(SETTLED_SECS) <= now as i64
    });
    if !settled || entry.sync_data().is_err() {
        return;
    }
    let Some(dir) = marker.parent() else { return };
    let tmp = dir.join(format!(".verified.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        file.write_all(&stamp.0)?;
        fs::rename(&tmp, marker)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
}

/// CRC32 of the rest of `file`, read through a small buffer.
fn payload_crc(file: &mut fs::File) -> Option<u32> {
    #[cfg(test)]
    tests::CRC_RUNS.with(|runs| runs.set(runs.get() + 1));
    let mut hasher = crc32fast::Hasher::new();
    let mut chunk = vec![0u8; 256 << 10];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => return Some(hasher.finalize()),
            Ok(n) => hasher.update(chunk.get(..n)?),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() }
}

/// A directory for the cache: made 0700 if missing, refused unless it is ours.
fn own_dir(dir: &Path) -> std::io::Result<()> {
    match fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.uid() != euid() {
        return Err(std::io::Error::other("not our directory"));
    }
    Ok(())
}

fn write(root: &Path, dir: &Path, name: &str, data: &[u8]) -> std::io::Result<()> {
    own_dir(root)?;
    own_dir(dir)?;
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        let mut header = [0u8; HEADER];
        header[..8].copy_from_slice(MAGIC);
        header[8..16].copy_from_slice(&(data.len() as u64).to_le_bytes());
        header[16..20].copy_from_slice(&crc32fast::hash(data).to_le_bytes());
        file.write_all(&header)?;
        file.write_all(data)?;
        fs::rename(&tmp, dir.join(name))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Removes the least recently written build ids until the cache holds at most `cap` bytes.
fn trim(root: &Path, cap: u64) {
    let Ok(entries) = fs::read_dir(root) else { return };
    let mut dirs: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| {
            let files = fs::read_dir(e.path()).into_iter().flatten().flatten();
            let (size, newest) =
                files.filter_map(|f| f.metadata().ok()).fold((0, std::time::UNIX_EPOCH), |acc, m| {
                    (acc.0 + m.len(), acc.1.max(m.modified().unwrap_or(std::time::UNIX_EPOCH)))
                });
            (newest, size, e.path())
        })
        .collect();
    let mut total: u64 = dirs.iter().map(|d| d.1).sum();
    dirs.sort();
    for (_, size, path) in dirs {
        if total <= cap {
            break;
        }
        if fs::remove_dir_all(&path).is_ok() {
            total -= size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// How many times this thread took an entry's CRC32.
        pub(super) static CRC_RUNS: Cell<u32> = const { Cell::new(0) };
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("crashcatch-dwarf-cache-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    const ID: &str = "0123456789abcdef";

    fn get(root: Option<&Path>, data: &[u8], calls: &Cell<u32>) -> Vec<u8> {
        let inflate = || {
            calls.set(calls.get() + 1);
            Some(data.to_vec())
        };
        inflated(root, ID, ".debug_info", data.len() as u64, inflate).unwrap().to_vec()
    }

    #[test]
    fn the_second_run_maps_what_the_first_inflated() {
        let root = scratch("reuse");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let calls = Cell::new(0);
        assert_eq!(get(Some(&root), &data, &calls), data);
        let entry = root.join(ID).join("debug_info");
        assert_eq!(fs::metadata(&entry).unwrap().len(), (HEADER + data.len()) as u64);
        assert_eq!(fs::metadata(&root).unwrap().mode() & 0o777, 0o700);
        let again = inflated(Some(&root), ID, ".debug_info", data.len() as u64, || None).unwrap();
        assert!(matches!(again, Bytes::Mapped(..)));
        assert_eq!(&again[..], &data[..]);
        assert_eq!(calls.get(), 1);
        let _ = fs::remove_dir_all(&root);
    }

    /// Resident kB of this process's mapping of `path` (/proc/self/smaps).
    fn resident_kib(path: &Path) -> Option<u64> {
        let smaps = fs::read_to_string("/proc/self/smaps").unwrap();
        let mut lines = smaps.lines().skip_while(|l| !l.ends_with(path.to_str().unwrap()));
        lines.next()?;
        let rss = lines.find(|l| l.starts_with("Rss:"))?;
        rss.split_whitespace().nth(1)?.parse().ok()
    }

    #[test]
    fn checking_an_entry_does_not_bring_its_pages_into_memory() {
        let root = scratch("resident");
        let data: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 251) as u8).collect();
        let calls = Cell::new(0);
        get(Some(&root), &data, &calls);
        let entry = root.join(ID).join("debug_info");
        let mapped = inflated(Some(&root), ID, ".debug_info", data.len() as u64, || None).unwrap();
        assert!(matches!(mapped, Bytes::Mapped(..)));
        // Its checksum was checked, yet only the pages a reader touches are resident: hashing
        // the mapping made all 4 MiB of it so (and libc's 8 MB in every run).
        let resident = resident_kib(&entry).expect("the entry is mapped");
        assert!(resident < 1024, "{resident} kB of the 4 MiB entry resident after checking it");
        assert_eq!(&mapped[..], &data[..]);
        assert_eq!(calls.get(), 1);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_corrupt_or_truncated_entry_is_inflated_again_and_replaced() {
        let root = scratch("corrupt");
        let data = vec![42u8; 5000];
        let calls = Cell::new(0);
        get(Some(&root), &data, &calls);
        let entry = root.join(ID).join("debug_info");
        let mut bytes = fs::read(&entry).unwrap();
        bytes[HEADER + 100] ^= 1;
        fs::write(&entry, &bytes).unwrap();
        assert_eq!(get(Some(&root), &data, &calls), data);
        fs::write(&entry, &bytes[..HEADER + 10]).unwrap();
        assert_eq!(get(Some(&root), &data, &calls), data);
        assert_eq!(calls.get(), 3);
        // Rewritten whole: the next read maps it again.
        assert_eq!(get(Some(&root), &data, &calls), data);
        assert_eq!(calls.get(), 3);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn an_unusable_cache_still_gives_the_bytes() {
        // A root that is a file (as a read-only or full disk, nothing can be made under it).
        let file = scratch("file");
        fs::write(&file, b"not a directory").unwrap();
        let data = vec![1u8, 2, 3, 4];
        let calls = Cell::new(0);
        assert_eq!(get(Some(&file), &data, &calls), data);
        assert_eq!(get(None, &data, &calls), data);
        // Not a build id: never a path.
        let root = scratch("badid");
        let got = inflated(Some(&root), "../../etc", ".debug_info", 4, || Some(data.clone())).unwrap();
        assert_eq!(&got[..], &data[..]);
        assert!(!root.exists());
        let _ = fs::remove_file(&file);
    }

    #[test]
    fn the_oldest_build_ids_go_beyond_the_cap() {
        let root = scratch("trim");
        for (i, id) in ["aaaaaaaa", "bbbbbbbb", "cccccccc"].iter().enumerate() {
            write(&root, &root.join(id), "debug_info", &vec![0u8; 1000]).unwrap();
            let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 * (i as u64 + 1));
            fs::File::open(root.join(id).join("debug_info")).unwrap().set_modified(when).unwrap();
        }
        trim(&root, 2100);
        assert!(!root.join("aaaaaaaa").exists());
        assert!(root.join("bbbbbbbb").exists() && root.join("cccccccc").exists());
        let _ = fs::remove_dir_all(&root);
    }

    fn crc_runs() -> u32 {
        CRC_RUNS.with(|runs| runs.get())
    }

    #[test]
    fn an_entry_is_checksummed_until_a_check_is_remembered_and_any_change_after_is_noticed() {
        let root = scratch("verified");
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 13) as u8).collect();
        let calls = Cell::new(0);
        get(Some(&root), &data, &calls);
        let entry = root.join(ID).join("debug_info");
        let marker = root.join(ID).join(".debug_info.verified");
        // Just written: checked on every read, nothing remembered (its change time is not settled).
        let before = crc_runs();
        assert_eq!(get(Some(&root), &data, &calls), data);
        assert_eq!(get(Some(&root), &data, &calls), data);
        assert_eq!((crc_runs() - before, calls.get()), (2, 1));
        assert!(!marker.exists());
        // Settled: one more check, remembered; the reads after it take no CRC32.
        std::thread::sleep(std::time::Duration::from_millis(SETTLED_SECS as u64 * 1000 + 200));
        let before = crc_runs();
        for _ in 0..3 {
            assert_eq!(get(Some(&root), &data, &calls), data);
        }
        assert_eq!((crc_runs() - before, calls.get()), (1, 1));
        assert!(marker.exists());
        // Changed in place (same size; the header's CRC32 still says the old data's): noticed.
        let mut bytes = fs::read(&entry).unwrap();
        bytes[HEADER + 4000] ^= 0x55;
        fs::OpenOptions::new().write(true).open(&entry).unwrap().write_all(&bytes).unwrap();
        let before = crc_runs();
        assert_eq!(get(Some(&root), &data, &calls), data);
        assert_eq!((crc_runs() - before, calls.get()), (1, 2));
        // A marker cut short or of another file: the CRC32 is taken again.
        std::thread::sleep(std::time::Duration::from_millis(SETTLED_SECS as u64 * 1000 + 200));
        assert_eq!(get(Some(&root), &data, &calls), data);
        assert!(marker.exists());
        let stamp = fs::read(&marker).unwrap();
        fs::write(&marker, &stamp[..STAMP - 3]).unwrap();
        let before = crc_runs();
        assert_eq!(get(Some(&root), &data, &calls), data);
        assert_eq!(crc_runs() - before, 1);
        let mut other = stamp.clone();
        other[8 + 8] ^= 1; // another inode
        fs::write(&marker, &other).unwrap();
        let before = crc_runs();
        assert_eq!(get(Some(&root), &data, &calls), data);
        assert_eq!(crc_runs() - before, 1);
        assert_eq!(fs::read(&marker).unwrap(), stamp, "the marker is rewritten");
        assert_eq!(calls.get(), 2);
        let _ = fs::remove_dir_all(&root);
    }
}
