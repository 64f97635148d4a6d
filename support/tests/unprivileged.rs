//! The netns backend as a normal user: the lab is built inside a user namespace, every process
//! of it runs as that user, nothing of it appears among the machine's namespaces, and once it
//! is removed nothing is left.
//!
//! Run as a normal user, the test is that user. Run as root, it makes a user of its own for the
//! purpose (`meshlab-<hex>`, removed afterwards) and drives the real `mesh up --foreground` as
//! that user. Where a normal user cannot have a lab here (user namespaces disabled, a
//! /dev/net/tun closed to users, no `useradd`), it says SKIPPED and why, where the user sees it,
//! and passes; with `MESH_REQUIRE_PREREQUISITES=1` (CI, which provides them) it fails instead.

mod common;

use common::Snapshot;
use meshlab::lab::{Lab, LabOptions};
use meshlab::process::{self, ProcessId};
use meshlab::tools::{self, Tools};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const UP_BUDGET: Duration = Duration::from_secs(180);

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A prerequisite this machine lacks: said where the user sees it (libtest captures a passing
/// test's own output, and would show "ok" alone), or a failure where the run promised the
/// prerequisites (`MESH_REQUIRE_PREREQUISITES=1`, as CI sets it).
fn skip(reason: &str) {
    if meshlab::settings::on(meshlab::settings::REQUIRE_PREREQUISITES) {
        panic!("{}=1, and a normal user's lab cannot run here: {reason}", meshlab::settings::REQUIRE_PREREQUISITES);
    }
    meshlab::say!("SKIPPED (a normal user's lab cannot run here): {reason}");
}

/// Errors that mean "a normal user cannot have a lab on this machine", not a failure.
fn unavailable(message: &str) -> bool {
    message.contains("puts the lab in a user namespace, but") || message.contains("/dev/net/tun")
}

#[test]
fn a_normal_user_builds_a_lab_in_a_user_namespace_and_leaves_nothing() {
    if is_root() {
        // headscale on SQLite, then on the lab's PostgreSQL, whose server must run as the
        // `postgres` user of a user namespace nested in the lab's.
        as_a_user_of_its_own("sqlite");
        as_a_user_of_its_own("postgres");
    } else {
        as_this_user();
    }
}

/// Not root: this process builds the lab itself.
fn as_this_user() {
    let lab = match Lab::build(LabOptions::from_env().unwrap()) {
        Ok(lab) => lab,
        Err(e) if unavailable(&format!("{e:#}")) => return skip(&format!("{e:#}")),
        Err(e) => panic!("a lab builds as a normal user: {e:#}"),
    };
    let snapshot = Snapshot::take(&lab.record.run_id, &lab.record.dir);
    let me = nix::unistd::geteuid().as_raw();
    let services = running_services(&lab.record.dir);
    assert!(services.len() >= 4, "headscale and three tailscaled run: {services:?}");
    for id in &services {
        assert_eq!(process::uid_of(id.pid), Some(me), "service {} runs as this user", id.pid);
        assert_ne!(user_ns(id.pid), user_ns(std::process::id()), "service {} runs in a user namespace of its own", id.pid);
    }
    assert!(machine_namespaces(&lab.record.run_id).is_empty(), "the lab names nothing in the machine's /run/netns");
    lab.teardown().expect("teardown succeeds");
    assert_eq!(snapshot.leftovers(), Vec::<String>::new());
}

/// Root: a user made for this test runs `mesh up --foreground` with headscale on `database`;
/// SIGINT removes the lab.
fn as_a_user_of_its_own(database: &str) {
    let tools = Tools::resolve().expect("the pinned tools");
    let mesh = PathBuf::from(env!("CARGO_BIN_EXE_mesh"));
    for path in [&tools.headscale, &tools.tailscale, &tools.tailscaled, &mesh] {
        if let Some(closed) = closed_to_others(path) {
            return skip(&format!("{} cannot be run by another user ({} is closed to others)", path.display(), closed.display()));
        }
    }
    let Some(user) = TestUser::create() else { return skip("no `useradd` here to make a normal user with") };
    // setpriv runs `mesh` itself as the user (no process in between to catch signals).
    let mut cmd = user.command();
    cmd.args(["env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/"])
        .arg(format!("MESH_STATE_DIR={}", user.state.display()))
        .arg(format!("MESH_DATABASE={database}"));
    for (program, path) in [("headscale", &tools.headscale), ("tailscale", &tools.tailscale), ("tailscaled", &tools.tailscaled)] {
        cmd.arg(format!("{}={}", tools::env_var(program), path.display()));
    }
    cmd.arg(&mesh).args(["up", "--foreground"]).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("setpriv runs");
    let (tx, rx) = mpsc::channel();
    for pipe in [Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>, Box::new(child.stderr.take().unwrap())]
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let (mut run_id, mut dir, mut seen): (Option<String>, Option<PathBuf>, Vec<String>) = (None, None, Vec::new());
    let deadline = Instant::now() + UP_BUDGET;
    loop {
        let line = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => continue,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let all = seen.join("\n");
                if let Some(error) = seen.iter().find(|l| l.starts_with("mesh: error:")).filter(|l| unavailable(l)) {
                    return skip(&format!("as user {}: {error}", user.name));
                }
                panic!("`mesh up --foreground` as user {} never came up; it printed:\n{all}", user.name);
            }
        };
        if let Some(rest) = line.split("building lab ").nth(1) {
            run_id = rest.split_whitespace().next().map(str::to_string);
            dir = line.rsplit("its files: ").next().map(PathBuf::from);
        }
        let up = line.contains("is up while this command runs");
        seen.push(line);
        if up {
            break;
        }
    }
    let (run_id, dir) = (run_id.expect("the run id was printed"), dir.expect("the lab folder was printed"));
    let snapshot = Snapshot::take(&run_id, &dir);
    assert!(!snapshot.leftovers().is_empty(), "the lab is there while mesh runs");
    let services = running_services(&dir);
    let expected = if database == "postgres" { 5 } else { 4 };
    assert!(services.len() >= expected, "headscale, its {database} and three tailscaled: {services:?}\n{}", seen.join("\n"));
    for id in &services {
        assert_eq!(process::uid_of(id.pid), Some(user.uid), "service {} runs as {}, not root", id.pid, user.name);
        assert_ne!(user_ns(id.pid), user_ns(std::process::id()), "service {} runs in a user namespace", id.pid);
    }
    assert!(machine_namespaces(&run_id).is_empty(), "the lab names nothing in the machine's /run/netns");

    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "mesh removes its lab and exits 130 on SIGINT");
    assert_eq!(snapshot.await_gone(Duration::from_secs(10)), Vec::<String>::new(), "lab {run_id} left pieces");
    let data = dir.join("hosts/headscale/data");
    assert!(!data.exists(), "the lab's data ({}) outlived it", data.display());
    // Its watchdog sweeps once more after the exit, then ends: then nothing of the user runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    let theirs = loop {
        let theirs = user.processes();
        if theirs.is_empty() || Instant::now() > deadline {
            break theirs;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let shown: Vec<String> = theirs.iter().map(|p| format!("{} {:?}", p.pid, process::cmdline_of(p.pid))).collect();
    assert!(shown.is_empty(), "processes of {} are left: {shown:?}", user.name);
}

