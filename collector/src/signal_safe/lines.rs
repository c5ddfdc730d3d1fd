//! Reading `/proc` text files line by line without allocation (mountinfo, maps).

/// Calls `f` with each line (without its newline) of the text that `read` delivers (chunks
/// into a buffer, 0 at the end), until `f` returns false. A line longer than `line` is
/// passed cut to its length, with `whole` false.
pub fn for_each_line(read: Read, line: &mut [u8], f: &mut dyn FnMut(&[u8], bool) -> bool) {
    let mut len = 0usize;
    let mut whole = true;
    let mut chunk = [0u8; 1024];
    loop {
        let n = read(&mut chunk);
        if n == 0 {
            return;
        }
        for &b in &chunk[..n.min(chunk.len())] {
            if b != b'\n' {
                match line.get_mut(len) {
                    Some(slot) => {
                        *slot = b;
                        len += 1;
                    }
                    None => whole = false,
                }
                continue;
            }
            let go_on = f(&line[..len], whole);
            (len, whole) = (0, true);
            if !go_on {
                return;
            }
        }
    }
}

/// Fills a buffer with the next bytes of a text; 0 at its end.
pub type Read<'a> = &'a mut dyn FnMut(&mut [u8]) -> usize;

/// Opens `path` and calls `body` with a reader of its contents; false if it cannot be opened.
pub fn with_file(path: &core::ffi::CStr, body: impl FnOnce(Read)) -> bool {
    // SAFETY: opening a NUL-terminated path; the result is checked.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return false;
    }
    body(&mut |buf| {
        // SAFETY: reads at most buf.len() bytes into buf.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        n.max(0) as usize
    });
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(fd) };
    true
}
