//! Adding a stream to a minidump that has been written: the new stream's bytes and a new,
//! longer stream directory go at the end of the file; the header is pointed at them.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// crashcatch's metadata stream ("CC" + 1): UTF-8 JSON, documented in docs/minidump.md.
pub const METADATA_STREAM: u32 = 0x4343_0001;

const HEADER_SIZE: usize = 32;
const DIRECTORY_ENTRY: usize = 12;

pub fn append_stream(file: &mut File, stream_type: u32, data: &[u8]) -> io::Result<()> {
    let mut header = [0u8; HEADER_SIZE];
    file.seek(SeekFrom::Start(0))?;
    file.read_exact(&mut header)?;
    if &header[..4] != b"MDMP" {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a minidump"));
    }
    let count = u32::from_le_bytes(header[8..12].try_into().unwrap_or_default()) as usize;
    let dir_rva = u32::from_le_bytes(header[12..16].try_into().unwrap_or_default()) as u64;
    let mut directory = vec![0u8; count * DIRECTORY_ENTRY];
    file.seek(SeekFrom::Start(dir_rva))?;
    file.read_exact(&mut directory)?;

    let too_big = || io::Error::new(io::ErrorKind::InvalidData, "minidump larger than 4 GiB");
    let data_rva = align8(file.seek(SeekFrom::End(0))?);
    let new_dir_rva = align8(data_rva + data.len() as u64);
    file.seek(SeekFrom::Start(data_rva))?;
    file.write_all(data)?;
    directory.extend_from_slice(&stream_type.to_le_bytes());
    directory.extend_from_slice(&u32::try_from(data.len()).map_err(|_| too_big())?.to_le_bytes());
    directory.extend_from_slice(&u32::try_from(data_rva).map_err(|_| too_big())?.to_le_bytes());
    file.seek(SeekFrom::Start(new_dir_rva))?;
    file.write_all(&directory)?;
    file.seek(SeekFrom::Start(8))?;
    file.write_all(&u32::try_from(count + 1).map_err(|_| too_big())?.to_le_bytes())?;
    file.write_all(&u32::try_from(new_dir_rva).map_err(|_| too_big())?.to_le_bytes())?;
    file.flush()
}

fn align8(v: u64) -> u64 {
    (v + 7) & !7
}
