//! A Rust library for the crash-report tests: `crashy_rs_crash()` reads an unmapped
//! address inside a closure, called through `&dyn Fn` from a generic method, called from a
//! closure that std's `Once` runs. So the C stack holds Rust closures, generics and std's
//! own (precompiled, v0-mangled) functions. Built by the tests with rustc's default
//! mangling (legacy) and with `-C symbol-mangling-version=v0`.

pub struct Holder<T>(pub T);

impl<T: Copy + Into<u64>> Holder<T> {
    #[inline(never)]
    pub fn poke(&self, read: &dyn Fn(u64) -> u64) -> u64 {
        read(self.0.into())
    }
}

/// Reads the u64 at `address` (aligned and non-null, so debug builds do not stop it).
#[no_mangle]
pub extern "C" fn crashy_rs_crash(address: u32) -> u64 {
    let holder = Holder(address);
    let mut result = 0;
    let once = std::sync::Once::new();
    once.call_once(|| {
        result = holder.poke(&|a| unsafe { core::ptr::read_volatile(a as usize as *const u64) });
    });
    result
}
