//! A host of a netns lab: commands and services entered into its namespaces.

use super::{host_dir, host_namespaces_file, pinned, recorded_services, userns, NetnsRecord};
use crate::backend::Host;
use crate::exec::{self, Output};
use crate::process::{Lifetime, ProcessId};
use crate::{budget, say};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// A host of a netns lab.
pub struct NetnsHost {
    name: String,
    netns: String,
    /// The lab's namespaces and how to enter them (a normal user's lab is in a user namespace).
    record: NetnsRecord,
    dir: PathBuf,
    ns_dir: PathBuf,
    lifetime: Lifetime,
    children: Mutex<HashMap<String, Child>>,
    /// Every command run in the lab's hosts, with its output (`commands.log` in the lab's folder).
    journal: PathBuf,
}

impl NetnsHost {
    pub fn new(record: &NetnsRecord, lab_dir: &Path, name: &str, lifetime: Lifetime) -> Result<NetnsHost> {
        let netns = record.hosts.get(name).ok_or_else(|| anyhow!("no host {name} in this lab"))?.clone();
        Ok(NetnsHost {
            name: name.to_string(),
            netns,
            record: record.clone(),
            dir: host_dir(lab_dir, name),
            ns_dir: record.ns_dir.clone(),
            lifetime,
            children: Mutex::new(HashMap::new()),
            journal: lab_dir.join("commands.log"),
        })
    }

    /// `nsenter` into all of the host's namespaces.
    fn enter(&self) -> Vec<String> {
        vec![
            "nsenter".into(),
            format!("--net=/run/netns/{}", self.netns),
            format!("--mount={}", pinned(&self.ns_dir, &self.name, "mnt").display()),
            format!("--uts={}", pinned(&self.ns_dir, &self.name, "uts").display()),
            "--".into(),
        ]
    }

    /// `argv` as a command inside the host.
    fn command(&self, argv: &[&str]) -> Result<Command> {
        if self.record.holder.is_some() {
            return userns::enter(&self.namespaces_holder()?, userns::HOST_NAMESPACES, argv)
                .with_context(|| format!("{}'s namespaces are gone: start a new lab", self.name));
        }
        let mut full = self.enter();
        full.extend(argv.iter().map(|a| a.to_string()));
        self.record.command(&full)
    }

    /// As a normal user: the process that holds the host's namespaces, recorded as the lab
    /// made them.
    fn namespaces_holder(&self) -> Result<ProcessId> {
        let file = host_namespaces_file(&self.dir);
        let read = || -> Result<ProcessId> { Ok(serde_json::from_slice(&std::fs::read(&file)?)?) };
        read().with_context(|| format!("{} has no namespaces recorded ({}): is the lab built?", self.name, file.display()))
    }

    fn service_file(&self, service: &str) -> PathBuf {
        self.dir.join("services").join(format!("{service}.json"))
    }

    /// Send `signal` to a running service's recorded process (by pid and start time, never by
    /// name); that process.
    fn signal(&self, service: &str, signal: nix::sys::signal::Signal) -> Result<ProcessId> {
        let id = self
            .recorded(service)
            .filter(|id| id.alive())
            .ok_or_else(|| anyhow!("on {}: {service} is not running", self.name))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(id.pid as i32), signal)
            .map_err(|e| anyhow!("on {}: {signal:?} to {service} (pid {}): {e}", self.name, id.pid))?;
        Ok(id)
    }

    fn recorded(&self, service: &str) -> Option<ProcessId> {
        serde_json::from_slice(&std::fs::read(self.service_file(service)).ok()?).ok()
    }
}

impl Host for NetnsHost {
    fn name(&self) -> &str {
        &self.name
    }

    fn exec(&self, argv: &[&str], stdin: Option<&[u8]>, limit: Duration) -> Result<Output> {
        let out = exec::run(&self.name, &exec::display_argv(argv), self.command(argv)?, stdin, limit)?;
        exec::journal(&self.journal, &out);
        Ok(out)
    }

