//! An allocation-free x86-64 unwinder over the in-memory `.eh_frame` of loaded modules
//! (so code built without frame pointers unwinds), with frame-pointer and
//! "called a bad address" fallbacks where a module has no CFI.

use super::config::ProcessFacts;
use super::elf::{self, Module};
use super::memory::SelfMemory;
use core::sync::atomic::{AtomicU64, Ordering};
use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, EndianSlice, LittleEndian, Pointer, Register, RegisterRule,
    UnwindContext, UnwindContextStorage, UnwindSection, UnwindTableRow,
};
use pylayout::Memory;

/// Modules whose `.eh_frame_hdr` and `.eh_frame` pages were all found readable, by
/// `.eh_frame_hdr` address. The unwinder reads them in place (gimli needs slices): a module
/// file truncated under a running program (`cp`, `pip` over it) would fault on them, so each
/// is probed once through the fault-proof reader first. Concurrent unwinds (a report and a
/// `dump_c_stack()`) may overwrite each other's entries; a lost one is only probed again.
static CFI_READABLE: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];

/// Whether every page of `[start, end)` can be read (one byte per page, through `mem`).
fn pages_readable(mem: &SelfMemory, start: u64, end: u64) -> bool {
    let mut page = start & !0xfff;
    while page < end {
        if !mem.read(page.max(start), &mut [0u8; 1]) {
            return false;
        }
        page += 0x1000;
    }
    true
}

fn cfi_known_readable(hdr: u64) -> bool {
    CFI_READABLE.iter().any(|slot| slot.load(Ordering::Relaxed) == hdr)
}

fn remember_cfi_readable(hdr: u64) {
    if let Some(slot) = CFI_READABLE.iter().find(|slot| slot.load(Ordering::Relaxed) == 0) {
        slot.store(hdr, Ordering::Relaxed);
    }
}

/// DWARF register numbers on x86-64.
const RBP: usize = 6;
const RSP: usize = 7;
/// The return-address column (rip).
const RA: usize = 16;
const NREGS: usize = 17;

/// Register values by DWARF number; `None` when unknown.
#[derive(Clone, Copy, Debug, Default)]
pub struct Regs(pub [Option<u64>; NREGS]);

impl Regs {
    /// The registers of an interrupted thread, from the signal's `ucontext_t`.
    pub fn from_ucontext(uc: &libc::ucontext_t) -> Regs {
        let g = &uc.uc_mcontext.gregs;
        // DWARF order: rax rdx rcx rbx rsi rdi rbp rsp r8..r15 rip
        let order = [
            libc::REG_RAX,
            libc::REG_RDX,
            libc::REG_RCX,
            libc::REG_RBX,
            libc::REG_RSI,
            libc::REG_RDI,
            libc::REG_RBP,
            libc::REG_RSP,
            libc::REG_R8,
            libc::REG_R9,
            libc::REG_R10,
            libc::REG_R11,
            libc::REG_R12,
            libc::REG_R13,
            libc::REG_R14,
            libc::REG_R15,
            libc::REG_RIP,
        ];
        let mut r = Regs::default();
        for (slot, greg) in r.0.iter_mut().zip(order) {
            *slot = g.get(greg as usize).map(|&v| v as u64);
        }
        r
    }

    pub fn pc(&self) -> u64 {
        self.0[RA].unwrap_or(0)
    }
    pub fn sp(&self) -> u64 {
        self.0[RSP].unwrap_or(0)
    }
}

/// How a frame's address was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// From the signal context: the exact interrupted instruction.
    Context,
    /// Call frame information.
    Cfi,
    /// The saved-frame-pointer chain.
    FramePointer,
    /// Assumed a call into an address with no code: return address at the stack top.
    StackTop,
}

/// One native frame.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    pub pc: u64,
    pub trust: Trust,
    pub module: Option<Module>,
}

/// Why a walk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Still walking.
    NotYet,
    /// The outermost frame's CFI marks the return address undefined (`_start`, `clone3`):
    /// the stack is complete.
    ThreadStart,
    /// No way to find the caller of the last frame.
    Stuck,
}

/// Fixed-capacity rule storage for gimli, so unwinding never allocates.
struct Store;
impl<T: gimli::ReaderOffset> UnwindContextStorage<T> for Store {
    type Rules = [(Register, RegisterRule<T>); 32];
    type Stack = [UnwindTableRow<T, Self>; 4];
}