/// The services a lab has recorded that are running.
fn running_services(dir: &Path) -> Vec<ProcessId> {
    let files = std::fs::read_dir(dir.join("hosts")).into_iter().flatten().flatten().flat_map(|h| {
        std::fs::read_dir(h.path().join("services")).into_iter().flatten().flatten().map(|e| e.path()).collect::<Vec<_>>()
    });
    files.filter_map(|f| serde_json::from_slice::<ProcessId>(&std::fs::read(f).ok()?).ok()).filter(ProcessId::alive).collect()
}

fn user_ns(pid: u32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/user")).ok().map(|m| m.ino())
}

/// Namespaces of the run in the machine's own /run/netns (root's labs are named there).
fn machine_namespaces(run_id: &str) -> Vec<String> {
    let prefix = format!("mesh-{run_id}-");
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// The first of `path` and its folders that another user may not read or enter.
fn closed_to_others(path: &Path) -> Option<PathBuf> {
    let file = std::fs::metadata(path).ok()?;
    if file.mode() & 0o005 != 0o005 {
        return Some(path.to_path_buf());
    }
    path.ancestors().skip(1).find(|d| std::fs::metadata(d).map(|m| m.mode() & 0o001 == 0).unwrap_or(true)).map(Path::to_path_buf)
}

/// A normal user made for this test, with a folder for its labs; removed on drop, with
/// anything of its left (through its own `mesh down --all`, then by its uid).
struct TestUser {
    name: String,
    uid: u32,
    state: PathBuf,
}

impl TestUser {
    fn create() -> Option<TestUser> {
        let mut bytes = [0u8; 3];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").ok()?, &mut bytes).ok()?;
        let name = format!("meshlab-{:02x}{:02x}{:02x}", bytes[0], bytes[1], bytes[2]);
        let made = Command::new("useradd")
            .args(["--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", &name])
            .status()
            .ok()?;
        if !made.success() {
            return None;
        }
        let uid = String::from_utf8_lossy(&Command::new("id").args(["-u", &name]).output().ok()?.stdout).trim().parse().ok()?;
        let state = std::env::temp_dir().join(format!("{name}-labs"));
        let user = TestUser { name, uid, state };
        std::fs::create_dir(&user.state).ok()?;
        std::fs::set_permissions(&user.state, std::fs::Permissions::from_mode(0o700)).ok()?;
        std::os::unix::fs::chown(&user.state, Some(uid), Some(uid)).ok()?;
        Some(user)
    }
}

impl TestUser {
    /// A command run as this user (`setpriv` then execs it: same process).
    fn command(&self) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args([&format!("--reuid={}", self.uid), &format!("--regid={}", self.uid), "--clear-groups", "--"]);
        cmd
    }

    /// Its live processes (its uid is new: every one of them is this test's).
    fn processes(&self) -> Vec<ProcessId> {
        process::all_pids()
            .into_iter()
            .filter(|p| process::uid_of(*p) == Some(self.uid))
            .filter_map(ProcessId::of)
            .filter(ProcessId::alive)
            .collect()
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = self
            .command()
            .args(["env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin"])
            .arg(format!("MESH_STATE_DIR={}", self.state.display()))
            .args([env!("CARGO_BIN_EXE_mesh"), "down", "--all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // A failed test may leave processes of this user (only this test's user: its uid is new).
        for id in self.processes() {
            let _ = kill(Pid::from_raw(id.pid as i32), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(200));
        let _ = std::fs::remove_dir_all(&self.state);
        let _ = std::fs::remove_dir_all(format!("/tmp/mesh-lab-{}", self.uid));
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}
