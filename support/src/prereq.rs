//! What this machine must have before a lab can be built, and installing it where we may:
//! as root on Debian, missing packages are installed with apt-get; elsewhere the error names
//! the exact command to run. A normal user also needs unprivileged user namespaces (the lab
//! lives in one) and a /dev/net/tun it may open.

use crate::backend::BackendKind;
use crate::{budget, exec, say};
use anyhow::{bail, Result};
use std::path::Path;

/// A command the harness runs on this machine or inside hosts, and the Debian package with it.
#[derive(Debug, PartialEq, Eq)]
pub struct Need {
    pub command: &'static str,
    pub package: &'static str,
}

const NETNS_NEEDS: &[Need] = &[
    Need { command: "ip", package: "iproute2" },
    Need { command: "nft", package: "nftables" },
    Need { command: "nsenter", package: "util-linux" },
    Need { command: "unshare", package: "util-linux" },
    Need { command: "mount", package: "mount" },
    Need { command: "sysctl", package: "procps" },
    Need { command: "ping", package: "iputils-ping" },
    Need { command: "bash", package: "bash" },
    // What scenarios run inside hosts: captures, a web server, HTTP and DNS clients, a TCP sink.
    Need { command: "tcpdump", package: "tcpdump" },
    Need { command: "nginx", package: "nginx-light" },
    Need { command: "curl", package: "curl" },
    Need { command: "dig", package: "dnsutils" },
    Need { command: "nc", package: "netcat-openbsd" },
    Need { command: "ss", package: "iproute2" },
];

const VM_NEEDS: &[Need] = &[
    Need { command: "qemu-system-x86_64", package: "qemu-system-x86" },
    Need { command: "qemu-img", package: "qemu-utils" },
    Need { command: "libvirtd", package: "libvirt-daemon-system" },
    Need { command: "virsh", package: "libvirt-clients" },
    Need { command: "mmdebstrap", package: "mmdebstrap" },
    Need { command: "mkfs.ext4", package: "e2fsprogs" },
    Need { command: "ssh-keygen", package: "openssh-client" },
    Need { command: "ssh", package: "openssh-client" },
];

/// The PATH the lab's commands are looked up in: this process's, with the system directories
/// a normal user's PATH may lack (`nft`, `sysctl` and `nginx` live in /usr/sbin).
pub fn search_path() -> std::ffi::OsString {
    let mut dirs: Vec<std::path::PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    for system in ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        if !dirs.iter().any(|d| d == Path::new(system)) {
            dirs.push(system.into());
        }
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

/// The programs a lab of `backend` needs on this machine: the VM backend's router is a
/// namespace as in the netns backend, so it needs those too, and its hosts are VMs.
pub fn needs(backend: BackendKind) -> Vec<&'static Need> {
    match backend {
        BackendKind::Netns => NETNS_NEEDS.iter().collect(),
        BackendKind::Libvirt => NETNS_NEEDS.iter().chain(VM_NEEDS).collect(),
    }
}