/// Walks the stack from `regs` outwards.
pub struct Unwinder<'a> {
    mem: &'a SelfMemory,
    facts: &'a ProcessFacts,
    regs: Regs,
    /// The next frame's pc is exact (first frame, or caller of a signal frame) rather than
    /// a return address, which points just after the call.
    exact: bool,
    trust: Trust,
    pub end: End,
    /// The module of the previous frame: deep recursion stays in one module, and looking it
    /// up again would walk the whole module list per frame.
    last_module: Option<Module>,
}

impl<'a> Unwinder<'a> {
    pub fn new(mem: &'a SelfMemory, facts: &'a ProcessFacts, regs: Regs) -> Self {
        Unwinder { mem, facts, regs, exact: true, trust: Trust::Context, end: End::NotYet, last_module: None }
    }

    fn step(&mut self, module: Option<&Module>, lookup_pc: u64) -> Option<(Regs, bool, Trust)> {
        if let Some(m) = module.filter(|m| m.eh_frame_hdr != 0) {
            if let Some((regs, signal)) = self.step_cfi(m, lookup_pc) {
                return Some((regs, signal, Trust::Cfi));
            }
        }
        let sp = self.regs.sp();
        let mut next = self.regs;
        if module.is_none() && self.trust == Trust::Context {
            // Jumped to a non-code address (a NULL or wild function pointer): the caller's
            // return address is on top of the stack.
            next.0[RA] = Some(self.mem.read_u64(sp)?);
            next.0[RSP] = Some(sp + 8);
            return Some((next, false, Trust::StackTop));
        }
        let fp = self.regs.0[RBP]?;
        if fp <= sp || fp - sp > (64 << 20) {
            return None;
        }
        next.0[RA] = Some(self.mem.read_u64(fp + 8)?);
        next.0[RBP] = Some(self.mem.read_u64(fp)?);
        next.0[RSP] = Some(fp + 16);
        Some((next, false, Trust::FramePointer))
    }

    fn step_cfi(&self, m: &Module, lookup_pc: u64) -> Option<(Regs, bool)> {
        let checked = cfi_known_readable(m.eh_frame_hdr);
        if !checked && !pages_readable(self.mem, m.eh_frame_hdr, m.eh_frame_hdr + m.eh_frame_hdr_len) {
            return None;
        }
        // SAFETY: PT_GNU_EH_FRAME and the PT_LOAD segment holding it are mapped, read-only
        // parts of a module the dynamic linker reports as loaded, and were found readable.
        let hdr =
            unsafe { core::slice::from_raw_parts(m.eh_frame_hdr as *const u8, m.eh_frame_hdr_len as usize) };
        let bases = BaseAddresses::default().set_eh_frame_hdr(m.eh_frame_hdr);
        let parsed = EhFrameHdr::new(hdr, LittleEndian).parse(&bases, 8).ok()?;
        let Pointer::Direct(eh_frame_addr) = parsed.eh_frame_ptr() else {
            return None;
        };
        if eh_frame_addr < m.start || eh_frame_addr >= m.eh_segment_end {
            return None;
        }
        if !checked {
            if !pages_readable(self.mem, eh_frame_addr, m.eh_segment_end) {
                return None;
            }
            remember_cfi_readable(m.eh_frame_hdr);
        }
        // SAFETY: as above; `.eh_frame` lies in the same segment, which ends at eh_segment_end.
        let eh = unsafe {
            core::slice::from_raw_parts(
                eh_frame_addr as *const u8,
                (m.eh_segment_end - eh_frame_addr) as usize,
            )
        };
        let eh_frame = EhFrame::new(eh, LittleEndian);
        let bases = bases.set_eh_frame(eh_frame_addr).set_text(m.start);
        let table = parsed.table()?;
        let fde = table.fde_for_address(&eh_frame, &bases, lookup_pc, EhFrame::cie_from_offset).ok()?;
        let mut ctx = UnwindContext::<usize, Store>::new_in();
        let row = fde.unwind_info_for_address(&eh_frame, &bases, &mut ctx, lookup_pc).ok()?;
        let cfa = match row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } => {
                self.reg(register.0 as usize)?.checked_add_signed(*offset)?
            }
            CfaRule::Expression(e) => self.eval_simple(&eh_frame, e)?,
        };
        let mut next = self.regs;
        next.0[RSP] = Some(cfa);
        // Caller-saved registers are unknown in the caller unless CFI says otherwise.
        for (i, slot) in next.0.iter_mut().enumerate() {
            if matches!(i, 0 | 1 | 2 | 4 | 5 | 8..=11) {
                *slot = None;
            }
        }
        next.0[RA] = None;
        let mut ra_undefined = false;
        for (reg, rule) in row.registers() {
            let idx = reg.0 as usize;
            if idx >= NREGS {
                continue;
            }
            let value = match rule {
                RegisterRule::Undefined => {
                    if idx == RA {
                        ra_undefined = true;
                    }
                    None
                }
                RegisterRule::SameValue => self.regs.0[idx],
                RegisterRule::Offset(o) => self.mem.read_u64(cfa.checked_add_signed(*o)?),
                RegisterRule::ValOffset(o) => cfa.checked_add_signed(*o),
                RegisterRule::Register(r) => self.reg(r.0 as usize),
                RegisterRule::Expression(e) => self.mem.read_u64(self.eval_simple(&eh_frame, e)?),
                RegisterRule::ValExpression(e) => self.eval_simple(&eh_frame, e),
                _ => None,
            };
            next.0[idx] = value;
        }
        if ra_undefined {
            // The outermost frame (_start, clone): the thread's start.
            next.0[RA] = Some(0);
        } else if next.0[RA].is_none() {
            // Default return-address rule on x86-64: just below the CFA.
            next.0[RA] = self.mem.read_u64(cfa - 8);
        }
        Some((next, fde.is_signal_trampoline()))
    }

    fn reg(&self, i: usize) -> Option<u64> {
        self.regs.0.get(i).copied().flatten()
    }

    /// Evaluates `DW_OP_bregN offset`, optionally followed by `DW_OP_deref`: what most
    /// register-save expressions use, and glibc's signal trampoline `__restore_rt` for its
    /// CFA (the interrupted rsp, saved in the ucontext on the stack). Anything else is not
    /// supported.
    fn eval_simple(
        &self,
        eh: &EhFrame<EndianSlice<LittleEndian>>,
        e: &gimli::UnwindExpression<usize>,
    ) -> Option<u64> {
        const DW_OP_DEREF: u8 = 0x06;
        let expr = e.get(eh).ok()?;
        let bytes = expr.0.slice();
        let (&op, rest) = bytes.split_first()?;
        if !(0x70..=0x8f).contains(&op) {
            return None;
        }
        let (offset, used) = sleb128(rest)?;
        let value = self.reg((op - 0x70) as usize)?.checked_add_signed(offset)?;
        match &rest[used..] {
            [] => Some(value),
            [DW_OP_DEREF] => self.mem.read_u64(value),
            _ => None,
        }
    }
}

