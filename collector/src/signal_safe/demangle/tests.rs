//! The demangler against independent truth: c++filt for C++ symbols (libstdc++'s exports
//! and a compiled corpus of C++ constructs), the rustc-demangle crate for Rust symbols (this
//! test binary's own, legacy and v0), hand-made v0 vectors, and random inputs.

use super::{demangle, Demangled};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIG: usize = 1 << 16;

fn ours(mangled: &str) -> Option<String> {
    let mut buf = vec![0u8; BIG];
    let d = demangle(mangled.as_bytes(), &mut buf)?;
    assert!(!d.truncated, "{mangled} truncated in a {BIG}-byte buffer");
    Some(String::from_utf8(buf[..d.len].to_vec()).expect("demangled names are UTF-8"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("tool output is UTF-8")
}

/// c++filt's reading of each name (the name itself when it does not demangle it).
fn cxxfilt(names: &[String]) -> Vec<String> {
    if names.is_empty() {
        return Vec::new();
    }
    let mut child = Command::new("c++filt")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("c++filt (binutils) is needed");
    let mut stdin = child.stdin.take().expect("piped");
    let input = names.join("\n") + "\n";
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("c++filt runs");
    writer.join().expect("writer thread").expect("c++filt reads its input");
    let text = String::from_utf8(out.stdout).expect("c++filt output is UTF-8");
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), names.len(), "c++filt answered every name");
    lines
}

