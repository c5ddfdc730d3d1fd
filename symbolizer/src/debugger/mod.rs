//! `crashcatch-symbolize debugger-helper`: the Rust half of crashcatch's gdb commands
//! (gdb-scripts/crashcatch_gdb.py). gdb's embedded Python is often another version than
//! the target's (and may be older than any crashcatch supports), so it runs no decoder of
//! its own: it starts this helper once per session and answers its questions for memory and
//! symbols over a pipe (`protocol`). The helper decodes with the same code as
//! `crashcatch symbolize` (pylayout, `python`, `native`, `merge`).

mod dumpfile;
pub(crate) mod modules;
mod ops;
mod protocol;
mod remote;
pub(crate) mod target;
mod unwound;
pub(crate) mod values;

use protocol::Gdb;
use serde_json::json;
use std::io::{BufReader, Write};

/// Serves gdb on stdin/stdout until it closes the pipe.
pub fn serve() {
    let gdb = Gdb::new(Box::new(BufReader::new(std::io::stdin())), Box::new(std::io::stdout()));
    let mut session = ops::Session::default();
    while let Some(line) = gdb.request() {
        gdb.questions.set(0);
        let reply = match serde_json::from_str::<ops::Request>(&line) {
            Ok(req) => ops::handle(&gdb, &mut session, &req),
            Err(e) => {
                Err(format!("bad request from the debugger script ({e}): is it from the same crashcatch?"))
            }
        };
        if gdb.is_broken() {
            break;
        }
        let questions = gdb.questions.get();
        gdb.reply(&match reply {
            Ok(ok) => json!({"ok": ok, "questions": questions}),
            Err(error) => json!({"error": error, "questions": questions}),
        });
    }
    let _ = std::io::stdout().flush();
}
