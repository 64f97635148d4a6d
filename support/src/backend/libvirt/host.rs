//! A host of a VM lab, reached over SSH from the lab's router namespace: the run's own key,
//! the host's key pinned from the seed it booted with, every command under a time limit. Its
//! services are transient systemd units (`mesh-<service>.service`), their logs in the journal.

use super::LibvirtRecord;
use crate::backend::{netns, Host};
use crate::exec::{self, Output};
use crate::{budget, say};
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use ssh2::Session;
use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `timeout`'s exit status when it had to stop the command.
const TIMED_OUT: i32 = 124;

pub struct VmHost {
    name: String,
    addr: SocketAddr,
    router: String,
    key: PathBuf,
    known_hosts: PathBuf,
    /// The host key this host must present (its raw blob).
    host_key: Vec<u8>,
    dir: PathBuf,
    journal: PathBuf,
    /// Idle SSH sessions: one a concurrent command, reused, since each handshake costs a VM
    /// under TCG a noticeable fraction of a second.
    sessions: Mutex<Vec<Session>>,
}

impl VmHost {
    pub fn new(record: &LibvirtRecord, name: &str) -> Result<VmHost> {
        let d = record.domains.get(name).ok_or_else(|| anyhow!("no host {name} in this lab"))?;
        let dir = d.console_log.parent().expect("a host has a folder").to_path_buf();
        let public =
            std::fs::read_to_string(dir.join("ssh_host_ed25519_key.pub")).with_context(|| format!("{name}'s pinned host key"))?;
        let blob = public.split_whitespace().nth(1).ok_or_else(|| anyhow!("{name}'s host key file is malformed"))?;
        let host_key = base64::engine::general_purpose::STANDARD.decode(blob)?;
        let lab_dir = dir.parent().and_then(Path::parent).expect("hosts live in the lab's folder");
        Ok(VmHost {
            name: name.to_string(),
            addr: SocketAddr::V4(SocketAddrV4::new(d.addr, 22)),
            router: record.router.clone(),
            key: record.ssh_key.clone(),
            known_hosts: record.known_hosts.clone(),
            host_key,
            journal: lab_dir.join("commands.log"),
            dir,
            sessions: Mutex::new(Vec::new()),
        })
    }

    /// A new session: TCP from the router namespace, handshake, the host key checked against
    /// the pinned one (a mismatch is refused, never trusted on first use), our key.
    fn connect(&self, limit: Duration) -> Result<Session> {
        let tcp = netns::connect_from(&self.router, self.addr, limit)?;
        let mut session = Session::new()?;
        session.set_timeout(limit.as_millis() as u32);
        session.set_tcp_stream(tcp);
        session.handshake().context("SSH handshake")?;
        let (presented, _) = session.host_key().ok_or_else(|| anyhow!("no host key presented"))?;
        if presented != self.host_key.as_slice() {
            bail!("{} presented a host key that is not the one pinned for this run: refusing to talk to it", self.name);
        }
        session.userauth_pubkey_file("root", None, &self.key, None).context("SSH authentication with the run's key")?;
        Ok(session)
    }

    /// One attempt to log in: what the boot wait polls.
    pub fn probe(&self) -> Result<()> {
        let session = self.connect(budget::command())?;
        self.sessions.lock().unwrap().push(session);
        Ok(())
    }

    fn session(&self) -> Result<Session> {
        if let Some(s) = self.sessions.lock().unwrap().pop() {
            return Ok(s);
        }
        self.connect(budget::command()).with_context(|| format!("connecting to {} over SSH", self.name))
    }

    /// Run a shell command line; the exit status, stdout, stderr. `limit` bounds it on both
    /// sides: `timeout` in the guest, the session's timeout here.
    fn run_line(&self, line: &str, stdin: Option<&[u8]>, limit: Duration) -> Result<(Option<i32>, String, String, bool)> {
        let session = self.session()?;
        // The guest's own limit first, ours a little later, so the guest's usually speaks.
        session.set_timeout((limit + Duration::from_secs(5)).as_millis() as u32);
        let outcome = (|| -> Result<(Option<i32>, String, String)> {
            let mut channel = session.channel_session()?;
            channel.exec(&format!("timeout --kill-after=2 {:.1} {line}", limit.as_secs_f64()))?;
            if let Some(input) = stdin {
                channel.write_all(input)?;
            }
            channel.send_eof()?;
            let (mut out, mut err) = (String::new(), String::new());
            channel.read_to_string(&mut out)?;
            channel.stderr().read_to_string(&mut err)?;
            channel.wait_close()?;
            Ok((Some(channel.exit_status()?), out, err))
        })();
        match outcome {
            Ok((code, out, err)) => {
                self.sessions.lock().unwrap().push(session);
                Ok((code, out, err, code == Some(TIMED_OUT)))
            }
            // A session that timed out or broke is not reused.
            Err(e) if e.downcast_ref::<ssh2::Error>().is_some_and(|s| s.code() == ssh2::ErrorCode::Session(-9)) => {
                Ok((None, String::new(), String::new(), true))
            }
            Err(e) => Err(e.context(format!("on {}: `{line}` over SSH", self.name))),
        }
    }

    fn unit(service: &str) -> String {
        format!("mesh-{service}.service")
    }

    /// Where a service's output goes inside the guest: a file, as on the netns backend, so a
    /// program that opens /dev/stdout (nginx's access log) can.
    fn guest_log(service: &str) -> String {
        format!("/var/log/mesh/{service}.log")
    }

