//! Putting a finished dump on disk: the whole image or no file at all. The image is written
//! to an unnamed file (O_TMPFILE) in the target directory that gets its name only once
//! complete, so a helper killed at its deadline, or failing half-way, leaves nothing behind.
//! Where O_TMPFILE is unsupported the file is created (O_EXCL) and removed on any error.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `image` as the new file `path` (mode 0600). An existing file or symlink at `path`
/// is never written through: the error is `AlreadyExists`.
pub fn publish(path: &Path, image: &[u8]) -> io::Result<()> {
    match write_unnamed(path, image) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) => write_named(path, image),
        Ok(()) => Ok(()),
    }
}

/// Bytes per `write` call. One call for a whole 10 MB image (1000 threads) took ~26 ms
/// in most runs on ext4 once earlier dumps sat in the page cache, 1 MiB calls ~2.4 ms
/// (issue 14; measured side by side, interleaved, the dump being on the crash's path).
const WRITE_CHUNK: usize = 1 << 20;

fn write_chunked(file: &mut File, image: &[u8]) -> io::Result<()> {
    image.chunks(WRITE_CHUNK).try_for_each(|chunk| file.write_all(chunk))
}

fn write_unnamed(path: &Path, image: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let c_dir = CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: open with a NUL-terminated path; the result is checked.
    let fd = unsafe { libc::open(c_dir.as_ptr(), libc::O_TMPFILE | libc::O_WRONLY | libc::O_CLOEXEC, 0o600) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a file descriptor we just opened and own.
    let mut file = unsafe { File::from_raw_fd(fd) };
    write_chunked(&mut file, image)?;
    let proc_path = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: linkat with NUL-terminated paths. AT_SYMLINK_FOLLOW resolves the /proc link
    // to the unnamed file; the new name itself is never followed (EEXIST if it exists).
    let r = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            proc_path.as_ptr(),
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn write_named(path: &Path, image: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let written = write_chunked(&mut file, image);
    if written.is_err() {
        drop(file);
        let _ = std::fs::remove_file(path);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_a_new_private_file_and_never_replaces_one() {
        let dir = std::env::temp_dir().join(format!("cc-output-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("a.dmp");
        publish(&path, b"MDMP...").expect("publish");
        assert_eq!(std::fs::read(&path).expect("read"), b"MDMP...");
        assert_eq!(std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777, 0o600);
        let again = publish(&path, b"other").expect_err("exists");
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        std::os::unix::fs::symlink(&path, dir.join("link.dmp")).expect("symlink");
        assert!(publish(&dir.join("link.dmp"), b"other").is_err());
        assert_eq!(std::fs::read(&path).expect("read"), b"MDMP...");
        // Nothing else was left in the directory.
        assert_eq!(std::fs::read_dir(&dir).expect("list").count(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_fallback_also_refuses_existing_files() {
        let path = std::env::temp_dir().join(format!("cc-output-named-{}.dmp", std::process::id()));
        write_named(&path, b"one").expect("write");
        assert_eq!(write_named(&path, b"two").expect_err("exists").kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).expect("read"), b"one");
        let _ = std::fs::remove_file(&path);
    }
}
