//! Limits on what the helper writes: the size of one dump, and how much the dump directory
//! may already hold before live dumps (which a program can take in a loop) are refused.

use std::path::Path;

/// Bytes taken by the regular `*.dmp` files directly in `dir` (0 if it cannot be listed).
pub fn dumps_in(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .filter(|e| e.file_name().as_encoded_bytes().ends_with(b".dmp"))
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// One line for a size, in the unit a person would use.
pub fn human(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else if bytes >= 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dump_files_count() {
        let dir = std::env::temp_dir().join(format!("cc-limits-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub.dmp")).expect("dir");
        std::fs::write(dir.join("a.dmp"), [0u8; 100]).expect("write");
        std::fs::write(dir.join("b.dmp"), [0u8; 20]).expect("write");
        std::fs::write(dir.join("notes.txt"), [0u8; 1000]).expect("write");
        assert_eq!(dumps_in(&dir), 120);
        assert_eq!(dumps_in(&dir.join("missing")), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human(10), "10 bytes");
        assert_eq!(human(2048), "2.0 KiB");
        assert_eq!(human(64 * 1024 * 1024), "64.0 MiB");
    }
}
