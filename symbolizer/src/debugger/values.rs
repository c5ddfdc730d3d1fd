//! Python values of a frame (py-locals, py-print), through pylayout's object decoder.
//!
//! A thin seam: `pylayout::objects` / `pylayout::locals` (docs: the issue 10 spec) are
//! being written on another branch; until they are merged, these say so. At the merge the
//! bodies become calls to `locals::frame_locals`, `locals::frame_global` and
//! `objects::decode` (with `ObjectTypes` filled from `ObjectTypes::SYMBOLS` through
//! `Gdb::symbol`), and each value is shown with its `Display`.

use super::protocol::Gdb;
use super::target::Target;
use pylayout::Memory;

const NOT_YET: &str = "reading Python values is not yet available in this build of crashcatch \
                       (py-bt, py-list, py-up, py-down, cc-bt and cc-threads work)";

/// `(name, value text)` of each local variable of the Python frame at `frame`.
pub fn locals(
    _gdb: &Gdb,
    _mem: &dyn Memory,
    _target: &Target,
    _frame: u64,
) -> Result<Vec<(String, String)>, String> {
    Err(NOT_YET.to_string())
}

/// The value of `name` in the frame at `frame`: a local, else a global, else a builtin;
/// with where it was found ("local", "global", "builtin").
pub fn lookup(
    _gdb: &Gdb,
    _mem: &dyn Memory,
    _target: &Target,
    _frame: u64,
    _name: &str,
) -> Result<(&'static str, String), String> {
    Err(NOT_YET.to_string())
}