/// The symbol names `nm` lists for `file` (version suffixes like `@@GLIBCXX_3.4` removed).
fn nm(args: &[&str], file: &Path) -> Vec<String> {
    let text = run(Command::new("nm").args(args).arg(file));
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Compares with c++filt on every `_Z` name; returns (accepted, total).
fn check_itanium(names: &[String]) -> (usize, usize) {
    let names: Vec<String> = names.iter().filter(|n| n.starts_with("_Z")).cloned().collect();
    let truth = cxxfilt(&names);
    let mut accepted = 0;
    let mut wrong = Vec::new();
    for (name, expected) in names.iter().zip(&truth) {
        if let Some(got) = ours(name) {
            accepted += 1;
            if &got != expected {
                wrong.push(format!("{name}\n  c++filt: {expected}\n  ours:    {got}"));
            }
        } else if std::env::var_os("DEMANGLE_SHOW_REJECTED").is_some() {
            println!("left mangled: {name}  (c++filt: {expected})");
        }
    }
    assert!(wrong.is_empty(), "{} names differ from c++filt:\n{}", wrong.len(), wrong.join("\n"));
    (accepted, names.len())
}

fn libstdcxx() -> PathBuf {
    let path = run(Command::new("g++").arg("-print-file-name=libstdc++.so.6"));
    PathBuf::from(path.trim())
}

#[test]
fn itanium_matches_cxxfilt_on_libstdcxx() {
    let names = nm(&["-D", "--defined-only"], &libstdcxx());
    let (accepted, total) = check_itanium(&names);
    let ratio = accepted as f64 / total as f64;
    println!("libstdc++: {accepted} of {total} C++ symbols demangled ({:.1}%)", ratio * 100.0);
    assert!(total > 3000, "libstdc++ exports C++ symbols");
    assert!(ratio >= 0.95, "only {accepted} of {total} demangled");
}

/// The symbols of C++ files using the constructs the demangler must get right, compiled
/// now without and with optimisation (which adds clones like `.constprop.0`, `.cold`).
fn corpus_names() -> Vec<String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::temp_dir().join(format!("crashcatch-demangle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut names = Vec::new();
    for source in ["tests/native/demangle_corpus.cpp", "tests/native/crashy.cpp"] {
        for opt in ["-O0", "-O2"] {
            let object = dir.join("corpus.o");
            run(Command::new("g++")
                .args(["-std=c++20", opt, "-c", "-fPIC"])
                .arg(repo.join(source))
                .arg("-o")
                .arg(&object));
            names.extend(nm(&[], &object));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    names.sort();
    names.dedup();
    names
}

#[test]
fn itanium_matches_cxxfilt_on_compiled_corpus() {
    let (accepted, total) = check_itanium(&corpus_names());
    println!("corpus: {accepted} of {total} C++ symbols demangled");
    assert!(total > 200, "the corpus has C++ symbols");
    assert!(accepted as f64 >= 0.95 * total as f64, "only {accepted} of {total} demangled");
}

/// rustc-demangle's `{:#}` form, the symbolizer's and this demangler's reference.
fn rustc_demangle(name: &str) -> Option<String> {
    rustc_demangle::try_demangle(name).ok().map(|d| format!("{d:#}"))
}

fn is_rust(name: &str) -> bool {
    name.starts_with("_R") || super::rust_legacy::is_legacy(name.as_bytes())
}

#[test]
fn rust_matches_rustc_demangle_on_this_binary() {
    let exe = std::env::current_exe().expect("test binary");
    let names: Vec<String> = nm(&[], &exe).into_iter().filter(|n| is_rust(n)).collect();
    let (mut legacy, mut v0, mut accepted) = (0, 0, 0);
    let mut wrong = Vec::new();
    for name in &names {
        *(if name.starts_with("_R") { &mut v0 } else { &mut legacy }) += 1;
        let expected = rustc_demangle(name).unwrap_or_else(|| panic!("rustc-demangle rejects {name}"));
        if let Some(got) = ours(name) {
            accepted += 1;
            if got != expected {
                wrong.push(format!("{name}\n  rustc-demangle: {expected}\n  ours:           {got}"));
            }
        }
    }
    println!("Rust: {accepted} of {} symbols demangled ({legacy} legacy, {v0} v0)", names.len());
    assert!(wrong.is_empty(), "{} names differ:\n{}", wrong.len(), wrong.join("\n"));
    assert!(legacy > 100 && v0 > 100, "both manglings present: {legacy} legacy, {v0} v0");
    assert!(accepted as f64 >= 0.99 * names.len() as f64, "only {accepted} of {} demangled", names.len());
}

/// v0 features rare in this binary, written from the grammar (RFC 2603).
#[test]
fn rust_v0_vectors_match_rustc_demangle() {
    let vectors = [
        "_RNvCs1234_7mycrate3foo",
        "_RNvNtCs1234_7mycrate3bar3foo",
        "_RNCNvCs1234_7mycrate3foo0B3_",
        "_RNCNvCs1234_7mycrate3foos_0B3_",
        "_RINvCs1234_7mycrate3fooNtB2_3BarE",
        "_RINvCs1234_7mycrate3fooRL_eE",
        "_RINvCs1234_7mycrate3fooAhj4_E",
        "_RINvCs1234_7mycrate3fooKj2a_E",
        "_RINvCs1234_7mycrate3fooKan5_E",
        "_RINvCs1234_7mycrate3fooKb1_E",
        "_RINvCs1234_7mycrate3fooKc41_E",
        "_RINvCs1234_7mycrate3fooKpE",
        "_RINvCs1234_7mycrate3fooTlmEE",
        "_RINvCs1234_7mycrate3fooTlEE",
        "_RINvCs1234_7mycrate3fooTEE",
        "_RINvCs1234_7mycrate3fooFmEuE",
        "_RINvCs1234_7mycrate3fooFUKCmEhE",
        "_RINvCs1234_7mycrate3fooFK5Rust_callmEzE",
        "_RINvCs1234_7mycrate3fooFG_RL0_hEuE",
        "_RINvCs1234_7mycrate3fooDNtB2_5TraitEL_E",
        "_RINvCs1234_7mycrate3fooDINtB2_5TraitmEp6OutputhEL_E",
        "_RINvCs1234_7mycrate3fooPhOhQhRhSmE",
        "_RNvMNtCs1234_7mycrate3fooNtB2_3Bar3new",
        "_RNvXNtCs1234_7mycrate3fooNtB2_3BarNtB4_5Trait3run",
        "_RNvYNtCs1234_7mycrate3BarNtB4_5Trait3run",
        "_RNvNSNvCs1234_7mycrate3foo4vtab0",
        "_RNvCs1234_7mycrate3foo.cold",
        "_RNvCs1234_7mycrate3foo.llvm.1234ABCD",
        "_RNvCs1234_7mycrate3fooCs5678_5other",
        "_RNvCs1234_7mycrate5_1abcd",
    ];
    for name in vectors {
        let expected = rustc_demangle(name);
        let got = ours(name);
        if let Some(got) = &got {
            assert_eq!(Some(got), expected.as_ref(), "{name}");
        }
        assert!(got.is_some(), "{name} not demangled; rustc-demangle: {expected:?}");
    }
    // Malformed: rejected by both.
    for name in ["_R", "_RNv", "_RB_", "_RNvCs1234_7mycrate3foo$x", "_RINvC3fooKc110000_E"] {
        assert_eq!(ours(name), None, "{name}");
    }
}

/// A legacy symbol of these path elements.
fn legacy(elements: &[&str], suffix: &str) -> String {
    let mut s = String::from("_ZN");
    for e in elements.iter().chain(&["h0123456789abcdef"]) {
        s += &format!("{}{e}", e.len());
    }
    s + "E" + suffix
}

#[test]
fn legacy_escapes_match_rustc_demangle() {
    let vectors = [
        legacy(&["core", "ptr", "drop_in_place"], ""),
        legacy(&["_$LT$alloc..vec..Vec$LT$T$GT$$u20$as$u20$core..ops..drop..Drop$GT$", "drop"], ""),
        legacy(&["foo", "_$u7b$$u7b$closure$u7d$$u7d$"], ""),
        legacy(&["foo", "a$SP$b$BP$"], ""),
        legacy(&["foo", "a$RF$$C$"], ""),
        legacy(&["foo", "a$LP$$RP$"], ""),
        legacy(&["foo", "a.b..c"], ""),
        legacy(&["foo", "a$u3b1$b"], ""),
        legacy(&["foo", "a$zz$b"], ""),
        legacy(&["foo", "a$u7f$b"], ""),
        legacy(&["foo", "a$u$b"], ""),
        legacy(&["foo"], ".cold.1"),
        legacy(&["foo"], ".llvm.1234ABCD"),
    ];
    for name in &vectors {
        let expected = rustc_demangle(name);
        assert!(expected.is_some(), "{name} is a Rust symbol");
        assert_eq!(ours(name), expected, "{name}");
    }
    assert_eq!(ours(&legacy(&["foo"], "$x")), None);
}

/// Names cut short, mutated or random never panic, never write past the buffer, and a
/// name cut to fit a small buffer is the beginning of the whole one.
#[test]
fn hostile_inputs_are_safe() {
    let mut seeds: Vec<String> = nm(&["-D", "--defined-only"], &libstdcxx())
        .into_iter()
        .filter(|n| n.starts_with("_Z"))
        .step_by(7)
        .collect();
    let exe = std::env::current_exe().expect("test binary");
    seeds.extend(nm(&[], &exe).into_iter().filter(|n| is_rust(n)).step_by(13));
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let alphabet = b"_0123456789ZNRIESTKVrOPLCDXJMABGFUYbcdhijlmnstuvxyzpqa$.";
    let mut buf = vec![0u8; 4096];
    let mut small = [0u8; 48];
    for seed in &seeds {
        let bytes = seed.as_bytes();
        for cut in 0..=bytes.len() {
            probe(&bytes[..cut], &mut buf, &mut small);
        }
        for _ in 0..20 {
            let mut m = bytes.to_vec();
            for _ in 0..1 + next() % 3 {
                let at = (next() as usize) % m.len().max(1);
                let c = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 if !m.is_empty() => m[at] = c,
                    1 => m.insert(at.min(m.len()), c),
                    _ if !m.is_empty() => {
                        m.remove(at);
                    }
                    _ => {}
                }
            }
            probe(&m, &mut buf, &mut small);
        }
    }
    for _ in 0..20_000 {
        let len = (next() % 64) as usize;
        let mut m = if next() % 2 == 0 { b"_Z".to_vec() } else { b"_R".to_vec() };
        m.extend((0..len).map(|_| alphabet[(next() as usize) % alphabet.len()]));
        probe(&m, &mut buf, &mut small);
    }
    // Deep nesting and exponential back-references end, without output.
    let deep = format!("_Z1f{}i", "P".repeat(5000));
    assert_eq!(demangle(deep.as_bytes(), &mut buf), None);
    let mut doubling = String::from("_Z1fIi");
    for i in 0..40 {
        doubling.push_str(&format!("IS{}_S{}_E", i, i));
    }
    probe(doubling.as_bytes(), &mut buf, &mut small);
}

fn probe(name: &[u8], buf: &mut [u8], small: &mut [u8]) {
    let full = demangle(name, buf);
    if let Some(Demangled { len, truncated }) = full {
        assert!(len <= buf.len());
        assert!(std::str::from_utf8(&buf[..len]).is_ok());
        if !truncated {
            let cut = demangle(name, small).expect("demangles in a small buffer too");
            assert!(cut.len <= small.len());
            assert_eq!(cut.truncated, len > small.len());
            assert_eq!(&small[..cut.len], &buf[..cut.len]);
        }
    }
}

#[test]
fn truncation_keeps_whole_characters() {
    // `$u3b1$` is a two-byte character; cut the buffer inside it.
    let name = legacy(&["foo", "a$u3b1$b"], "");
    let name = name.as_bytes();
    let mut buf = [0u8; 7]; // "foo::a" + the first byte of the character
    assert_eq!(demangle(name, &mut buf), Some(Demangled { len: 6, truncated: true }));
    assert_eq!(&buf[..6], b"foo::a");
}

/// Opt-in: every name of the file `$DEMANGLE_CORPUS` (one a line) against c++filt or
/// rustc-demangle, e.g. all of a system's symbols:
/// `find /usr/lib -name '*.so*' | xargs nm -D --defined-only | awk '{print $NF}' | sort -u`.
#[test]
#[ignore]
fn names_from_file() {
    let path = std::env::var("DEMANGLE_CORPUS").expect("DEMANGLE_CORPUS names a file");
    let text = std::fs::read_to_string(path).expect("readable");
    let names: Vec<String> = text.lines().map(|l| l.split('@').next().unwrap_or(l).to_owned()).collect();
    let (rust, cxx): (Vec<String>, Vec<String>) = names.into_iter().partition(|n| is_rust(n));
    for name in &rust {
        if let Some(got) = ours(name) {
            assert_eq!(Some(got), rustc_demangle(name), "{name}");
        }
    }
    let (accepted, total) = check_itanium(&cxx);
    println!("{accepted} of {total} C++ names demangled, {} Rust names checked", rust.len());
}

/// Names nested as deep as the parser and printer allow (and deeper): the work of the
/// deepest recursion the demangler can be made to do.
fn deepest_names() -> Vec<String> {
    let mut names = Vec::new();
    for n in [60, 120, 180, 190, 250] {
        names.push(format!("_Z1f{}i", "P".repeat(n)));
        names.push(format!("_Z1f{}i", "PFPK".repeat(n / 4)) + &"vE".repeat(n / 4));
        names.push(format!("_Z1fI{}i{}Ev", "1aI".repeat(n / 3), "E".repeat(n / 3)));
        names.push(format!("_Z1fI{}i{}EvT_", "N1aI".repeat(n / 3), "EE".repeat(n / 3)));
        names.push(format!("_ZZ{}1fvE1x{}", "Z".repeat(n / 4), "E1x".repeat(n / 4)));
        names.push(format!("_Z1fIJicEEvDp{}T_", "P".repeat(n)));
        names.push(format!("_Z1fIJicEEv{}DpPT_", "P".repeat(n)));
        names.push(format!("_RINvC1a1f{}hEE", "INtB2_1gRA".repeat(n / 4)) + &"Kj1_EE".repeat(n / 4));
        names.push(format!("_RNvC1a1f{}", "B_".repeat(n)));
    }
    names
}

/// The demangler runs inside the crash handler, on the report stack: its deepest case
/// must fit in a small fixed budget (cstack.rs adds its own frames and buffers above it).
#[test]
fn worst_case_stack_use_is_bounded() {
    const BUDGET: usize = if cfg!(debug_assertions) { 256 << 10 } else { 64 << 10 };
    let names = deepest_names();
    let done = std::thread::Builder::new()
        .stack_size(BUDGET)
        .spawn(move || {
            let mut buf = [0u8; 1024];
            names.iter().filter(|n| demangle(n.as_bytes(), &mut buf).is_some()).count()
        })
        .expect("thread")
        .join()
        .expect("no stack overflow");
    println!("{done} deep names demangled");
    assert!(done > 5, "some of the deep names demangle ({done})");
}
