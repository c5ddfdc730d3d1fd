//! Whether a module file lives on a network or FUSE filesystem, from `/proc/self/mountinfo`
//! (which the kernel answers without touching the filesystem). The handler reads `.symtab`
//! from module files on disk; on a hung NFS server or FUSE daemon that `open`/`pread` would
//! block in the kernel, and the dying process with it. Such modules are named from their
//! in-memory `.dynsym` instead.

use super::lines::{for_each_line, with_file};

/// Filesystem types whose files may take unbounded time to read (prefixes).
const REMOTE_TYPES: [&[u8]; 11] =
    [b"nfs", b"cifs", b"smb", b"fuse", b"9p", b"ceph", b"glusterfs", b"afs", b"lustre", b"sshfs", b"davfs"];

/// Longest mountinfo line looked at; longer ones (rare) are skipped.
const LINE_MAX: usize = 4096;

/// Whether `path` (an absolute path) is on a remote or FUSE filesystem according to the
/// mountinfo text delivered by `read` (chunks into a buffer, 0 at the end). Unknown: false.
pub fn is_remote_with(path: &[u8], read: &mut dyn FnMut(&mut [u8]) -> usize) -> bool {
    let mut line = [0u8; LINE_MAX];
    // The mount with the longest mount point that is a prefix of `path` decides.
    let (mut best_len, mut best_remote) = (0usize, false);
    for_each_line(read, &mut line, &mut |line, whole| {
        if let Some((point_len, remote)) = mount_for(line, path).filter(|_| whole) {
            if point_len >= best_len {
                (best_len, best_remote) = (point_len, remote);
            }
        }
        true
    });
    best_remote
}

/// For one mountinfo line whose mount point contains `path`: (mount point length, remote).
fn mount_for(line: &[u8], path: &[u8]) -> Option<(usize, bool)> {
    // id parent major:minor root mount-point options [optional…] - fstype source superopts
    let mut fields = line.split(|&b| b == b' ');
    let point = fields.nth(4)?;
    let mut rest = fields.skip_while(|f| *f != b"-");
    rest.next()?;
    let fstype = rest.next()?;
    let point_len = unescaped_prefix_len(point, path)?;
    Some((point_len, REMOTE_TYPES.iter().any(|t| fstype.starts_with(t))))
}

/// If the mount point (octal-escaped, as mountinfo writes spaces and the like) is `/` or a
/// directory prefix of `path`, its unescaped length.
fn unescaped_prefix_len(point: &[u8], path: &[u8]) -> Option<usize> {
    let (mut i, mut n) = (0usize, 0usize);
    while i < point.len() {
        let octal = point
            .get(i + 1..i + 4)
            .filter(|d| point[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        let b = match octal {
            Some(d) => {
                i += 4;
                u8::try_from(
                    u32::from(d[0] - b'0') * 64 + u32::from(d[1] - b'0') * 8 + u32::from(d[2] - b'0'),
                )
                .ok()?
            }
            None => {
                i += 1;
                point[i - 1]
            }
        };
        if path.get(n) != Some(&b) {
            return None;
        }
        n += 1;
    }
    let whole_component = n == 1 || path.len() == n || path.get(n) == Some(&b'/');
    whole_component.then_some(n)
}

/// [`is_remote_with`] over this process's `/proc/self/mountinfo`.
pub fn is_remote(path: &[u8]) -> bool {
    let mut remote = false;
    with_file(c"/proc/self/mountinfo", |read| remote = is_remote_with(path, read));
    remote
}

#[cfg(test)]
mod tests {
    use super::is_remote_with;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /mnt/nfs rw,relatime shared:20 - nfs4 server:/export rw,vers=4.2
41 22 0:36 / /home/u/remote\\040dir rw,nosuid shared:21 - fuse.sshfs u@host: rw
42 40 8:2 / /mnt/nfs/local rw shared:22 - ext4 /dev/sda2 rw
";

    fn remote(path: &str) -> bool {
        let mut text = MOUNTINFO.as_bytes();
        is_remote_with(path.as_bytes(), &mut |buf| {
            let n = text.len().min(buf.len()).min(7); // small chunks: lines span reads
            buf[..n].copy_from_slice(&text[..n]);
            text = &text[n..];
            n
        })
    }

    #[test]
    fn network_and_fuse_mounts_are_remote() {
        assert!(remote("/mnt/nfs/lib/ext.so"));
        assert!(remote("/home/u/remote dir/ext.so"));
    }

    #[test]
    fn local_files_and_nested_local_mounts_are_not() {
        assert!(!remote("/usr/lib/libc.so.6"));
        assert!(!remote("/mnt/nfs/local/ext.so"));
        assert!(!remote("/mnt/nfsother/ext.so"));
        assert!(!remote("/home/u/remote dirx/ext.so"));
    }
}
