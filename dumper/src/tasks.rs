//! The process's threads (/proc/PID/task) and their names (each one's `comm` file).
//!
//! The names are the slow part: three system calls per thread through procfs, ~15 µs each
//! thread the first time (15 ms at 1000 threads), and a crash waits for the helper. With
//! many threads they are read on a second thread while the helper walks the Python stacks,
//! which needs only the thread ids.

use std::os::fd::AsRawFd;
use std::thread::JoinHandle;

/// From this many threads the names are read on a second thread (starting one costs about
/// as much as reading a few dozen names).
const READ_ASIDE_FROM: usize = 32;

/// The threads, listed; their names read or being read.
pub struct Tasks {
    tids: Vec<i32>,
    names: Names,
}

enum Names {
    Read(Vec<String>),
    Reading(JoinHandle<Vec<String>>),
}

/// The ids of `pid`'s threads, in order (none if /proc cannot tell).
pub fn ids(pid: i32) -> Vec<i32> {
    let mut tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    tids
}

impl Tasks {
    /// Lists the threads of `pid` (in id order) and starts reading their names.
    pub fn list(pid: i32) -> Tasks {
        let tids = ids(pid);
        let names = if tids.len() >= READ_ASIDE_FROM {
            let aside = tids.clone();
            match std::thread::Builder::new().name("names".into()).spawn(move || names(pid, &aside)) {
                Ok(handle) => Names::Reading(handle),
                // No thread to be had (a limit): read them here.
                Err(_) => Names::Read(names(pid, &tids)),
            }
        } else {
            Names::Read(names(pid, &tids))
        };
        Tasks { tids, names }
    }

    pub fn tids(&self) -> &[i32] {
        &self.tids
    }

    /// Each thread with its name ("" when it could not be read: the thread is gone).
    pub fn named(self) -> Vec<(i32, String)> {
        let names = match self.names {
            Names::Read(names) => names,
            Names::Reading(handle) => handle.join().unwrap_or_default(),
        };
        let mut names = names.into_iter();
        self.tids.into_iter().map(|tid| (tid, names.next().unwrap_or_default())).collect()
    }
}

/// The name of each of `tids`, in order: one `comm` file each, opened relative to the task
/// directory (not from /proc down), one read into a buffer that holds any name (the
/// kernel's TASK_COMM_LEN is 16).
fn names(pid: i32, tids: &[i32]) -> Vec<String> {
    let Ok(dir) = std::fs::File::open(format!("/proc/{pid}/task")) else {
        return vec![String::new(); tids.len()];
    };
    let mut path = Vec::with_capacity(24);
    tids.iter()
        .map(|tid| {
            path.clear();
            path.extend_from_slice(tid.to_string().as_bytes());
            path.extend_from_slice(b"/comm\0");
            let mut buf = [0u8; 64];
            // SAFETY: `path` is NUL-terminated and outlives the call; `dir` is open.
            let fd = unsafe {
                libc::openat(dir.as_raw_fd(), path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC)
            };
            if fd < 0 {
                return String::new();
            }
            // SAFETY: reading into a buffer of the length given, from the fd just opened.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            // SAFETY: closing the fd opened above, once.
            unsafe { libc::close(fd) };
            String::from_utf8_lossy(&buf[..n.max(0) as usize]).trim_end().to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_here_or_aside_the_same() {
        // Each worker names itself as it starts: the first barrier waits for every name.
        let ready = std::sync::Arc::new(std::sync::Barrier::new(READ_ASIDE_FROM + 1));
        let stop = std::sync::Arc::new(std::sync::Barrier::new(READ_ASIDE_FROM + 1));
        let workers: Vec<_> = (0..READ_ASIDE_FROM)
            .map(|i| {
                let (ready, stop) = (ready.clone(), stop.clone());
                let work = move || {
                    ready.wait();
                    stop.wait();
                };
                std::thread::Builder::new().name(format!("w{i}")).spawn(work).unwrap()
            })
            .collect();
        ready.wait();
        let pid = std::process::id() as i32;
        let tasks = Tasks::list(pid);
        assert!(matches!(tasks.names, Names::Reading(_)), "{} threads", tasks.tids().len());
        let tids = tasks.tids().to_vec();
        let aside = tasks.named();
        assert_eq!(aside.iter().map(|&(t, _)| t).collect::<Vec<_>>(), tids);
        let here = names(pid, &tids);
        // The test harness's own threads may be named anything; ours are known.
        for i in 0..READ_ASIDE_FROM {
            assert_eq!(aside.iter().filter(|(_, n)| *n == format!("w{i}")).count(), 1, "w{i}: {aside:?}");
        }
        // The same names read both ways; the harness's other test threads may end between the
        // two reads (their name then reads ""), ours wait at the barrier.
        assert_eq!(here.len(), aside.len());
        let ours = |n: &str| (0..READ_ASIDE_FROM).any(|i| n == format!("w{i}"));
        for ((_, a), h) in aside.iter().zip(&here) {
            if ours(a) || ours(h) {
                assert_eq!(a, h, "{aside:?} / {here:?}");
            }
        }
        assert_eq!(names(pid, &[i32::MAX]), vec![String::new()]);
        stop.wait();
        for w in workers {
            w.join().unwrap();
        }
    }
}