/// `command` is in [`search_path`]: where the lab's commands are looked up.
pub fn have(command: &str) -> bool {
    std::env::split_paths(&search_path()).any(|d| d.join(command).is_file())
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The line that marks a policy-rc.d as ours (see [`NoServiceStarts`]).
const POLICY_MARK: &str = "written by the mesh suite during apt-get install";

/// Make sure everything the backend needs is here, installing what is missing if we can.
pub fn ensure(backend: BackendKind) -> Result<()> {
    let needs = needs(backend);
    if !is_root() && backend == BackendKind::Libvirt {
        bail!("the libvirt backend needs root: its router is a network namespace of this machine and its VMs are qemu:///system's (run as root, or use MESH_BACKEND=netns)");
    }
    if !is_root() {
        return ensure_unprivileged(backend, &needs);
    }
    remove_stale_policy();
    let mut missing: Vec<&str> = needs.iter().filter(|n| !have(n.command)).map(|n| n.package).collect();
    missing.dedup();
    if !missing.is_empty() {
        install(&missing)?;
        let still: Vec<&str> = needs.iter().filter(|n| !have(n.command)).map(|n| n.command).collect();
        if !still.is_empty() {
            bail!("still missing after installing {}: {}", missing.join(" "), still.join(", "));
        }
    }
    if !Path::new("/dev/net/tun").exists() {
        bail!("/dev/net/tun is missing: tailscaled needs a TUN device; run `modprobe tun` (or create it: `mkdir -p /dev/net && mknod /dev/net/tun c 10 200`)");
    }
    Ok(())
}

/// As a normal user nothing can be installed: name what is missing and the command that adds
/// it; then check that a lab can live in a user namespace here, and that tailscaled can open
/// a TUN device.
fn ensure_unprivileged(backend: BackendKind, needs: &[&Need]) -> Result<()> {
    let missing: Vec<&&Need> = needs.iter().filter(|n| !have(n.command)).collect();
    if !missing.is_empty() {
        let mut packages: Vec<&str> = missing.iter().map(|n| n.package).collect();
        packages.dedup();
        let commands: Vec<&str> = missing.iter().map(|n| n.command).collect();
        bail!(
            "missing programs {} (as a normal user the harness cannot install them): run `{}`, or run as root, which installs them",
            commands.join(", "),
            install_command(&packages)
        );
    }
    if let Some(problem) = user_namespaces_problem() {
        bail!(
            "the {} backend as a normal user puts the lab in a user namespace, but {problem}; or run as root (`sudo -E cargo test`)",
            backend.name()
        );
    }
    if let Some(problem) = tun_problem() {
        bail!("{problem}");
    }
    Ok(())
}

/// Something this machine lacks for a lab, in one line, and the command that fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong and what to do, the fix named in it: the line an error gives.
    pub message: String,
    /// The command that fixes it, where one does.
    pub fix: Option<String>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// `command` as this user runs it with root's rights: itself for root, after `sudo` otherwise.
pub fn as_root(command: &str) -> String {
    if is_root() {
        command.to_string()
    } else {
        format!("sudo {command}")
    }
}

/// The command that installs Debian `packages` for this user (`sudo …` for a normal user).
pub fn install_command(packages: &[&str]) -> String {
    as_root(&format!("apt-get install -y --no-install-recommends {}", packages.join(" ")))
}

/// The version apt-get would install of `package` (`apt-cache policy`'s candidate, epoch and
/// Debian revision left out: `2:1.19~1` is `1.19`), `None` where there is no apt or no candidate.
pub fn apt_candidate(package: &str) -> Option<String> {
    if !have("apt-cache") {
        return None;
    }
    let out = exec::local(&["apt-cache", "policy", package], budget::command()).ok().filter(|o| o.success())?;
    let candidate = out.stdout.lines().find_map(|l| l.trim().strip_prefix("Candidate:"))?.trim();
    let upstream = candidate.split_once(':').map_or(candidate, |(_, v)| v);
    let upstream: String = upstream.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    (!upstream.is_empty()).then_some(upstream)
}

/// Why a normal user cannot make the lab's user namespace here, and what to change; `None`
/// when one can be made (tried for real, with the namespaces the lab uses).
pub fn user_namespaces_problem() -> Option<Problem> {
    let tried =
        exec::local(&["unshare", "--user", "--map-root-user", "--mount", "--net", "--pid", "--fork", "true"], budget::command());
    let why = match tried {
        Ok(out) if out.success() => return None,
        Ok(out) => out.stderr.trim().to_string(),
        Err(e) => format!("{e:#}"),
    };
    let sysctl = |name: &str| -> Option<String> {
        std::fs::read_to_string(format!("/proc/sys/{}", name.replace('.', "/"))).ok().map(|v| v.trim().to_string())
    };
    let (what, fix) = if sysctl("kernel.unprivileged_userns_clone").as_deref() == Some("0") {
        let fix = "sudo sysctl -w kernel.unprivileged_userns_clone=1";
        (
            format!(
                "this kernel disables unprivileged user namespaces (kernel.unprivileged_userns_clone=0): allow them with `{fix}`"
            ),
            Some(fix),
        )
    } else if sysctl("user.max_user_namespaces").as_deref() == Some("0") {
        let fix = "sudo sysctl -w user.max_user_namespaces=15000";
        (format!("this machine allows no user namespaces (user.max_user_namespaces=0): allow them with `{fix}`"), Some(fix))
    } else if sysctl("kernel.apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        let fix = "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0";
        (format!("AppArmor keeps unprivileged programs from making user namespaces (kernel.apparmor_restrict_unprivileged_userns=1): allow them with `{fix}`"), Some(fix))
    } else if why.contains("No space left on device") {
        let fix = "sudo sysctl -w user.max_user_namespaces=15000";
        (format!("the limit of user namespaces is reached (user.max_user_namespaces, here or in a namespace this runs in): raise it with `{fix}`"), Some(fix))
    } else {
        ("this machine does not let a normal user make one".to_string(), None)
    };
    Some(Problem {
        message: format!("{what} (`unshare --user --map-root-user --mount --net --pid --fork true` says: {why})"),
        fix: fix.map(str::to_string),
    })
}

/// Why tailscaled could not open /dev/net/tun as this user, and the fix; `None` if it can.
pub fn tun_problem() -> Option<Problem> {
    use std::os::unix::fs::MetadataExt;
    let path = Path::new("/dev/net/tun");
    let Ok(meta) = std::fs::metadata(path) else {
        return Some(Problem {
            message: "/dev/net/tun is missing: tailscaled needs a TUN device; as root run `modprobe tun` (or create it: `mkdir -p /dev/net && mknod -m 0666 /dev/net/tun c 10 200`)".into(),
            fix: Some(as_root("modprobe tun")),
        });
    };
    match std::fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(_) => None,
        Err(e) => Some(Problem {
            message: format!(
                "/dev/net/tun is not usable by this user ({e}; mode {:04o}, owner uid {}): tailscaled needs it; as root run `chmod 0666 /dev/net/tun` (the usual mode, which udev sets on most distributions), or run as root",
                meta.mode() & 0o7777,
                meta.uid()
            ),
            fix: Some(as_root("chmod 0666 /dev/net/tun")),
        }),
    }
}

