//! Any bytes given to `Crash::from_bytes` (minidump parsing, crashcatch's metadata stream,
//! Python stacks decoded from the dump's memory, module files loaded at the paths the dump
//! records, native unwinding and symbolization), then, when the dump loads, both renderers;
//! and to `crashcatch core`'s converter (`Core::from_dump`, the core written to a sink).
//! Nothing may panic, hang or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use symbolizer::render::{json, text, Style};
use symbolizer::terminal::json_text;
use symbolizer::core::Core;
use symbolizer::Crash;

fuzz_target!(|data: &[u8]| {
    // A symbols directory that does not exist: the `--symbols-path` fallback is tried for
    // every module whose recorded file is missing or has another build id.
    let symbol_dirs = [PathBuf::from("/nonexistent/crashcatch-fuzz-symbols")];
    if let Ok(crash) = Crash::from_bytes(Path::new("fuzz.dmp"), data, &symbol_dirs) {
        // Plain with the interpreter's glue hidden, coloured with every frame.
        black_box(text(&crash, &Style::new(false), false));
        black_box(text(&crash, &Style::new(true), true));
        black_box(json_text(&json(&crash)));
    }
    if let Ok(core) = Core::from_dump(data) {
        black_box(core.write(&mut std::io::sink()).ok());
    }
});
