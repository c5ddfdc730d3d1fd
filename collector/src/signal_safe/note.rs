//! One line of context the fatal report ends with, `crashcatch: <note>`, before the
//! minidump's line: set from Python (the pytest plugin names the running test with it), so
//! the report on the terminal says what the process was doing. Written in normal context
//! (under the GIL, one writer at a time), read by the fatal handler: atomics only, a fixed
//! buffer, nothing to lock.

use super::out::Out;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// The longest note kept, in bytes.
pub const NOTE_SIZE: usize = 1024;

static BYTES: [AtomicU8; NOTE_SIZE] = [const { AtomicU8::new(0) }; NOTE_SIZE];
static LEN: AtomicUsize = AtomicUsize::new(0);

/// Replaces the note (empty: none); bytes past [`NOTE_SIZE`] are dropped. While the bytes
/// change, the length is 0, so a crash of the writing thread itself shows no note rather
/// than a mixed one (a handler already reading on another thread may see a mix: text only).
pub fn set(text: &[u8]) {
    LEN.store(0, Ordering::Release);
    for (slot, byte) in BYTES.iter().zip(text) {
        slot.store(*byte, Ordering::Relaxed);
    }
    LEN.store(text.len().min(NOTE_SIZE), Ordering::Release);
}

/// Writes `crashcatch: <note>\n` when a note is set.
pub fn write(out: &mut Out) {
    let len = LEN.load(Ordering::Acquire);
    if len == 0 {
        return;
    }
    out.str("crashcatch: ");
    for slot in BYTES.iter().take(len) {
        out.byte(slot.load(Ordering::Relaxed));
    }
    out.byte(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_note_cut_to_its_size() {
        set(b"first, longer note");
        set(b"second");
        assert_eq!(LEN.load(Ordering::Acquire), 6);
        let kept: Vec<u8> = BYTES.iter().take(6).map(|b| b.load(Ordering::Relaxed)).collect();
        assert_eq!(kept, b"second");
        set(&[b'x'; NOTE_SIZE + 10]);
        assert_eq!(LEN.load(Ordering::Acquire), NOTE_SIZE);
        set(b"");
        assert_eq!(LEN.load(Ordering::Acquire), 0);
    }
}
