//! Progress lines while slow things happen. Written straight to the process's stderr, past
//! the test harness's output capture, so `cargo test` shows what it is waiting for.
//!
//! On a terminal, a slow step under way ([`Phase`]: a Go build, an image build, VMs booting)
//! also has a live line below the progress lines, redrawn every second with its elapsed time,
//! so the terminal never goes quiet; elsewhere (CI's logs, a pipe) there are only the lines.

use once_cell::sync::Lazy;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static START: Lazy<Instant> = Lazy::new(Instant::now);

/// The slow steps under way, by id: what each is and when it began. Its lock is also held
/// while a line is written, so that a line and the live line never interleave.
static LIVE: Lazy<Mutex<Live>> = Lazy::new(|| Mutex::new(Live::default()));

#[derive(Default)]
struct Live {
    next_id: u64,
    phases: Vec<(u64, String, Instant)>,
    /// The live line is on the terminal now (and must be cleared before a line is written).
    drawn: bool,
    ticking: bool,
}

/// How often the live line is redrawn.
const TICK: Duration = Duration::from_secs(1);
/// Erase the terminal's current line and go back to its start.
const CLEAR: &str = "\r\x1b[K";

fn quiet() -> bool {
    crate::settings::on("MESH_QUIET")
}

/// A live line is shown: stderr is a terminal.
fn live_lines() -> bool {
    static TTY: Lazy<bool> = Lazy::new(|| std::io::stderr().is_terminal());
    *TTY && !quiet()
}

pub fn say(args: std::fmt::Arguments) {
    if quiet() {
        return;
    }
    let line = format!("mesh [{:6.1}s] {args}\n", START.elapsed().as_secs_f64());
    let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
    let mut err = std::io::stderr().lock();
    if live.drawn {
        let _ = err.write_all(CLEAR.as_bytes());
    }
    let _ = err.write_all(line.as_bytes());
    live.drawn = false;
    draw(&mut live, &mut err);
}

/// `say!("…", args)`: one progress line.
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => { $crate::progress::say(format_args!($($t)*)) };
}

/// A slow step under way: on a terminal, part of the live line until the value is dropped.
/// Its start and end are the caller's own progress lines, as before.
pub struct Phase {
    id: Option<u64>,
}

impl Phase {
    pub fn start(what: impl Into<String>) -> Phase {
        if !live_lines() {
            return Phase { id: None };
        }
        let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        live.next_id += 1;
        let id = live.next_id;
        live.phases.push((id, what.into(), Instant::now()));
        if !live.ticking {
            live.ticking = true;
            std::thread::spawn(tick);
        }
        let mut err = std::io::stderr().lock();
        draw(&mut live, &mut err);
        Phase { id: Some(id) }
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        let Some(id) = self.id else { return };
        let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        live.phases.retain(|(i, ..)| *i != id);
        let mut err = std::io::stderr().lock();
        draw(&mut live, &mut err);
    }
}

/// Redraw the live line every second while any phase is under way; end when none is.
fn tick() {
    loop {
        std::thread::sleep(TICK);
        let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        if live.phases.is_empty() {
            live.ticking = false;
            return;
        }
        let mut err = std::io::stderr().lock();
        draw(&mut live, &mut err);
    }
}

/// The live line as the phases stand, or nothing (the line cleared) when none is under way.
fn draw(live: &mut Live, err: &mut impl Write) {
    if live.drawn {
        let _ = err.write_all(CLEAR.as_bytes());
        live.drawn = false;
    }
    if live.phases.is_empty() {
        let _ = err.flush();
        return;
    }
    let now = Instant::now();
    let phases: Vec<(&str, Duration)> = live.phases.iter().map(|(_, what, at)| (what.as_str(), now - *at)).collect();
    let _ = err.write_all(render(START.elapsed(), &phases).as_bytes());
    let _ = err.flush();
    live.drawn = true;
}

/// `mesh [  12.3s] … building headscale 0.29.3 (1m 04s) · Debian image (12s)`: one line, no
/// newline, cut to a terminal's width so that it stays one line.
fn render(since_start: Duration, phases: &[(&str, Duration)]) -> String {
    const WIDTH: usize = 120;
    let parts: Vec<String> = phases.iter().map(|(what, took)| format!("{what} ({})", elapsed(*took))).collect();
    let line = format!("mesh [{:6.1}s] … {}", since_start.as_secs_f64(), parts.join(" · "));
    match line.char_indices().nth(WIDTH - 1) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

/// `7s`, `1m 04s`.
fn elapsed(took: Duration) -> String {
    let s = took.as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m {:02}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_line_names_every_phase_with_its_time_on_one_line() {
        let line = render(
            Duration::from_millis(12_300),
            &[("building headscale 0.29.3", Duration::from_secs(64)), ("the Debian image", Duration::from_secs(7))],
        );
        assert_eq!(line, "mesh [  12.3s] … building headscale 0.29.3 (1m 04s) · the Debian image (7s)");
        let long = render(Duration::ZERO, &[(&"x".repeat(300), Duration::ZERO)]);
        assert_eq!(long.chars().count(), 120);
        assert!(!long.contains('\n') && long.ends_with('…'));
    }

    #[test]
    fn a_line_clears_the_live_line_and_draws_it_again_below() {
        let mut live = Live { phases: vec![(1, "booting VMs".into(), Instant::now())], ..Live::default() };
        let mut out = Vec::new();
        draw(&mut live, &mut out);
        assert!(live.drawn && String::from_utf8_lossy(&out).contains("booting VMs (0s)"));
        live.phases.clear();
        let mut out = Vec::new();
        draw(&mut live, &mut out);
        assert_eq!(String::from_utf8_lossy(&out), CLEAR, "with nothing under way the line is cleared");
        assert!(!live.drawn);
    }
}
