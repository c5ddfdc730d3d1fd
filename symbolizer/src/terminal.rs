//! Text from a dump made harmless for a terminal. A dump is input from the crashed program
//! (argv, thread names, annotations, Python names and source lines, module paths, DWARF
//! names): printed raw, an escape sequence in it could retitle the window, erase or rewrite
//! lines, or (with bidi overrides) make a line read differently from what it holds.
//!
//! Every dump-derived string of the text output is written through [`Escaped`]; the JSON
//! output goes through [`SafeJson`], which keeps the same strings exactly (a JSON reader
//! gets the original text back) but spells the dangerous characters as `\u` escapes.

use serde_json::ser::{CompactFormatter, Formatter};
use std::fmt;
use std::io;

/// Whether a terminal could act on `c` rather than show it: C0 controls (newline included:
/// a dump's own newline could forge an output line), DEL, C1 controls (an 8-bit CSI is
/// U+009B) and the Unicode bidi marks, embeddings, overrides and isolates.
pub fn acts_on_terminal(c: char) -> bool {
    matches!(
        c,
        '\0'..='\x1f'
            | '\x7f'..='\u{9f}'
            | '\u{61c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

/// Whether `text` is ASCII without controls or DEL: nothing in it [`acts_on_terminal`].
fn is_printable_ascii(text: &str) -> bool {
    text.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// A dump-derived string for the text output: every character [`acts_on_terminal`] is
/// written as Python's `repr` would (`\n`, `\r`, `\t`, `\x1b`, `\u202e`). Backslashes are
/// left alone, so ordinary paths and source lines read as they are; `--json` is exact.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Most text is printable ASCII: one pass over the bytes instead of decoding chars.
        if is_printable_ascii(self.0) {
            return f.write_str(self.0);
        }
        let mut plain_from = 0;
        for (at, c) in self.0.char_indices().filter(|&(_, c)| acts_on_terminal(c)) {
            f.write_str(&self.0[plain_from..at])?;
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if (c as u32) < 0x100 => write!(f, "\\x{:02x}", c as u32)?,
                c => write!(f, "\\u{:04x}", c as u32)?,
            }
            plain_from = at + c.len_utf8();
        }
        f.write_str(&self.0[plain_from..])
    }
}

/// serde_json's compact output, with the characters [`acts_on_terminal`] that serde_json
/// leaves raw (DEL, C1 controls, bidi marks; it escapes C0 itself) written as `\uXXXX`.
/// They can only occur inside strings, where the escape means the same character.
pub struct SafeJson;

impl Formatter for SafeJson {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // serde_json escapes C0 itself: a fragment of ASCII below DEL is written as it is.
        if fragment.bytes().all(|b| b < 0x7f) {
            return CompactFormatter.write_string_fragment(writer, fragment);
        }
        let mut plain_from = 0;
        for (at, c) in fragment.char_indices().filter(|&(_, c)| acts_on_terminal(c)) {
            writer.write_all(&fragment.as_bytes()[plain_from..at])?;
            write!(writer, "\\u{:04x}", c as u32)?;
            plain_from = at + c.len_utf8();
        }
        CompactFormatter.write_string_fragment(writer, &fragment[plain_from..])
    }
}

/// `value` as one line of JSON through [`SafeJson`].
pub fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, SafeJson);
    value.serialize(&mut serializer).expect("crashcatch's documents always serialize");
    // SafeJson and serde_json write UTF-8 only (escapes are ASCII).
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "a\x1b]0;pwned\x07b\x1b[2K\rc\u{9b}31m\u{202e}d\u{2066}\t\n\x7f\u{61c}é✓";

    #[test]
    fn text_escapes_what_a_terminal_acts_on_and_nothing_else() {
        let shown = Escaped(HOSTILE).to_string();
        assert_eq!(shown, "a\\x1b]0;pwned\\x07b\\x1b[2K\\rc\\x9b31m\\u202ed\\u2066\\t\\n\\x7f\\u061cé✓");
        assert!(!shown.chars().any(acts_on_terminal));
        assert_eq!(Escaped("C:\\path\\x1b ok").to_string(), "C:\\path\\x1b ok");
        // Printable ASCII as it is (the fast path); DEL or a control alone still escaped.
        assert_eq!(
            Escaped("File \"a.py\", line 3 in <module> ~").to_string(),
            "File \"a.py\", line 3 in <module> ~"
        );
        assert_eq!(Escaped("a\x7fb").to_string(), "a\\x7fb");
        assert_eq!(Escaped("a\tb").to_string(), "a\\tb");
    }

    #[test]
    fn json_keeps_the_exact_text_without_raw_controls() {
        let value = serde_json::json!({ HOSTILE: [HOSTILE, "plain"] });
        let text = json_text(&value);
        assert!(!text.chars().any(acts_on_terminal), "{text}");
        assert!(text.contains("\\u009b") && text.contains("\\u202e") && text.contains("\\u007f"), "{text}");
        assert_eq!(
            json_text(&["plain \"quoted\" ~", "del\x7f"]),
            "[\"plain \\\"quoted\\\" ~\",\"del\\u007f\"]"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
    }
}