    fn start_service(&self, service: &str, argv: &[String], env: &[(String, String)]) -> Result<()> {
        if self.service_running(service) {
            bail!("on {}: {service} is already running", self.name);
        }
        let log_path = self.log_path(service);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let argv_str: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut cmd = self.command(&argv_str)?;
        cmd.envs(env.iter().map(|(k, v)| (k, v))).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let (child, id) = self
            .record
            .spawn(cmd, self.lifetime)
            .with_context(|| format!("on {}: starting {service}: `{}`", self.name, exec::display_argv(argv)))?;
        let id = id.ok_or_else(|| anyhow!("on {}: {service} exited at once; see {}", self.name, log_path.display()))?;
        std::fs::write(self.service_file(service), serde_json::to_vec(&id)?)?;
        self.children.lock().unwrap().insert(service.to_string(), child);
        say!("{}: started {service} (pid {}), log {}", self.name, id.pid, log_path.display());
        Ok(())
    }

    fn stop_service(&self, service: &str) -> Result<()> {
        if let Some(id) = self.recorded(service) {
            id.terminate(budget::stop());
            if id.alive() {
                bail!("on {}: {service} (pid {}) survived SIGKILL", self.name, id.pid);
            }
        }
        if let Some(mut child) = self.children.lock().unwrap().remove(service) {
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.service_file(service));
        Ok(())
    }

    fn kill_service(&self, service: &str) -> Result<()> {
        let id = self.signal(service, nix::sys::signal::Signal::SIGKILL)?;
        id.gone_within(budget::stop()).with_context(|| format!("on {}: {service} (pid {}) after SIGKILL", self.name, id.pid))
    }

    fn reload_service(&self, service: &str) -> Result<()> {
        self.signal(service, nix::sys::signal::Signal::SIGHUP).map(|_| ())
    }

    fn service_running(&self, service: &str) -> bool {
        self.recorded(service).is_some_and(|id| id.alive())
    }

    fn tcp_connect(&self, addr: SocketAddr, limit: Duration) -> Result<()> {
        if self.record.holder.is_some() {
            // A thread cannot enter a namespace of a user namespace this process is not in
            // (and a process of many threads cannot join one): a command connects instead.
            let seconds = limit.as_secs().max(1).to_string();
            let (ip, port) = (addr.ip().to_string(), addr.port().to_string());
            let argv = ["nc", "-z", "-w", &seconds, &ip, &port];
            let out = exec::run(&self.name, &exec::display_argv(&argv), self.command(&argv)?, None, limit + budget::stop())?;
            return out.check().map(|_| ()).with_context(|| format!("from {}: TCP connect to {addr}", self.name));
        }
        super::connect_from(&self.netns, addr, limit).with_context(|| format!("from {}: TCP connect to {addr}", self.name))?;
        Ok(())
    }

    fn log_path(&self, service: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{service}.log"))
    }

    fn state_dir(&self) -> String {
        self.dir.join("state").display().to_string()
    }

    fn data_dir(&self) -> String {
        super::data_dir(&self.dir).display().to_string()
    }

    fn shell_argv(&self, path_prefix: &str) -> Vec<String> {
        let mut argv = match self.record.holder {
            Some(_) => match self.namespaces_holder() {
                Ok(id) => userns::enter_prefix(&id, userns::HOST_NAMESPACES),
                Err(e) => {
                    return vec![
                        "sh".into(),
                        "-c".into(),
                        r#"echo "mesh: error: $1" >&2; exit 1"#.into(),
                        "sh".into(),
                        format!("{e:#}"),
                    ]
                }
            },
            None => self.enter(),
        };
        let path = format!("PATH={path_prefix}:{}", crate::prereq::search_path().to_string_lossy());
        argv.extend(["env".into(), path, format!("PS1=[{}] \\w\\$ ", self.name), "bash".into(), "--norc".into(), "-i".into()]);
        argv
    }

    fn root_is_unprivileged(&self) -> bool {
        self.record.holder.is_some()
    }

    fn services_peak_rss_kib(&self) -> u64 {
        recorded_services(&self.dir)
            .into_iter()
            .map(|(_, id)| id)
            .filter(ProcessId::alive)
            .filter_map(|id| {
                let status = std::fs::read_to_string(format!("/proc/{}/status", id.pid)).ok()?;
                let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .sum()
    }
}
