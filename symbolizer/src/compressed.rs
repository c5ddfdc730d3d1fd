//! Compressed cores (systemd-coredump stores them as `.zst` by default): told by their
//! magic number, decompressed to memory with ruzstd (pure Rust).

use std::io::Read;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const LZ4_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];
const XZ_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0];

/// Decompressed bytes at most per compressed byte, and at least this many in all.
const MAX_RATIO: u64 = 1024;
const MIN_LIMIT: u64 = 256 << 20;

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
    // A compressed bomb must not take the machine's memory: real cores shrink far less.
    let limit = (bytes.len() as u64).saturating_mul(MAX_RATIO).max(MIN_LIMIT);
    let mut input = bytes;
    let mut out = Vec::new();
    // One frame after another (parallel compressors write several).
    while input.starts_with(&ZSTD_MAGIC) {
        let frame = ruzstd::decoding::StreamingDecoder::new(&mut input).map_err(|e| e.to_string()).and_then(
            |decoder| {
                let room = limit.saturating_sub(out.len() as u64).saturating_add(1);
                decoder.take(room).read_to_end(&mut out).map_err(|e| e.to_string())
            },
        );
        if out.len() as u64 > limit {
            return Err(format!("it decompresses to more than {limit} bytes, {MAX_RATIO} times its size"));
        }
        match frame {
            Ok(_) => {}
            Err(_) if !out.is_empty() => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zstd frame of `n` zero bytes (n < 256) in one RLE block.
    fn rle_frame(n: u32) -> Vec<u8> {
        let mut f = ZSTD_MAGIC.to_vec();
        f.push(0x20); // single segment: a 1-byte content size follows, no window descriptor
        f.push(n.min(255) as u8);
        // Last block, RLE, size n.
        let header = 1 | (1 << 1) | (n << 3);
        f.extend_from_slice(&header.to_le_bytes()[..3]);
        f.push(0);
        f
    }

    #[test]
    fn frames_decompress_and_bad_ones_fail() {
        assert_eq!(decompress(&rle_frame(200)).unwrap(), vec![0u8; 200]);
        let two = [rle_frame(10), rle_frame(20)].concat();
        assert_eq!(decompress(&two).unwrap().len(), 30);
        assert!(decompress(&[0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff]).is_err());
        assert!(decompress(&LZ4_MAGIC).unwrap_err().contains("lz4"));
    }
}
