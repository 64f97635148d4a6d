//! What this machine must have before a lab can be built, and installing it where we may:
//! as root on Debian, missing packages are installed with apt-get; elsewhere the error names
//! the exact command to run.

use crate::backend::BackendKind;
use crate::{budget, exec, say};
use anyhow::{bail, Result};
use std::path::Path;

/// A command the harness runs on this machine or inside hosts, and the Debian package with it.
struct Need {
    command: &'static str,
    package: &'static str,
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

fn have(command: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(command).is_file())).unwrap_or(false)
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// The line that marks a policy-rc.d as ours (see [`NoServiceStarts`]).
const POLICY_MARK: &str = "written by the mesh suite during apt-get install";

/// Make sure everything the backend needs is here, installing what is missing if we can.
pub fn ensure(backend: BackendKind) -> Result<()> {
    remove_stale_policy();
    let needs: Vec<&Need> = match backend {
        BackendKind::Netns => NETNS_NEEDS.iter().collect(),
        // The router is a namespace as in the netns backend; the hosts are VMs.
        BackendKind::Libvirt => NETNS_NEEDS.iter().chain(VM_NEEDS).collect(),
    };
    if !is_root() {
        bail!(
            "the {} backend needs root to create network namespaces and mounts: run as root (e.g. `sudo -E cargo test`)",
            backend.name()
        );
    }
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

fn install(packages: &[&str]) -> Result<()> {
    let command = format!("apt-get install -y --no-install-recommends {}", packages.join(" "));
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
