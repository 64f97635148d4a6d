//! Progress lines while slow things happen. Written straight to the process's stderr, past
//! the test harness's output capture, so `cargo test` shows what it is waiting for.

use once_cell::sync::Lazy;
use std::io::Write;
use std::time::Instant;

static START: Lazy<Instant> = Lazy::new(Instant::now);

pub fn say(args: std::fmt::Arguments) {
    if crate::settings::on("MESH_QUIET") {
        return;
    }
    let line = format!("mesh [{:6.1}s] {args}\n", START.elapsed().as_secs_f64());
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// `say!("…", args)`: one progress line.
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => { $crate::progress::say(format_args!($($t)*)) };
}
