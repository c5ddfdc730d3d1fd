//! Telling a CPython's version from outside the process: its `Py_Version` (3.11+) and, for
//! the versions without one, the name of the file that defines `_PyRuntime`.

/// `[3, minor, micro]` of a `Py_Version` / `PY_VERSION_HEX` value, if it is CPython 3's.
pub fn from_hex(v: u64) -> Option<[u32; 3]> {
    (v >> 24 == 3).then_some([3, ((v >> 16) & 0xff) as u32, ((v >> 8) & 0xff) as u32])
}

/// The minor version in `…/python3.X…` or `…/libpython3.X…` (`python3.12d` too).
pub fn minor_in_file_name(path: &str) -> Option<u32> {
    let name = path.rsplit('/').next()?;
    let rest = name.strip_prefix("lib").unwrap_or(name).strip_prefix("python3.")?;
    rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_hex_values() {
        assert_eq!(from_hex(0x030c01f0), Some([3, 12, 1]));
        assert_eq!(from_hex(0x020701f0), None);
        assert_eq!(from_hex(0), None);
    }

    #[test]
    fn versions_from_file_names() {
        assert_eq!(minor_in_file_name("/usr/lib/libpython3.10.so.1.0"), Some(10));
        assert_eq!(minor_in_file_name("/root/.pyenv/versions/3.9.18/bin/python3.9"), Some(9));
        assert_eq!(minor_in_file_name("/usr/bin/python3.12d"), Some(12));
        assert_eq!(minor_in_file_name("/usr/bin/sleep"), None);
        assert_eq!(minor_in_file_name("/x/python3"), None);
    }
}