fn sleb128(b: &[u8]) -> Option<(i64, usize)> {
    let (mut result, mut shift) = (0i64, 0u32);
    for (i, &byte) in b.iter().enumerate().take(10) {
        result |= ((byte & 0x7f) as i64) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            if shift < 64 && byte & 0x40 != 0 {
                result |= -1i64 << shift;
            }
            return Some((result, i + 1));
        }
    }
    None
}

impl Iterator for Unwinder<'_> {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        if self.end != End::NotYet {
            return None;
        }
        let pc = self.regs.pc();
        if pc == 0 {
            self.end = End::ThreadStart;
            return None;
        }
        // A return address points after the call; look up the call instruction itself.
        let lookup_pc = if self.exact { pc } else { pc - 1 };
        let module = match self.last_module {
            Some(m) if lookup_pc >= m.start && lookup_pc < m.end => Some(m),
            _ => elf::module_for(self.mem, self.facts, lookup_pc),
        };
        self.last_module = module;
        let frame = Frame { pc, trust: self.trust, module };
        match self.step(module.as_ref(), lookup_pc) {
            Some((next, signal, trust))
                if next.sp() > self.regs.sp() || signal || self.trust == Trust::Context =>
            {
                self.regs = next;
                self.exact = signal;
                self.trust = trust;
            }
            Some((next, _, _)) if next.pc() == 0 => self.end = End::ThreadStart,
            _ => self.end = End::Stuck,
        }
        Some(frame)
    }
}

impl Regs {
    /// The caller-visible registers at this point of the calling function, for dumping
    /// the current thread's own stack.
    #[inline(always)]
    pub fn here() -> Regs {
        let (rip, rsp, rbp): (u64, u64, u64);
        // SAFETY: reads rip, rsp and rbp into registers; no memory or flags are touched.
        unsafe {
            core::arch::asm!(
                "lea {0}, [rip]", "mov {1}, rsp", "mov {2}, rbp",
                out(reg) rip, out(reg) rsp, out(reg) rbp,
                options(nomem, nostack, preserves_flags),
            );
        }
        let mut r = Regs::default();
        r.0[RA] = Some(rip);
        r.0[RSP] = Some(rsp);
        r.0[RBP] = Some(rbp);
        r
    }
}
