//! Compressed cores, as systemd-coredump stores them (`.zst` by default, `.lz4`, `.xz`):
//! told by their magic number, decompressed to memory with pure-Rust decoders (ruzstd,
//! lz4_flex's frame format, lzma-rust2's xz).

use std::io::Read;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const LZ4_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];
const XZ_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0];

/// Decompressed bytes at most per compressed byte, and at least this many in all.
const MAX_RATIO: u64 = 1024;
const MIN_LIMIT: u64 = 256 << 20;
/// The largest xz dictionary accepted, in KiB: `xz -9` uses 64 MiB; a forged header must
/// not make the decoder allocate gigabytes.
const XZ_MEMORY_LIMIT_KIB: u32 = 256 << 10;

/// Whether `bytes` start like a compressed file this module knows of.
pub fn is_compressed(bytes: &[u8]) -> bool {
    format_of(bytes).is_some()
}

#[derive(Clone, Copy)]
enum Format {
    Zstd,
    Lz4,
    Xz,
}

impl Format {
    /// The command that decompresses it, for messages.
    fn tool(self) -> &'static str {
        match self {
            Format::Zstd => "zstd",
            Format::Lz4 => "lz4",
            Format::Xz => "xz",
        }
    }
}

fn format_of(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(&ZSTD_MAGIC) {
        Some(Format::Zstd)
    } else if bytes.starts_with(&LZ4_MAGIC) {
        Some(Format::Lz4)
    } else if bytes.starts_with(&XZ_MAGIC) {
        Some(Format::Xz)
    } else {
        None
    }
}

/// What came out of a compressed file.
#[derive(Debug)]
pub struct Decompressed {
    pub bytes: Vec<u8>,
    /// Set when the stream is cut or damaged part-way: `bytes` is what came out before.
    pub cut: Option<String>,
}

/// The decompressed bytes; what a truncated or damaged stream gave up to where it breaks is
/// kept (a cut core is still read as far as it goes) and the break said in `cut`; an error
/// only when nothing came out, or when it decompresses to far more than a core would.
pub fn decompress(bytes: &[u8]) -> Result<Decompressed, String> {
    let Some(format) = format_of(bytes) else { return Err("not a zstd, lz4 or xz file".into()) };
    // A compressed bomb must not take the machine's memory: real cores shrink far less.
    let limit = (bytes.len() as u64).saturating_mul(MAX_RATIO).max(MIN_LIMIT);
    let mut out = Vec::new();
    let result = match format {
        Format::Zstd => zstd_frames(bytes, limit, &mut out),
        Format::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(bytes), limit, &mut out),
        Format::Xz => {
            let reader = lzma_rust2::XzReader::new_mem_limit(bytes, true, XZ_MEMORY_LIMIT_KIB);
            read_bounded(reader, limit, &mut out)
        }
    };
    if out.len() as u64 > limit {
        return Err(format!("it decompresses to more than {limit} bytes, {MAX_RATIO} times its size"));
    }
    let tool = format.tool();
    match result {
        Ok(()) if out.is_empty() => Err(format!("{tool}: nothing comes out of it (is it cut short?)")),
        Ok(()) => Ok(Decompressed { bytes: out, cut: None }),
        Err(e) if out.is_empty() => Err(format!("{tool}: {e}")),
        Err(e) => {
            let cut = format!(
                "the {tool}-compressed file is truncated or damaged after {} decompressed bytes ({e}); \
                 what came out before is shown (`{tool} -t FILE` tests it)",
                out.len()
            );
            Ok(Decompressed { bytes: out, cut: Some(cut) })
        }
    }
}

/// Reads `reader` to its end into `out`, one byte past `limit` at most.
fn read_bounded(reader: impl Read, limit: u64, out: &mut Vec<u8>) -> Result<(), String> {
    let room = limit.saturating_sub(out.len() as u64).saturating_add(1);
    reader.take(room).read_to_end(out).map(drop).map_err(|e| e.to_string())
}

/// One zstd frame after another (parallel compressors write several).
fn zstd_frames(bytes: &[u8], limit: u64, out: &mut Vec<u8>) -> Result<(), String> {
    let mut input = bytes;
    while input.starts_with(&ZSTD_MAGIC) && out.len() as u64 <= limit {
        let decoder = ruzstd::decoding::StreamingDecoder::new(&mut input).map_err(|e| e.to_string())?;
        read_bounded(decoder, limit, out)?;
    }
    Ok(())
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
        assert_eq!(decompress(&rle_frame(200)).unwrap().bytes, vec![0u8; 200]);
        let two = [rle_frame(10), rle_frame(20)].concat();
        assert_eq!(decompress(&two).unwrap().bytes.len(), 30);
        let cut = decompress(&[rle_frame(10), rle_frame(20)[..6].to_vec()].concat()).unwrap();
        assert_eq!(cut.bytes.len(), 10);
        assert!(cut.cut.unwrap().contains("zstd-compressed file is truncated"));
        assert!(decompress(&[0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff]).is_err());
        assert!(decompress(&LZ4_MAGIC).unwrap_err().starts_with("lz4: "));
        assert!(decompress(&XZ_MAGIC).unwrap_err().starts_with("xz: "));
    }
}
