//! Test hook: `CRASHCATCH_TEST_HELPER_STALL_MS` makes the helper sleep on the first write
//! of the dump, when minidump-writer has every thread of the target suspended, so tests can
//! kill the helper at the worst moment and check that the target never stays stopped.

use std::io::{Seek, SeekFrom, Write};
use std::time::Duration;

pub struct Stall<W> {
    inner: W,
    pending: Option<Duration>,
}

impl<W> Stall<W> {
    pub fn from_env(inner: W) -> Self {
        let pending = std::env::var("CRASHCATCH_TEST_HELPER_STALL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis);
        Stall { inner, pending }
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Stall<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(d) = self.pending.take() {
            std::thread::sleep(d);
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Seek> Seek for Stall<W> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}
