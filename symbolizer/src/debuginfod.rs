//! A debuginfod client: `GET <url>/buildid/<hex>/debuginfo` (or `/executable`) from each
//! server of `$DEBUGINFOD_URLS` in turn, cached with elfutils' layout
//! (`<cache>/<build id>/debuginfo`) so that the next run — ours, gdb's or elfutils' — asks
//! nothing. Every failure is a message; a server that cannot be reached is not asked again
//! in this run, so a dead one costs one connect timeout, not one per module.
//!
//! Environment (as elfutils reads it): `DEBUGINFOD_URLS` (space-separated), `DEBUGINFOD_TIMEOUT`
//! (seconds without progress, default 90; connecting gets at most 5), `DEBUGINFOD_MAXTIME`
//! (seconds for a whole download, default unlimited), `DEBUGINFOD_MAXSIZE` (bytes; a larger
//! file is not downloaded; default 2 GiB where elfutils has no limit), `DEBUGINFOD_CACHE_PATH`
//! (default `$XDG_CACHE_HOME/debuginfod_client`, else `~/.cache/debuginfod_client`).
//!
//! A dump names its modules, and a hostile one may name thousands: a run makes at most
//! [`MAX_QUERIES_PER_RUN`] requests and spends at most [`MAX_SECONDS_PER_RUN`] on them
//! (answers from the cache are free); what is not asked for is said in the answer.

use crate::elf::ElfFile;
use std::cell::{Cell, OnceCell, RefCell};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a cached "no server has it" answer holds, as elfutils' default `cache_miss_s`.
const CACHE_MISS_SECONDS: u64 = 600;
/// Connecting (and resolving) never waits longer than this, whatever DEBUGINFOD_TIMEOUT says.
const MAX_CONNECT_SECONDS: u64 = 5;
/// Requests to servers in one run at most: a few per module with frames to name (its file,
/// its debug file, a dwz supplement) for the dozens of modules a crash typically involves.
pub const MAX_QUERIES_PER_RUN: usize = 64;
/// Seconds spent on requests in one run at most, downloads included.
pub const MAX_SECONDS_PER_RUN: u64 = 300;
/// Bytes of one file at most without `DEBUGINFOD_MAXSIZE`: more than the debug file of any
/// ordinary library (a browser's largest are about 1 GiB), far less than a full disk.
pub const DEFAULT_MAXSIZE: u64 = 2 << 30;

pub struct Debuginfod {
    urls: Vec<String>,
    cache: PathBuf,
    timeout: Duration,
    maxtime: Option<Duration>,
    /// Bytes of one file at most.
    maxsize: u64,
    agent: OnceCell<ureq::Agent>,
    /// Servers that could not be reached in this run, and why.
    dead: RefCell<Vec<(String, String)>>,
    /// Requests made in this run, and when the first one started.
    queries: Cell<usize>,
    first_query: OnceCell<Instant>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn whole_number(name: &str) -> Option<u64> {
    env(name).and_then(|v| v.trim().parse().ok())
}

/// elfutils' cache directory choice.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = env("DEBUGINFOD_CACHE_PATH") {
        return p.into();
    }
    let xdg = env("XDG_CACHE_HOME").map(PathBuf::from);
    let home = || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache");
    xdg.unwrap_or_else(home).join("debuginfod_client")
}

impl Debuginfod {
    /// The client `$DEBUGINFOD_URLS` asks for; None when it is unset or empty.
    pub fn from_env() -> Option<Debuginfod> {
        let urls: Vec<String> = env("DEBUGINFOD_URLS")?.split_whitespace().map(String::from).collect();
        let timeout = whole_number("DEBUGINFOD_TIMEOUT").filter(|&s| s > 0).unwrap_or(90);
        let mut client = Debuginfod::new(urls, cache_dir(), Duration::from_secs(timeout))?;
        client.maxtime = whole_number("DEBUGINFOD_MAXTIME").filter(|&s| s > 0).map(Duration::from_secs);
        client.maxsize = whole_number("DEBUGINFOD_MAXSIZE").filter(|&b| b > 0).unwrap_or(DEFAULT_MAXSIZE);
        Some(client)
    }

    /// A client of `urls` (None if there are none), caching in `cache`, giving up on a
    /// server after `timeout` without progress.
    pub fn new(urls: Vec<String>, cache: PathBuf, timeout: Duration) -> Option<Debuginfod> {
        let urls: Vec<String> = urls.iter().map(|u| u.trim_end_matches('/').to_string()).collect();
        (!urls.is_empty()).then(|| Debuginfod {
            urls,
            cache,
            timeout,
            maxtime: None,
            maxsize: DEFAULT_MAXSIZE,
            agent: OnceCell::new(),
            dead: RefCell::new(Vec::new()),
            queries: Cell::new(0),
            first_query: OnceCell::new(),
        })
    }

    fn agent(&self) -> &ureq::Agent {
        self.agent.get_or_init(|| {
            let connect = self.timeout.min(Duration::from_secs(MAX_CONNECT_SECONDS));
            let config = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_resolve(Some(connect))
                .timeout_connect(Some(connect))
                .timeout_recv_response(Some(self.timeout))
                .timeout_per_read(Some(self.timeout))
                .timeout_global(self.maxtime)
                .user_agent(concat!("crashcatch/", env!("CARGO_PKG_VERSION")))
                .build();
            ureq::Agent::new_with_config(config)
        })
    }