    /// Bring the local copy of a service's log up to date: its output, then what systemd said
    /// about it (started, exited with what status).
    fn fetch_log(&self, service: &str) -> String {
        let line =
            format!("cat {} 2>/dev/null; journalctl --no-pager -o cat -u {}", Self::guest_log(service), Self::unit(service));
        let text = self.run_line(&line, None, budget::command()).map(|(_, out, _, _)| out).unwrap_or_default();
        let _ = std::fs::write(self.log_path(service), &text);
        text
    }
}

impl Host for VmHost {
    fn name(&self) -> &str {
        &self.name
    }

    fn exec(&self, argv: &[&str], stdin: Option<&[u8]>, limit: Duration) -> Result<Output> {
        let started = Instant::now();
        let command = exec::display_argv(argv);
        let (code, stdout, stderr, timed_out) = self.run_line(&command, stdin, limit)?;
        let out = Output { host: self.name.clone(), command, code, stdout, stderr, elapsed: started.elapsed(), timed_out };
        exec::journal(&self.journal, &out);
        Ok(out)
    }

    fn start_service(&self, service: &str, argv: &[String], env: &[(String, String)]) -> Result<()> {
        if self.service_running(service) {
            bail!("on {}: {service} is already running", self.name);
        }
        let unit = Self::unit(service);
        // A failed unit of the same name from before would block the new one.
        let _ = self.run_line(&format!("systemctl reset-failed {unit}"), None, budget::command());
        let stop = format!("--property=TimeoutStopSec={}", budget::stop().as_secs().max(1));
        let log = Self::guest_log(service);
        self.exec(&["mkdir", "-p", "/var/log/mesh"], None, budget::command())?.check()?;
        let (stdout, stderr) =
            (format!("--property=StandardOutput=append:{log}"), format!("--property=StandardError=append:{log}"));
        let mut run = vec!["systemd-run", "--quiet", "--collect", "--unit", &unit, &stop, &stdout, &stderr];
        let settings: Vec<String> = env.iter().map(|(k, v)| format!("--setenv={k}={v}")).collect();
        run.extend(settings.iter().map(String::as_str));
        run.push("--");
        run.extend(argv.iter().map(String::as_str));
        let out = self.exec(&run, None, budget::command())?;
        out.check().with_context(|| format!("on {}: starting {service}", self.name))?;
        say!("{}: started {service} as {unit}, log {}", self.name, self.log_path(service).display());
        Ok(())
    }

    fn stop_service(&self, service: &str) -> Result<()> {
        let unit = Self::unit(service);
        if self.service_running(service) {
            self.exec(&["systemctl", "stop", &unit], None, budget::stop() + budget::command())?
                .check()
                .with_context(|| format!("on {}: stopping {service}", self.name))?;
        }
        self.fetch_log(service);
        Ok(())
    }

    fn kill_service(&self, service: &str) -> Result<()> {
        let unit = Self::unit(service);
        self.exec(&["systemctl", "kill", "--signal=KILL", &unit], None, budget::command())?
            .check()
            .with_context(|| format!("on {}: SIGKILL to {service}", self.name))?;
        crate::poll::until(&format!("{service} on {} gone after SIGKILL", self.name), budget::stop(), || {
            if self.service_running(service) {
                bail!("{unit} is still active");
            }
            Ok(())
        })
    }

    fn reload_service(&self, service: &str) -> Result<()> {
        let unit = Self::unit(service);
        self.exec(&["systemctl", "kill", "--signal=HUP", &unit], None, budget::command())?
            .check()
            .with_context(|| format!("on {}: SIGHUP to {service}", self.name))?;
        Ok(())
    }

    fn service_running(&self, service: &str) -> bool {
        let line = format!("systemctl is-active --quiet {}", Self::unit(service));
        matches!(self.run_line(&line, None, budget::command()), Ok((Some(0), ..)))
    }

    /// From inside the guest: a TCP connection only it can make (its routes, its firewall).
    fn tcp_connect(&self, addr: SocketAddr, limit: Duration) -> Result<()> {
        let seconds = limit.as_secs().max(1).to_string();
        let out = self.exec(&["nc", "-z", "-w", &seconds, &addr.ip().to_string(), &addr.port().to_string()], None, limit)?;
        out.check().with_context(|| format!("from {}: TCP connect to {addr}", self.name))?;
        Ok(())
    }

    fn log_path(&self, service: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{service}.log"))
    }

    fn service_log(&self, service: &str) -> String {
        self.fetch_log(service)
    }

    fn system_log(&self) -> Option<String> {
        let line = "journalctl --no-pager -b -o short-monotonic";
        Some(match self.run_line(line, None, budget::command()) {
            Ok((_, out, err, _)) => out + &err,
            Err(e) => format!("{e:#}"),
        })
    }

    fn state_dir(&self) -> String {
        "/var/lib/mesh".into()
    }

    /// On the VM's own disk, which goes with the VM.
    fn data_dir(&self) -> String {
        "/var/lib/mesh-data".into()
    }

    fn shell_argv(&self, _path_prefix: &str) -> Vec<String> {
        vec![
            "nsenter".into(),
            format!("--net=/run/netns/{}", self.router),
            "--".into(),
            "ssh".into(),
            "-i".into(),
            self.key.display().to_string(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            format!("root@{}", self.addr.ip()),
        ]
    }

    fn services_peak_rss_kib(&self) -> u64 {
        let line = "cat /sys/fs/cgroup/system.slice/mesh-*.service/memory.peak 2>/dev/null";
        let Ok((_, out, _, _)) = self.run_line(line, None, budget::command()) else { return 0 };
        out.lines().filter_map(|l| l.trim().parse::<u64>().ok()).sum::<u64>() / 1024
    }
}
