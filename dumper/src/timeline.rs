//! Where the helper's time went, for the metadata's `helper_ms` (bench/crash_to_exit.py
//! prints it): a crash waits for the helper, so each phase is on the crash's path.
//!
//! A mark is a name and the time since the helper's `main` started; `spawned_ms` is how
//! long before that the requester stamped its request (the handler's work before starting
//! the helper, and the helper's exec and start-up), on the system clock both share.

use serde_json::{json, Map, Value};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

struct Marks {
    start: Option<Instant>,
    at_start_ns: u64,
    marks: Vec<(&'static str, f64)>,
}

static MARKS: Mutex<Marks> = Mutex::new(Marks { start: None, at_start_ns: 0, marks: Vec::new() });

/// The helper's first step.
pub fn start() {
    let now_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    if let Ok(mut m) = MARKS.lock() {
        m.start = Some(Instant::now());
        m.at_start_ns = now_ns;
    }
}

/// The end of the phase `name` (the phases follow one another).
pub fn mark(name: &'static str) {
    if let Ok(mut m) = MARKS.lock() {
        if let Some(start) = m.start {
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            m.marks.push((name, ms));
        }
    }
}

/// The metadata entry: each phase's length in ms (from the mark before it), when each
/// ended (`ends`), with `spawned_ms` (from the
/// request's stamp `requested_ns`, 0 for none, to `main`), the CPU time so far and the
/// peak memory.
pub fn summary(requested_ns: u64) -> Value {
    let Ok(m) = MARKS.lock() else { return Value::Null };
    let mut out = Map::new();
    if requested_ns != 0 && m.at_start_ns >= requested_ns {
        out.insert("spawned_ms".into(), json!((m.at_start_ns - requested_ns) as f64 / 1e6));
    }
    let mut last = 0.0;
    let mut ends = Map::new();
    for &(name, at) in &m.marks {
        out.insert(name.into(), json!(round(at - last)));
        ends.insert(name.into(), json!(round(at)));
        last = at;
    }
    // When each phase ended: a crash's writer runs on its own thread (writer.rs's
    // `EarlyWriter`), its marks fall between the walk's, and this gives their order.
    out.insert("ends".into(), Value::Object(ends));
    out.insert("total_ms".into(), json!(round(last)));
    if let Some((user, sys, max_rss_kib)) = usage() {
        out.insert("user_ms".into(), json!(round(user)));
        out.insert("sys_ms".into(), json!(round(sys)));
        out.insert("max_rss_kib".into(), json!(max_rss_kib));
    }
    Value::Object(out)
}

fn round(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// This process's user and system CPU time so far, and its peak resident memory.
fn usage() -> Option<(f64, f64, i64)> {
    // SAFETY: rusage is plain data, which getrusage fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes `usage`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    Some((ms(usage.ru_utime), ms(usage.ru_stime), usage.ru_maxrss))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_one_another() {
        start();
        mark("one");
        std::thread::sleep(std::time::Duration::from_millis(2));
        mark("two");
        let s = summary(0);
        assert!(s["two"].as_f64().unwrap() >= 2.0, "{s}");
        assert!(s["total_ms"].as_f64().unwrap() >= s["two"].as_f64().unwrap(), "{s}");
        assert!(s.get("spawned_ms").is_none());
        assert!(s["user_ms"].as_f64().is_some());
    }
}
