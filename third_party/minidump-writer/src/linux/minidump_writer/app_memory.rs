use super::*;
use crate::app_memory::AppMemory;

impl MinidumpWriter {
    /// Write application-provided memory regions.
    pub fn write_app_memory(&mut self, buffer: &mut DumpBuf) -> Result<(), CopyFromProcessError> {
        // crashcatch patch: copied in batches, a few system calls for thousands of ranges
        // (the threads are stopped meanwhile); a range a batch could not copy is copied alone,
        // with the same result (and error) as before.
        let mut batched = read_batched(self.process_id, &self.app_memory).into_iter();
        for app_memory in &self.app_memory {
            let data_copy = match batched.next().flatten() {
                Some(copy) => copy,
                None => Self::copy_from_process(
                    &self.process_inspector,
                    app_memory.ptr,
                    app_memory.length,
                )?,
            };

            let section = MemoryArrayWriter::write_bytes(buffer, &data_copy);
            let desc = MDMemoryDescriptor {
                start_of_memory_range: app_memory.ptr as u64,
                memory: section.location(),
            };
            self.memory_blocks.push(desc);
        }
        Ok(())
    }
}

/// Ranges per `process_vm_readv` call (the kernel's `UIO_MAXIOV`).
const BATCH: usize = 1024;

/// Each range's bytes, read `BATCH` ranges per `process_vm_readv` call (crashcatch patch);
/// None for a range a call did not read whole (an unreadable page stops a call there).
fn read_batched(pid: Pid, ranges: &[AppMemory]) -> Vec<Option<Vec<u8>>> {
    let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(ranges.len());
    while out.len() < ranges.len() {
        let first = out.len();
        let chunk = &ranges[first..ranges.len().min(first + BATCH)];
        let mut copies: Vec<Vec<u8>> = chunk.iter().map(|r| vec![0u8; r.length]).collect();
        let local: Vec<libc::iovec> = copies
            .iter_mut()
            .map(|c| libc::iovec { iov_base: c.as_mut_ptr().cast(), iov_len: c.len() })
            .collect();
        let remote: Vec<libc::iovec> = chunk
            .iter()
            .map(|r| libc::iovec { iov_base: r.ptr as *mut libc::c_void, iov_len: r.length })
            .collect();
        // SAFETY: `local` describes buffers we own, as long as `remote` says; the kernel
        // checks the remote ranges.
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
        for copy in &copies {
            if left < copy.len() || copy.is_empty() {
                break;
            }
            left -= copy.len();
            whole += 1;
        }
        let read = whole.max(1).min(copies.len());
        for (i, copy) in copies.into_iter().take(read).enumerate() {
            out.push((i < whole).then_some(copy));
        }
    }
    out
}