/// Install Debian packages with apt-get, no service of theirs started (root only).
pub fn install(packages: &[&str]) -> Result<()> {
    let command = install_command(packages);
    if !have("apt-get") {
        bail!("missing system packages {}: install them with your package manager (on Debian: `{command}`)", packages.join(", "));
    }
    say!("installing missing system packages with apt-get: {}", packages.join(" "));
    // Packages such as nginx start their service on install; nothing of ours may run on the
    // machine itself. Debian's policy-rc.d convention stops that, for this install only.
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let _no_services = if policy.exists() { None } else { Some(NoServiceStarts::install(policy)?) };
    let mut argv = vec!["apt-get", "install", "-y", "--no-install-recommends"];
    argv.extend_from_slice(packages);
    let env_argv: Vec<&str> =
        std::iter::once("env").chain(std::iter::once("DEBIAN_FRONTEND=noninteractive")).chain(argv.iter().copied()).collect();
    let first = exec::local(&env_argv, budget::apt())?;
    if first.success() {
        return Ok(());
    }
    // A fresh machine may have no package lists yet.
    exec::local(&["apt-get", "update"], budget::apt())?.check()?;
    exec::local(&env_argv, budget::apt())?
        .check()
        .map_err(|e| anyhow::anyhow!("{e:#}\ninstalling {} failed: run `{command}` yourself and retry", packages.join(" ")))?;
    Ok(())
}

/// `/usr/sbin/policy-rc.d` answering 101 ("action forbidden") while it exists.
struct NoServiceStarts(&'static Path);

impl NoServiceStarts {
    fn install(path: &'static Path) -> Result<NoServiceStarts> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, format!("#!/bin/sh\n# {POLICY_MARK}; removed after\nexit 101\n"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
        Ok(NoServiceStarts(path))
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// A policy-rc.d of ours left by an install that was killed: it would keep every service on
/// this machine from starting. One written by anyone else stays.
fn remove_stale_policy() {
    let path = Path::new("/usr/sbin/policy-rc.d");
    if std::fs::read_to_string(path).is_ok_and(|text| text.contains(POLICY_MARK)) {
        say!("removing {} left by an interrupted install of ours", path.display());
        let _ = std::fs::remove_file(path);
    }
}
