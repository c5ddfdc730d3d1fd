//! Compressed cores (systemd-coredump stores them as `.zst` by default): told by their
//! magic number, decompressed to memory with ruzstd (pure Rust).

use std::io::Read;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const LZ4_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];
const XZ_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0];

/// Whether `bytes` start like a compressed file this module knows of.
pub fn is_compressed(bytes: &[u8]) -> bool {
    bytes.starts_with(&ZSTD_MAGIC) || bytes.starts_with(&LZ4_MAGIC) || bytes.starts_with(&XZ_MAGIC)
}

/// The decompressed bytes; what a truncated stream gave up to where it ends is kept (a cut
/// core is still read as far as it goes), an error only when nothing came out.
pub fn decompress(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if bytes.starts_with(&LZ4_MAGIC) || bytes.starts_with(&XZ_MAGIC) {
        let kind = if bytes.starts_with(&LZ4_MAGIC) { "lz4" } else { "xz" };
        return Err(format!("{kind}-compressed files are not read yet (`{kind} -d` it first)"));
    }
    let mut input = bytes;
    let mut out = Vec::new();
    // One frame after another (parallel compressors write several).
    while input.starts_with(&ZSTD_MAGIC) {
        let frame = ruzstd::decoding::StreamingDecoder::new(&mut input)
            .map_err(|e| e.to_string())
            .and_then(|mut decoder| decoder.read_to_end(&mut out).map_err(|e| e.to_string()));
        match frame {
            Ok(_) => {}
            Err(_) if !out.is_empty() => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(out)
}
