//! Running one command, once, with a time limit, and describing what happened
//! well enough that a failure message alone explains it.
//! Hand-written on purpose: no runner crate both kills the whole process group at the limit and names host and command.

use anyhow::{bail, Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What one command did: who ran it, what it was, how it ended, what it printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub host: String,
    pub command: String,
    /// Exit code; `None` when killed by a signal (including our own timeout).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub timed_out: bool,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The output if the command succeeded, otherwise an error that names the host, the
    /// command, its exit status, the time it took and the tail of what it printed.
    pub fn check(self) -> Result<Output> {
        if self.success() {
            Ok(self)
        } else {
            Err(anyhow::anyhow!("{}", self.describe_failure()))
        }
    }

    /// How it ended: `exited 3`, `was killed at its time limit`, `was killed by a signal`.
    pub fn ending(&self) -> String {
        match (self.timed_out, self.code) {
            (true, _) => "was killed at its time limit".into(),
            (false, Some(c)) => format!("exited {c}"),
            (false, None) => "was killed by a signal".into(),
        }
    }

    pub fn describe_failure(&self) -> String {
        let how = format!("{} after {:.1?}", self.ending(), self.elapsed);
        format!(
            "on {}: `{}` {how}\n  stdout: {}\n  stderr: {}",
            self.host,
            self.command,
            tail(&self.stdout, 12),
            tail(&self.stderr, 12)
        )
    }
}

/// The last `lines` lines of `text`, indented, or "(empty)".
pub fn tail(text: &str, lines: usize) -> String {
    let text = text.trim_end();
    if text.is_empty() {
        return "(empty)".into();
    }
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut out = String::new();
    if start > 0 {
        out.push_str(&format!("[… {start} lines]\n    "));
    }
    out.push_str(&all[start..].join("\n    "));
    out
}

/// Quote an argv for display the way a shell user would type it.
pub fn display_argv<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| {
            let a = a.as_ref();
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
                a.to_string()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run `cmd` to completion within `limit`, feeding it `stdin`. The command runs in a process
/// group of its own so that a timeout kills everything it started, not just its first process.
pub fn run(host: &str, shown: &str, mut cmd: Command, stdin: Option<&[u8]>, limit: Duration) -> Result<Output> {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // A group of its own keeps it from the terminal's Ctrl-C: should the harness die first,
    // it goes too. (This thread waits for it, so the signal fires only if we die.)
    // SAFETY: the closure runs between fork and exec and makes one prctl syscall: no
    // allocation, no lock, nothing that is not async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("on {host}: could not start `{shown}`"))?;
    // The input is written inside the time limit, by a thread: a command that never reads it
    // must not block us.
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let (result, timed_out) = match rx.recv_timeout(limit) {
        Ok(r) => (r, false),
        Err(_) => {
            // The child is still unreaped (its waiter holds it), so this pid group is still ours.
            let _ = killpg(pid, Signal::SIGKILL);
            (rx.recv().context("the waiter thread vanished")?, true)
        }
    };
    let out = result.with_context(|| format!("on {host}: waiting for `{shown}`"))?;
    Ok(Output {
        host: host.to_string(),
        command: shown.to_string(),
        code: if timed_out { None } else { out.status.code() },
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
        timed_out,
    })
}

/// Append a command and what it did to a journal file: the lab's record of every command run
/// in its hosts, for reading after a failure. Long outputs are cut to their first lines.
pub fn journal(path: &std::path::Path, out: &Output) {
    let mut entry = format!("{} $ {}  → {} after {:.1?}\n", out.host, out.command, out.ending(), out.elapsed);
    for (name, text) in [("out", &out.stdout), ("err", &out.stderr)] {
        for line in text.lines().take(8) {
            entry += &format!("    {name}| {line}\n");
        }
        if text.lines().count() > 8 {
            entry += &format!("    {name}| [… {} more lines]\n", text.lines().count() - 8);
        }
    }
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(entry.as_bytes());
    }
}

/// Run a command on this machine (not in a lab host): the harness's own tools.
pub fn local(argv: &[&str], limit: Duration) -> Result<Output> {
    let Some((prog, args)) = argv.split_first() else { bail!("empty command") };
    let mut cmd = Command::new(prog);
    cmd.args(args);
    run("this machine", &display_argv(argv), cmd, None, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_kills_the_whole_group_and_says_so() {
        let started = Instant::now();
        let out = local(&["sh", "-c", "sleep 30 & sleep 30"], Duration::from_millis(300)).unwrap();
        assert!(out.timed_out && !out.success(), "{out:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "the group outlived the timeout");
        assert!(out.describe_failure().contains("killed at its time limit"), "{}", out.describe_failure());
    }

    #[test]
    fn a_failure_names_the_command_and_its_output() {
        let err = local(&["sh", "-c", "echo boom >&2; exit 3"], Duration::from_secs(5)).unwrap().check().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("exited 3") && msg.contains("boom") && msg.contains("sh -c"), "{msg}");
    }

    #[test]
    fn argv_is_shown_as_a_shell_user_would_type_it() {
        assert_eq!(display_argv(&["echo", "a b", "it's"]), r#"echo 'a b' 'it'\''s'"#);
    }
}
