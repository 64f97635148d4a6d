//! The seed disk: how per-run data reaches a VM at boot without rebuilding its image. A small
//! ext4 filesystem labelled `MESHSEED`, attached read-only as the VM's second disk; a unit in
//! the guest (Debian: `images/debian/mesh-seed`; NixOS: `nix/modules/lab-seed.nix`) applies it
//! before the network and sshd start. Every image, whatever built it, reads the same files:
//!
//! | file                        | contents                                                   |
//! |-----------------------------|------------------------------------------------------------|
//! | `hostname`                  | the host's name, e.g. `client-1`                           |
//! | `role`                      | `server` or `client`                                       |
//! | `mac`                       | the MAC address of its lab NIC                             |
//! | `address`                   | its address with prefix, e.g. `192.168.1.10/24`            |
//! | `routes`                    | one `DESTINATION GATEWAY` a line; never a default route (the guest adds an `unreachable` one itself) |
//! | `hosts`                     | the whole /etc/hosts                                       |
//! | `resolv.conf`               | the whole /etc/resolv.conf                                 |
//! | `authorized_keys`           | root's SSH keys (the run's key)                            |
//! | `ssh_host_ed25519_key{,.pub}` | the host key the harness pins for this run              |

use crate::exec;
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Duration;

pub const LABEL: &str = "MESHSEED";

/// One host's per-run data.
#[derive(Debug, Clone)]
pub struct Seed {
    pub hostname: String,
    pub role: String,
    pub mac: String,
    pub address: String,
    /// (destination, gateway)
    pub routes: Vec<(String, String)>,
    pub hosts: String,
    pub resolv_conf: String,
    pub authorized_keys: String,
    pub host_key: String,
    pub host_key_pub: String,
}

impl Seed {
    /// The seed's files, by name.
    pub fn files(&self) -> Vec<(&'static str, String)> {
        let routes: String = self.routes.iter().map(|(dest, via)| format!("{dest} {via}\n")).collect();
        vec![
            ("hostname", format!("{}\n", self.hostname)),
            ("role", format!("{}\n", self.role)),
            ("mac", format!("{}\n", self.mac)),
            ("address", format!("{}\n", self.address)),
            ("routes", routes),
            ("hosts", self.hosts.clone()),
            ("resolv.conf", self.resolv_conf.clone()),
            ("authorized_keys", self.authorized_keys.clone()),
            ("ssh_host_ed25519_key", self.host_key.clone()),
            ("ssh_host_ed25519_key.pub", self.host_key_pub.clone()),
        ]
    }

    /// Write the seed disk at `disk`, its files staged in `staging`. No mount, no root needed:
    /// `mkfs.ext4 -d` fills the filesystem from the folder.
    pub fn write_disk(&self, staging: &Path, disk: &Path) -> Result<()> {
        std::fs::create_dir_all(staging)?;
        for (name, contents) in self.files() {
            std::fs::write(staging.join(name), contents)?;
        }
        let file = std::fs::File::create(disk)?;
        file.set_len(4 << 20)?;
        let (staging, shown) = (staging.display().to_string(), disk.display().to_string());
        exec::local(&["mkfs.ext4", "-q", "-F", "-L", LABEL, "-d", &staging, &shown], Duration::from_secs(30))?
            .check()
            .with_context(|| format!("writing the seed disk {shown}"))?;
        Ok(())
    }
}
