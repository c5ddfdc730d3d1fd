//! The process's environment in the dump. minidump-writer copies /proc/PID/environ whole
//! (the LinuxEnviron stream), and the main thread's stack copy holds the same strings (the
//! kernel puts them at the top of that stack). Both are rewritten in the in-memory image,
//! before anything reaches the disk, as `enable(dump_environ=…)` asks:
//!
//! - redact (default): the values of variables that look secret (see [`is_secret`]) become
//!   [`MARKER`] in the stream; every copy of `NAME=VALUE` in the image has its value
//!   overwritten, and so does every copy of a value of at least [`MIN_BARE_VALUE`] bytes;
//! - keep: nothing changes;
//! - drop: the stream becomes an unused one (type 0, no data) and every copy of every
//!   `NAME=VALUE` is overwritten, names included.

use crate::streams::{directory, set_entry};
use handoff::EnvironMode;

/// minidump-writer's copy of /proc/PID/environ: `NAME=VALUE\0`…
pub const LINUX_ENVIRON: u32 = 0x4767_0007;
/// What a redacted value reads in the environment stream.
pub const MARKER: &[u8] = b"<redacted>";
/// Overwrites secret bytes elsewhere in the image (same length: offsets stay valid).
const FILL: u8 = b'*';
/// Bare copies of a secret value (not preceded by `NAME=`) are overwritten only from this
/// length on: a shorter value could match unrelated bytes of the image by chance.
pub const MIN_BARE_VALUE: usize = 8;

/// Upper-case substrings of names whose values are redacted.
pub const SECRET_WORDS: &[&str] = &[
    "KEY",
    "TOKEN",
    "SECRET",
    "PASS",
    "CREDENTIAL",
    "AUTH",
    "COOKIE",
    "SESSION",
    "PRIVATE",
    "SIGNATURE",
    "DSN",
];

/// Whether the value of `name` is redacted: its upper-cased name contains one of
/// [`SECRET_WORDS`] or of the user's `extra` patterns (upper case), or ends in `_PAT`
/// (personal access tokens), or the value holds a URL with a password (`scheme://user:pw@`).
pub fn is_secret(name: &str, value: &[u8], extra: &[&str]) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_WORDS.iter().chain(extra).any(|w| upper.contains(w))
        || upper.ends_with("_PAT")
        || has_url_password(value)
}

fn has_url_password(value: &[u8]) -> bool {
    let mut rest = value;
    while let Some(at) = find(rest, b"://") {
        rest = &rest[at + 3..];
        let authority_end = rest.iter().position(|b| b"/?#".contains(b)).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some(userinfo_end) = authority.iter().rposition(|&b| b == b'@') {
            if authority[..userinfo_end].contains(&b':') {
                return true;
            }
        }
    }
    false
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// Overwrites `hay[at+skip .. at+needle.len()]` with [`FILL`] at every occurrence of `needle`.
fn overwrite_all(hay: &mut [u8], needle: &[u8], skip: usize) {
    if needle.is_empty() {
        return;
    }
    // SIMD search: the image can be tens of MiB and every variable is searched for.
    let finder = memchr::memmem::Finder::new(needle);
    let mut from = 0;
    while let Some(at) = finder.find(&hay[from..]) {
        let start = from + at;
        hay[start + skip..start + needle.len()].fill(FILL);
        from = start + needle.len();
    }
}

/// The mode as the metadata names it.
pub fn mode_name(mode: EnvironMode) -> &'static str {
    match mode {
        EnvironMode::Redact => "redact",
        EnvironMode::Keep => "keep",
        EnvironMode::Drop => "drop",
    }
}

/// What was done, for the metadata.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Names whose values were redacted (none listed when the whole stream was dropped).
    pub redacted: Vec<String>,
    /// Whether the dump had an environment stream at all.
    pub found: bool,
}

