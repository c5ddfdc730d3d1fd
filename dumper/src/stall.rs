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

/// minidump-writer's destination: it mirrors into it, stream by stream, the image it also
/// returns in memory. The helper keeps the returned one, so this only keeps the position:
/// the mirror was a second megabyte-sized copy (at 100 threads ~0.7 ms, half of it while
/// the process's threads were stopped).
#[derive(Default)]
pub struct Discard {
    position: u64,
    len: u64,
}

impl Write for Discard {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.position += buf.len() as u64;
        self.len = self.len.max(self.position);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for Discard {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let to = match pos {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        self.position = to.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        Ok(self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_discarded_mirror_keeps_its_position_and_length() {
        let mut d = Discard::default();
        d.write_all(&[0; 100]).unwrap();
        assert_eq!(d.seek(SeekFrom::Start(10)).unwrap(), 10);
        d.write_all(&[0; 5]).unwrap();
        assert_eq!(d.stream_position().unwrap(), 15);
        assert_eq!(d.seek(SeekFrom::End(-20)).unwrap(), 80);
        assert_eq!(d.seek(SeekFrom::Current(30)).unwrap(), 110);
        assert!(d.seek(SeekFrom::Current(-200)).is_err());
    }
}
