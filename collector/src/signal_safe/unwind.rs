//! An allocation-free x86-64 unwinder over the in-memory `.eh_frame` of loaded modules
//! (so code built without frame pointers unwinds), with frame-pointer and
//! "called a bad address" fallbacks where a module has no CFI. Every step is checked
//! (the caller is executable code, its stack pointer further up this thread's stack); the
//! walk stops, saying why, rather than take a step that fails.

use super::config::ProcessFacts;
use super::elf::{self, Module};
use super::maps;
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
    pub fn fp(&self) -> Option<u64> {
        self.0[RBP]
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
    /// Nothing trustworthy gives the caller of the last frame.
    Stuck(Stop),
}

/// Why a walk stopped early. Every step is checked: the caller's address must be executable
/// code and its stack pointer must move up this thread's stack; a step that fails is not
/// taken, so no frame is ever made up from data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// No call frame information covers the last frame and its frame pointer does not point
    /// up the stack.
    NoUnwindInfo,
    /// The caller's address found for the last frame is not in executable code.
    NotCode(u64),
    /// The caller's stack pointer found for the last frame does not lie further up this
    /// thread's stack.
    OffStack(u64),
}

/// Frame pointers farther than this above the stack pointer are not believed when the
/// stack's bounds are unknown (no /proc/self/maps).
const UNKNOWN_STACK_SPAN: u64 = 64 << 20;

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
    /// [lowest, highest) address of the stack being walked; `None` when unknown.
    stack: Option<(u64, u64)>,
    /// The last executable mapping outside every module found (JIT code), for the same reason.
    last_code: (u64, u64),
}

impl<'a> Unwinder<'a> {
    pub fn new(mem: &'a SelfMemory, facts: &'a ProcessFacts, regs: Regs) -> Self {
        Unwinder {
            mem,
            facts,
            regs,
            exact: true,
            trust: Trust::Context,
            end: End::NotYet,
            last_module: None,
            stack: maps::stack_bounds(regs.sp()),
            last_code: (0, 0),
        }
    }

    /// The registers of the frame the next call to `next` returns.
    pub fn regs(&self) -> &Regs {
        &self.regs
    }

    /// The module holding `addr`.
    fn module_at(&mut self, addr: u64) -> Option<Module> {
        match self.last_module {
            Some(m) if addr >= m.start && addr < m.end => Some(m),
            _ => {
                let found = elf::module_for(self.mem, self.facts, addr);
                if found.is_some() {
                    self.last_module = found;
                }
                found
            }
        }
    }

    /// Whether `addr` is executable code: a module's executable segment, or an executable
    /// mapping outside every module (JIT code).
    fn is_code(&mut self, module: Option<&Module>, addr: u64) -> bool {
        if let Some(m) = module {
            return m.has_code_at(addr);
        }
        if addr >= self.last_code.0 && addr < self.last_code.1 {
            return true;
        }
        match maps::executable_mapping(addr) {
            Some(range) => {
                self.last_code = range;
                true
            }
            None => false,
        }
    }

    /// The caller's registers, whether the last frame is a signal frame, and how they were
    /// found. `pc_is_code`: the frame's pc is executable code (always true for callers).
    fn step(
        &mut self,
        module: Option<&Module>,
        lookup_pc: u64,
        pc_is_code: bool,
    ) -> Result<(Regs, bool, Trust), Stop> {
        if let Some(m) = module.filter(|m| m.eh_frame_hdr != 0) {
            if let Some((regs, signal)) = self.step_cfi(m, lookup_pc) {
                return Ok((regs, signal, Trust::Cfi));
            }
        }
        let sp = self.regs.sp();
        let mut next = self.regs;
        if self.trust == Trust::Context && !pc_is_code {
            // Jumped to an address with no code (a NULL or wild function pointer): the
            // caller's return address is on top of the stack.
            next.0[RA] = Some(self.mem.read_u64(sp).ok_or(Stop::NoUnwindInfo)?);
            next.0[RSP] = Some(sp.checked_add(8).ok_or(Stop::NoUnwindInfo)?);
            return Ok((next, false, Trust::StackTop));
        }
        // No CFI (JIT code, hand-written assembly): a frame pointer, if it points up this
        // thread's stack to a saved frame pointer and return address.
        let fp = self.regs.0[RBP].ok_or(Stop::NoUnwindInfo)?;
        let Some(end) = fp.checked_add(16).filter(|_| fp >= sp && fp % 8 == 0) else {
            return Err(Stop::NoUnwindInfo);
        };
        let fits = match self.stack {
            Some((_, hi)) => end <= hi,
            None => fp - sp <= UNKNOWN_STACK_SPAN,
        };
        if !fits {
            return Err(Stop::NoUnwindInfo);
        }
        next.0[RA] = Some(self.mem.read_u64(fp + 8).ok_or(Stop::NoUnwindInfo)?);
        next.0[RBP] = Some(self.mem.read_u64(fp).ok_or(Stop::NoUnwindInfo)?);
        next.0[RSP] = Some(end);
        Ok((next, false, Trust::FramePointer))
    }

    /// Checks a step before it is taken: the caller's stack pointer moves up this thread's
    /// stack (a signal frame may switch stacks), and its pc is executable code.
    fn check(&mut self, next: &Regs, signal: bool) -> Result<(), Stop> {
        let sp = next.sp();
        if signal {
            if self.stack.is_some_and(|(lo, hi)| sp < lo || sp >= hi) {
                self.stack = maps::stack_bounds(sp);
            }
        } else {
            let within = self.stack.is_none_or(|(_, hi)| sp <= hi);
            if sp <= self.regs.sp() || !within {
                return Err(Stop::OffStack(sp));
            }
        }
        let pc = next.pc();
        let lookup = if signal { pc } else { pc.wrapping_sub(1) };
        let module = self.module_at(lookup);
        if !self.is_code(module.as_ref(), lookup) {
            return Err(Stop::NotCode(pc));
        }
        Ok(())
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
        let module = self.module_at(lookup_pc);
        let frame = Frame { pc, trust: self.trust, module };
        // Callers were checked to be code when their step was taken.
        let pc_is_code = self.trust != Trust::Context || self.is_code(module.as_ref(), lookup_pc);
        match self.step(module.as_ref(), lookup_pc, pc_is_code) {
            // The outermost frame: CFI says the return address is undefined (or zero).
            Ok((next, _, Trust::Cfi)) if next.pc() == 0 => self.end = End::ThreadStart,
            Ok((next, signal, trust)) => match self.check(&next, signal) {
                Ok(()) => {
                    self.regs = next;
                    self.exact = signal;
                    self.trust = trust;
                }
                Err(stop) => self.end = End::Stuck(stop),
            },
            Err(stop) => self.end = End::Stuck(stop),
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