    /// Why no more requests may be made in this run, if so.
    fn over_budget(&self) -> Option<String> {
        if self.queries.get() >= MAX_QUERIES_PER_RUN {
            return Some(format!("this run has made its {MAX_QUERIES_PER_RUN} requests (the limit per run)"));
        }
        let spent = self.first_query.get().map_or(Duration::ZERO, Instant::elapsed);
        (spent >= Duration::from_secs(MAX_SECONDS_PER_RUN)).then(|| {
            format!("this run has spent its {MAX_SECONDS_PER_RUN} s on requests (the limit per run)")
        })
    }

    /// How long the next request may take: DEBUGINFOD_MAXTIME, within what is left of the
    /// run's time.
    fn time_for_request(&self) -> Duration {
        let started = *self.first_query.get_or_init(Instant::now);
        let left = Duration::from_secs(MAX_SECONDS_PER_RUN).saturating_sub(started.elapsed());
        self.maxtime.map_or(left, |m| m.min(left))
    }

    /// The `kind` ("debuginfo" or "executable") file of `build_id`, from the cache or a
    /// server, checked to carry that build id. The error names every server's answer.
    pub fn fetch(&self, build_id: &str, kind: &str) -> Result<ElfFile, String> {
        if build_id.len() < 2 || !build_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("debuginfod: {build_id:?} is not a build id"));
        }
        let dir = self.cache.join(build_id);
        let target = dir.join(kind);
        let mut answers = Vec::new();
        match cached(&target, build_id) {
            Cached::Hit(file) => return Ok(*file),
            Cached::Miss => {
                return Err(format!(
                    "debuginfod: no server had the {kind} of {build_id} (cached answer, {}; delete it to ask again)",
                    target.display()
                ))
            }
            Cached::Refused(why) => answers.push(format!("cache entry refused and removed: {why}")),
            Cached::Nothing => {}
        }
        let mut all_not_found = true;
        let mut unreachable = false;
        for url in &self.urls {
            if let Some((_, why)) = self.dead.borrow().iter().find(|(u, _)| u == url) {
                answers.push(format!("{url}: unreachable (earlier in this run: {why})"));
                all_not_found = false;
                unreachable = true;
                continue;
            }
            if let Some(why) = self.over_budget() {
                answers.push(format!("{url}: not asked: {why}"));
                all_not_found = false;
                continue;
            }
            match self.download(url, build_id, kind, &dir, &target) {
                Ok(file) => return Ok(file),
                Err(Failure::NotFound(why)) => answers.push(format!("{url}: {why}")),
                Err(Failure::Other(why)) => {
                    answers.push(format!("{url}: {why}"));
                    all_not_found = false;
                }
                Err(Failure::Unreachable(why)) => {
                    answers.push(format!("{url}: unreachable ({why})"));
                    self.dead.borrow_mut().push((url.clone(), why));
                    all_not_found = false;
                    unreachable = true;
                }
            }
        }
        if all_not_found {
            remember_miss(&dir, &target);
        }
        let hint = if unreachable { " (check DEBUGINFOD_URLS, or unset it to work offline)" } else { "" };
        Err(format!("debuginfod, {kind} of {build_id}: {}{hint}", answers.join("; ")))
    }

    fn download(
        &self,
        url: &str,
        build_id: &str,
        kind: &str,
        dir: &Path,
        target: &Path,
    ) -> Result<ElfFile, Failure> {
        let address = format!("{url}/buildid/{build_id}/{kind}");
        let request =
            self.agent().get(&address).config().timeout_global(Some(self.time_for_request())).build();
        self.queries.set(self.queries.get() + 1);
        let mut response = match request.call() {
            Ok(r) => r,
            Err(e) => return Err(Failure::Unreachable(e.to_string())),
        };
        match response.status().as_u16() {
            200 => {}
            404 => return Err(Failure::NotFound("not found (HTTP 404)".into())),
            code => return Err(Failure::Other(format!("HTTP {code}"))),
        }
        let max = self.maxsize;
        if let Some(size) = response.body().content_length().filter(|&size| size > max) {
            return Err(Failure::Other(format!(
                "{size} bytes, more than DEBUGINFOD_MAXSIZE ({max} bytes): not downloaded"
            )));
        }
        let io = |what: &str, e: std::io::Error| Failure::Other(format!("{what}: {e}"));
        std::fs::create_dir_all(dir).map_err(|e| io(&format!("cannot create {}", dir.display()), e))?;
        // Written under a temporary name and renamed when complete and checked, so that a
        // reader (another run, gdb) never sees a partial file.
        let tmp = dir.join(format!(".{kind}.{}.tmp", std::process::id()));
        let result = (|| {
            let mut out =
                std::fs::File::create(&tmp).map_err(|e| io(&format!("cannot write {}", tmp.display()), e))?;
            // One byte more than allowed tells a file that is too large (its size unannounced).
            let copied = std::io::copy(&mut response.body_mut().as_reader().take(max + 1), &mut out)
                .map_err(|e| Failure::Unreachable(format!("download failed: {e}")))?;
            if copied > max {
                return Err(Failure::Other(format!(
                    "more than DEBUGINFOD_MAXSIZE ({max} bytes): download stopped, nothing kept"
                )));
            }
            out.flush().map_err(|e| io("cannot write", e))?;
            let mut file = ElfFile::open_checked(&tmp, Some(build_id))
                .map_err(|e| Failure::Other(format!("served something else: {e}")))?;
            std::fs::rename(&tmp, target)
                .map_err(|e| io(&format!("cannot rename to {}", target.display()), e))?;
            // The mapping outlives the rename; only the name changes.
            file.path = target.to_path_buf();
            Ok(file)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

enum Failure {
    NotFound(String),
    Unreachable(String),
    Other(String),
}

enum Cached {
    Hit(Box<ElfFile>),
    /// A fresh "not found" marker: an empty file with no permissions (elfutils' convention).
    Miss,
    /// A cached file that is not what it should be (removed, to be fetched again).
    Refused(String),
    Nothing,
}

fn cached(target: &Path, build_id: &str) -> Cached {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(target) else { return Cached::Nothing };
    if meta.len() == 0 && meta.permissions().mode() & 0o777 == 0 {
        let age = meta.modified().ok().and_then(|m| m.elapsed().ok());
        if age.is_some_and(|a| a.as_secs() < CACHE_MISS_SECONDS) {
            return Cached::Miss;
        }
    }
    match ElfFile::open_checked(target, Some(build_id)) {
        Ok(file) => Cached::Hit(Box::new(file)),
        Err(why) => {
            // A stale marker or a bad entry (damaged, or not this build): drop it, ask again.
            let _ = std::fs::remove_file(target);
            if meta.len() == 0 {
                Cached::Nothing
            } else {
                Cached::Refused(why)
            }
        }
    }
}

fn remember_miss(dir: &Path, target: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::create_dir_all(dir).is_ok() && std::fs::File::create(target).is_ok() {
        let _ = std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o000));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("crashcatch-debuginfod-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn refuses_what_is_not_a_build_id() {
        let client =
            Debuginfod::new(vec!["http://127.0.0.1:1/".into()], scratch("id"), Duration::from_secs(1));
        let err = client.unwrap().fetch("../../etc", "debuginfo").err().unwrap();
        assert!(err.contains("is not a build id"), "{err}");
    }

    #[test]
    fn an_unreachable_server_is_asked_once_and_nothing_is_cached() {
        let cache = scratch("dead");
        let client =
            Debuginfod::new(vec!["http://127.0.0.1:1".into()], cache.clone(), Duration::from_secs(2))
                .unwrap();
        let first = client.fetch("abcdef", "debuginfo").err().unwrap();
        assert!(
            first.contains("http://127.0.0.1:1: unreachable (") && first.contains("DEBUGINFOD_URLS"),
            "{first}"
        );
        let second = client.fetch("abcdef", "executable").err().unwrap();
        assert!(second.contains("earlier in this run"), "{second}");
        assert!(!cache.join("abcdef").exists());
    }

    #[test]
    fn a_run_makes_at_most_its_share_of_requests_and_time() {
        let client =
            Debuginfod::new(vec!["http://127.0.0.1:1".into()], scratch("budget"), Duration::from_secs(2))
                .unwrap();
        client.queries.set(MAX_QUERIES_PER_RUN);
        let err = client.fetch("abcdef", "debuginfo").err().unwrap();
        assert!(err.contains("not asked: this run has made its 64 requests"), "{err}");
        // Not asked is not "not found": nothing is cached.
        assert!(!client.cache.join("abcdef").exists());
        // Nor more time than the run's.
        let client =
            Debuginfod::new(vec!["http://127.0.0.1:1".into()], scratch("time"), Duration::from_secs(2))
                .unwrap();
        let long_ago = Instant::now().checked_sub(Duration::from_secs(MAX_SECONDS_PER_RUN + 1)).unwrap();
        client.first_query.set(long_ago).unwrap();
        let err = client.fetch("abcdef", "debuginfo").err().unwrap();
        assert!(err.contains("not asked: this run has spent its 300 s on requests"), "{err}");
    }

    #[test]
    fn a_fresh_miss_marker_answers_without_asking() {
        use std::os::unix::fs::PermissionsExt;
        let cache = scratch("miss");
        std::fs::create_dir_all(cache.join("abcdef")).unwrap();
        let marker = cache.join("abcdef").join("debuginfo");
        std::fs::File::create(&marker).unwrap();
        std::fs::set_permissions(&marker, std::fs::Permissions::from_mode(0o000)).unwrap();
        let client =
            Debuginfod::new(vec!["http://127.0.0.1:1".into()], cache.clone(), Duration::from_secs(2))
                .unwrap();
        let err = client.fetch("abcdef", "debuginfo").err().unwrap();
        assert!(err.contains("cached answer"), "{err}");
        let _ = std::fs::remove_dir_all(&cache);
    }
}
