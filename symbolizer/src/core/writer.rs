//! The ELF64 x86-64 ET_CORE file: header, program headers (PT_NOTE, then one PT_LOAD per
//! segment, by address), the notes, then the segments' bytes.

use super::layout::Segment;
use std::io::{self, Write};

const EHDR_SIZE: u64 = 64;
const PHDR_SIZE: u64 = 56;
const SHDR_SIZE: u64 = 64;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
/// e_phnum's escape: the real count is in section header 0's sh_info.
const PN_XNUM: u64 = 0xffff;
/// Segment data starts on a page, as the kernel's cores do.
const PAGE: u64 = 4096;

/// Writes the core to `out`; returns the number of bytes written.
pub fn write(out: &mut impl Write, notes: &[u8], segments: &[Segment]) -> io::Result<u64> {
    let phnum = 1 + segments.len() as u64;
    let extended = phnum >= PN_XNUM;
    let shnum = u64::from(extended);
    let phoff = EHDR_SIZE;
    let shoff = phoff + PHDR_SIZE * phnum;
    let notes_off = shoff + SHDR_SIZE * shnum;
    let data_off = (notes_off + notes.len() as u64).next_multiple_of(PAGE);

    let mut head = Vec::with_capacity(data_off as usize);
    head.extend_from_slice(b"\x7fELF");
    head.extend_from_slice(&[2, 1, 1, 0]); // ELFCLASS64, little-endian, EV_CURRENT, System V
    head.extend_from_slice(&[0; 8]);
    let h16 = |h: &mut Vec<u8>, v: u64| h.extend_from_slice(&(v as u16).to_le_bytes());
    let h32 = |h: &mut Vec<u8>, v: u64| h.extend_from_slice(&(v as u32).to_le_bytes());
    let h64 = |h: &mut Vec<u8>, v: u64| h.extend_from_slice(&v.to_le_bytes());
    h16(&mut head, 4); // ET_CORE
    h16(&mut head, 62); // EM_X86_64
    h32(&mut head, 1);
    h64(&mut head, 0); // e_entry
    h64(&mut head, phoff);
    h64(&mut head, if extended { shoff } else { 0 });
    h32(&mut head, 0); // e_flags
    h16(&mut head, EHDR_SIZE);
    h16(&mut head, PHDR_SIZE);
    h16(&mut head, phnum.min(PN_XNUM));
    h16(&mut head, if extended { SHDR_SIZE } else { 0 });
    h16(&mut head, shnum);
    h16(&mut head, 0); // e_shstrndx

    let phdr = |h: &mut Vec<u8>, kind: u32, flags: u32, offset: u64, vaddr: u64, size: u64, align: u64| {
        h32(h, kind.into());
        h32(h, flags.into());
        h64(h, offset);
        h64(h, vaddr);
        h64(h, 0); // p_paddr
        h64(h, size); // p_filesz
        h64(h, size); // p_memsz: all of it is in the file
        h64(h, align);
    };
    let notes_size = notes.len() as u64;
    phdr(&mut head, PT_NOTE, 0, notes_off, 0, notes_size, 4);
    let mut offset = data_off;
    for s in segments {
        let file_size = s.data.len() as u64;
        phdr(&mut head, PT_LOAD, s.flags, offset, s.addr, file_size, 1);
        offset += file_size;
    }
    if extended {
        // Section header 0: only sh_info (the program header count) is set.
        head.extend_from_slice(&[0; 44]);
        h32(&mut head, phnum);
        head.extend_from_slice(&[0; 16]);
    }
    head.extend_from_slice(notes);
    head.resize(data_off as usize, 0);
    out.write_all(&head)?;
    for s in segments {
        out.write_all(&s.data)?;
    }
    Ok(offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::layout::PF_R;
    use std::borrow::Cow;

    #[test]
    fn headers_point_at_the_notes_and_the_data() {
        let seg = Segment { addr: 0x1000, data: Cow::Borrowed(&[7; 10]), flags: PF_R };
        let mut out = Vec::new();
        let n = write(&mut out, &[1, 2, 3, 4], &[seg]).unwrap();
        assert_eq!(n as usize, out.len());
        let file = object::read::elf::ElfFile64::<object::Endianness>::parse(&out[..]).unwrap();
        use object::read::elf::ProgramHeader;
        use object::Object;
        let e = file.endian();
        let hdrs = file.elf_program_headers();
        assert_eq!(hdrs.len(), 2);
        assert_eq!(hdrs[0].p_type(e), object::elf::ProgramType(PT_NOTE));
        assert_eq!(hdrs[0].data(e, &out[..]).unwrap(), [1, 2, 3, 4]);
        assert_eq!((hdrs[1].p_vaddr(e), hdrs[1].data(e, &out[..]).unwrap()), (0x1000, &[7u8; 10][..]));
        assert_eq!(file.kind(), object::ObjectKind::Core);
    }
}