/// Applies `mode` to the image. `Err` when the image's directory cannot be read, so the
/// caller never writes a dump whose environment it could not treat.
pub fn apply(image: &mut Vec<u8>, mode: EnvironMode, extra: &[&str]) -> Result<Outcome, String> {
    let entries = directory(image).ok_or("the minidump's stream directory is unreadable")?;
    let Some((index, &(_, size, rva))) = entries.iter().enumerate().find(|(_, e)| e.0 == LINUX_ENVIRON)
    else {
        return Ok(Outcome::default());
    };
    let (start, end) = (rva as usize, rva as usize + size as usize);
    let environ = image.get(start..end).ok_or("the environment stream lies outside the minidump")?.to_vec();
    let mut outcome = Outcome { found: true, ..Outcome::default() };
    if mode == EnvironMode::Keep {
        return Ok(outcome);
    }
    let mut rewritten = Vec::new();
    for entry in environ.split(|&b| b == 0).filter(|e| !e.is_empty()) {
        let eq = entry.iter().position(|&b| b == b'=').unwrap_or(entry.len());
        let (name, value) =
            (String::from_utf8_lossy(&entry[..eq]).into_owned(), entry.get(eq + 1..).unwrap_or(&[]));
        let secret = is_secret(&name, value, extra);
        if mode == EnvironMode::Drop {
            overwrite_all(image, entry, 0);
        } else if secret && !value.is_empty() {
            overwrite_all(image, entry, eq + 1);
        }
        if secret && value.len() >= MIN_BARE_VALUE {
            overwrite_all(image, value, 0);
        }
        if secret && mode == EnvironMode::Redact {
            outcome.redacted.push(name);
        }
        rewritten.extend_from_slice(&entry[..eq.min(entry.len())]);
        if eq < entry.len() {
            rewritten.push(b'=');
            rewritten.extend_from_slice(if secret { MARKER } else { value });
        }
        rewritten.push(0);
    }
    // The old bytes go whatever happens next.
    image[start..end].fill(0);
    match mode {
        EnvironMode::Drop => set_entry(image, index, (0, 0, 0)),
        _ if rewritten.len() <= size as usize => {
            image[start..start + rewritten.len()].copy_from_slice(&rewritten);
            set_entry(image, index, (LINUX_ENVIRON, rewritten.len() as u32, rva));
        }
        _ => {
            // Markers longer than the values they replace: the stream moves to the end.
            image.resize(image.len().next_multiple_of(8), 0);
            let new_rva = u32::try_from(image.len()).map_err(|_| "the minidump is larger than 4 GiB")?;
            image.extend_from_slice(&rewritten);
            set_entry(image, index, (LINUX_ENVIRON, rewritten.len() as u32, new_rva));
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::{append_stream, directory, tests::empty_minidump};

    const ENVIRON: &[u8] = b"MY_API_KEY=s3cret\0FOO=visible\0DATABASE_URL=postgres://u:hunter2@db/x\0\
        GH_PAT=ghp_0123456789\0HOME=/root\0EMPTY_TOKEN=\0";
    /// Another stream standing in for the main thread's stack, which holds the same strings.
    const STACK: u32 = 0x4767_0009;
    const STACK_BYTES: &[u8] =
        b"..MY_API_KEY=s3cret\0FOO=visible\0..copies: ghp_0123456789, postgres://u:hunter2@db/x, s3cret..";

    fn image() -> Vec<u8> {
        let mut image = empty_minidump();
        append_stream(&mut image, STACK, STACK_BYTES).expect("stack");
        append_stream(&mut image, LINUX_ENVIRON, ENVIRON).expect("environ");
        image
    }

    fn stream(image: &[u8], stream: u32) -> Option<&[u8]> {
        let (_, size, rva) = directory(image)?.into_iter().find(|e| e.0 == stream)?;
        image.get(rva as usize..(rva + size) as usize)
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        find(hay, needle).is_some()
    }

    #[test]
    fn the_rule_names_what_looks_secret() {
        for name in [
            "AWS_SECRET_ACCESS_KEY",
            "github_token",
            "PGPASSWORD",
            "MYSQL_PWD_PASS",
            "SENTRY_DSN",
            "HTTP_COOKIE",
            "GH_PAT",
            "X_AUTH",
            "DB_CREDENTIALS",
            "PRIVATE_THING",
            "SESSION_ID",
        ] {
            assert!(is_secret(name, b"v", &[]), "{name}");
        }
        for name in ["HOME", "PATH", "PWD", "LANG", "FOO"] {
            assert!(!is_secret(name, b"/x", &[]), "{name}");
        }
        assert!(is_secret("UPSTREAM", b"https://user:pw@host/path", &[]));
        assert!(is_secret("MIRRORS", b"http://a/ https://u:p@b", &[]));
        assert!(!is_secret("UPSTREAM", b"https://user@host/a:b@c", &[]));
        assert!(!is_secret("HOMEPAGE", b"https://host/path?x=1", &[]));
        assert!(is_secret("MYCORP_ID", b"1", &["MYCORP"]));
    }

    #[test]
    fn redact_replaces_values_everywhere_and_keeps_the_rest() {
        let mut image = image();
        let out = apply(&mut image, EnvironMode::Redact, &[]).expect("apply");
        assert_eq!(out.redacted, ["MY_API_KEY", "DATABASE_URL", "GH_PAT", "EMPTY_TOKEN"]);
        for secret in [&b"MY_API_KEY=s3cret"[..], b"hunter2", b"ghp_0123456789"] {
            assert!(!contains(&image, secret), "{}", String::from_utf8_lossy(secret));
        }
        let env = stream(&image, LINUX_ENVIRON).expect("environ stream");
        assert_eq!(
            env,
            &b"MY_API_KEY=<redacted>\0FOO=visible\0DATABASE_URL=<redacted>\0GH_PAT=<redacted>\0\
               HOME=/root\0EMPTY_TOKEN=<redacted>\0"[..]
        );
        let stack = stream(&image, STACK).expect("stack");
        assert_eq!(stack.len(), STACK_BYTES.len(), "offsets must not move");
        assert!(contains(stack, b"MY_API_KEY=******\0FOO=visible"));
        // Long values go wherever they are; a short one only where `NAME=` precedes it.
        assert!(contains(stack, b"copies: **************, *************************, s3cret.."));
    }

    #[test]
    fn a_longer_rewrite_moves_the_stream_to_the_end() {
        let mut image = empty_minidump();
        append_stream(&mut image, LINUX_ENVIRON, b"A_KEY=1\0B_KEY=2\0").expect("environ");
        let old_len = image.len();
        apply(&mut image, EnvironMode::Redact, &[]).expect("apply");
        assert_eq!(stream(&image, LINUX_ENVIRON).expect("environ"), b"A_KEY=<redacted>\0B_KEY=<redacted>\0");
        assert!(image.len() > old_len);
        assert!(!contains(&image[..old_len], b"A_KEY=1"));
    }

    #[test]
    fn drop_leaves_no_stream_and_no_copies() {
        let mut image = image();
        let out = apply(&mut image, EnvironMode::Drop, &[]).expect("apply");
        assert!(out.found && out.redacted.is_empty());
        assert!(stream(&image, LINUX_ENVIRON).is_none());
        assert!(directory(&image).expect("directory").contains(&(0, 0, 0)));
        for gone in [&b"MY_API_KEY=s3cret"[..], b"FOO=visible", b"HOME=/root", b"ghp_0123456789"] {
            assert!(!contains(&image, gone), "{}", String::from_utf8_lossy(gone));
        }
    }

    #[test]
    fn keep_changes_nothing() {
        let mut image = image();
        let before = image.clone();
        let out = apply(&mut image, EnvironMode::Keep, &[]).expect("apply");
        assert!(out.found && out.redacted.is_empty());
        assert_eq!(image, before);
    }

    #[test]
    fn extra_patterns_add_names() {
        let mut image = image();
        let out = apply(&mut image, EnvironMode::Redact, &["FOO"]).expect("apply");
        assert!(out.redacted.contains(&"FOO".to_string()));
        assert!(!contains(&image, b"visible"));
    }
}
