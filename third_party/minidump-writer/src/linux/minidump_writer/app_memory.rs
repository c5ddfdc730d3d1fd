use super::*;
use crate::app_memory::AppMemory;

impl MinidumpWriter {
    /// Write application-provided memory regions.
    pub fn write_app_memory(&mut self, buffer: &mut DumpBuf) -> Result<(), CopyFromProcessError> {
        // crashcatch patch: copied in batches, a few system calls for thousands of ranges
        // (the threads are stopped meanwhile), straight into the dump's buffer (no copy of
        // each range of its own first); a range a batch could not copy is copied alone,
        // with the same result (and error) as before.
        let ranges = std::mem::take(&mut self.app_memory);
        let mut next = 0;
        while next < ranges.len() {
            let chunk = &ranges[next..ranges.len().min(next + BATCH)];
            let start = buffer.position();
            let whole = read_into(self.process_id, chunk, buffer);
            let mut at = start;
            for range in &chunk[..whole] {
                self.memory_blocks.push(MDMemoryDescriptor {
                    start_of_memory_range: range.ptr as u64,
                    memory: MDLocationDescriptor { data_size: range.length as u32, rva: at as u32 },
                });
                at += range.length as u64;
            }
            next += whole;
            buffer.truncate(at);
            if let Some(range) = chunk.get(whole) {
                let copy = Self::copy_from_process(&self.process_inspector, range.ptr, range.length);
                let data_copy = match copy {
                    Ok(copy) => copy,
                    Err(e) => {
                        self.app_memory = ranges;
                        return Err(e);
                    }
                };
                let section = MemoryArrayWriter::write_bytes(buffer, &data_copy);
                self.memory_blocks.push(MDMemoryDescriptor {
                    start_of_memory_range: range.ptr as u64,
                    memory: section.location(),
                });
                next += 1;
            }
        }
        self.app_memory = ranges;
        Ok(())
    }
}

/// Ranges per `process_vm_readv` call (the kernel's `UIO_MAXIOV`).
const BATCH: usize = 1024;

/// Reads `ranges` (at most `BATCH`) in one `process_vm_readv` call into the end of `buffer`,
/// one after the other (crashcatch patch); how many of them, from the first, were read
/// whole (an unreadable page stops a call there; an empty range stops the count too). The
/// bytes of the others are left in the buffer for the caller to drop.
fn read_into(pid: Pid, ranges: &[AppMemory], buffer: &mut DumpBuf) -> usize {
    let total: usize = ranges.iter().map(|r| r.length).sum();
    let bytes = buffer.extend_zeroed(total);
    let mut local = Vec::with_capacity(ranges.len());
    let mut rest = &mut bytes[..];
    for range in ranges {
        let (this, after) = rest.split_at_mut(range.length);
        local.push(libc::iovec { iov_base: this.as_mut_ptr().cast(), iov_len: this.len() });
        rest = after;
    }
    let remote: Vec<libc::iovec> = ranges
        .iter()
        .map(|r| libc::iovec { iov_base: r.ptr as *mut libc::c_void, iov_len: r.length })
        .collect();
    // SAFETY: `local` describes disjoint parts of the buffer's new tail, as long as `remote`
    // says, alive until the call returns; the kernel checks the remote ranges.
    let n = unsafe {
        libc::process_vm_readv(
            pid,
            local.as_ptr(),
            local.len() as libc::c_ulong,
            remote.as_ptr(),
            remote.len() as libc::c_ulong,
            0,
        )
    };
    let mut left = n.max(0) as usize;
    let mut whole = 0;
    for range in ranges {
        if left < range.length || range.length == 0 {
            break;
        }
        left -= range.length;
        whole += 1;
    }
    whole
}
