//! The minidump's stream directory, in the in-memory image: reading it, changing an entry,
//! and adding a stream (its bytes and a new, longer directory go at the end of the image;
//! the header is pointed at them).

/// crashcatch's metadata stream ("CC" + 1): UTF-8 JSON, documented in docs/minidump.md.
pub const METADATA_STREAM: u32 = 0x4343_0001;

const HEADER_SIZE: usize = 32;
const DIRECTORY_ENTRY: usize = 12;

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

/// The directory: (stream type, data size, data offset) per entry; None if it is unreadable.
pub fn directory(image: &[u8]) -> Option<Vec<(u32, u32, u32)>> {
    if image.get(..4)? != b"MDMP" || image.len() < HEADER_SIZE {
        return None;
    }
    let (count, dir) = (u32_at(image, 8)? as usize, u32_at(image, 12)? as usize);
    (0..count)
        .map(|i| {
            let e = dir.checked_add(i.checked_mul(DIRECTORY_ENTRY)?)?;
            Some((u32_at(image, e)?, u32_at(image, e + 4)?, u32_at(image, e + 8)?))
        })
        .collect()
}

/// Overwrites directory entry `index` (which [`directory`] found).
pub fn set_entry(image: &mut [u8], index: usize, (stream, size, rva): (u32, u32, u32)) {
    let dir = u32_at(image, 12).unwrap_or(0) as usize;
    let e = dir + index * DIRECTORY_ENTRY;
    if let Some(slot) = image.get_mut(e..e + DIRECTORY_ENTRY) {
        slot[..4].copy_from_slice(&stream.to_le_bytes());
        slot[4..8].copy_from_slice(&size.to_le_bytes());
        slot[8..].copy_from_slice(&rva.to_le_bytes());
    }
}

pub fn append_stream(image: &mut Vec<u8>, stream_type: u32, data: &[u8]) -> Result<(), String> {
    let mut entries = directory(image).ok_or("the minidump's stream directory is unreadable")?;
    let too_big = || "the minidump would be larger than 4 GiB".to_string();
    image.resize(image.len().next_multiple_of(8), 0);
    let data_rva = u32::try_from(image.len()).map_err(|_| too_big())?;
    image.extend_from_slice(data);
    image.resize(image.len().next_multiple_of(8), 0);
    entries.push((stream_type, u32::try_from(data.len()).map_err(|_| too_big())?, data_rva));
    let dir_rva = u32::try_from(image.len()).map_err(|_| too_big())?;
    for (stream, size, rva) in &entries {
        image.extend_from_slice(&stream.to_le_bytes());
        image.extend_from_slice(&size.to_le_bytes());
        image.extend_from_slice(&rva.to_le_bytes());
    }
    image[8..12].copy_from_slice(&(entries.len() as u32).to_le_bytes());
    image[12..16].copy_from_slice(&dir_rva.to_le_bytes());
    if image.len() > u32::MAX as usize {
        return Err(too_big());
    }
    Ok(())
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A minimal minidump: header with zero streams, directory at 32.
    pub fn empty_minidump() -> Vec<u8> {
        let mut header = Vec::new();
        header.extend_from_slice(b"MDMP");
        header.extend_from_slice(&0xa793u32.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&32u32.to_le_bytes());
        header.extend_from_slice(&[0u8; 16]);
        header
    }

    #[test]
    fn appended_stream_is_found_in_the_directory() {
        let mut image = empty_minidump();
        append_stream(&mut image, 0x4343_0001, b"{\"a\":1}").expect("append");
        append_stream(&mut image, 7, b"xyz").expect("append");
        let dir = directory(&image).expect("directory");
        assert_eq!(dir.len(), 2);
        let (stream, size, rva) = dir[0];
        assert_eq!(stream, 0x4343_0001);
        assert_eq!(&image[rva as usize..(rva + size) as usize], b"{\"a\":1}");
        assert_eq!(&image[dir[1].2 as usize..][..3], b"xyz");
        set_entry(&mut image, 1, (0, 0, 0));
        assert_eq!(directory(&image).expect("directory")[1], (0, 0, 0));
    }

    #[test]
    fn not_a_minidump_has_no_directory() {
        assert!(directory(b"ELF").is_none());
        let mut image = empty_minidump();
        image[8..12].copy_from_slice(&1000u32.to_le_bytes());
        assert!(directory(&image).is_none());
    }
}
