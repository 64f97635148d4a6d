//! Debian images for lab VMs, built here with mmdebstrap from this machine's apt sources. One
//! image serves every host: what differs between hosts reaches them at boot on the seed disk
//! ([`super::seed`]), applied by the guest's own unit (`images/debian/`). An image is a kernel,
//! an initrd and a root disk (a bare ext4 filesystem, no partition table, as qcow2), cached
//! under `target/mesh-images/`, one folder per hash of everything that goes into it.
//!
//! What a backend must give the VM: the kernel and initrd booted directly with its `cmdline` plus
//! its serial console; the root disk's overlay as the first virtio disk (`vda`), the seed disk
//! as the second (`vdb`, read-only); one virtio NIC with the seed's MAC, which the guest calls
//! `eth0`. The guest has no password anywhere and ignores the ACPI power button (no logind):
//! stop it by destroying it. Under TCG, QEMU's translation cache is 1 GiB by default and fills
//! as the guest runs (about 950 MiB resident per 512 MiB VM); `-accel tcg,tb-size=128` (libvirt:
//! `<features><tcg><tb-cache unit='MiB'>128</tb-cache></tcg></features>`) keeps it to ~400 MiB.

use super::BootImage;
use crate::tools::Tools;
use crate::{budget, exec, paths};
use anyhow::{bail, Context, Result};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Raise when the build changes in a way its hashed inputs do not show (this file's code).
const RECIPE_VERSION: u32 = 1;

const SUITE: &str = "bookworm";

/// What a lab host needs: systemd and sshd to be driven over SSH, networkd for the seed's
/// address, the scenarios' tools, and the cloud kernel (virtio, no hardware drivers).
const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "openssh-server",
    "openssh-sftp-server",
    "nginx-light",
    "dnsutils",
    "iproute2",
    "iputils-ping",
    "nftables",
    "tcpdump",
    "netcat-openbsd",
    "curl",
    "procps",
    "kmod",
    "linux-image-cloud-amd64",
    "initramfs-tools",
    "zstd",
    "usr-is-merged",
];

/// dpkg leaves out what nobody reads in a lab VM: about 20 MB, and time to write them.
const PATH_EXCLUDES: &[&str] = &["/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*"];

/// The root filesystem's size: sparse, so only what is written takes room. About 450 MB is
/// used; the rest is for what the VM writes while a lab runs.
const ROOT_SIZE: u64 = 2 << 30;

/// The kernel's arguments (the backend adds the console). `rw`: the root disk is the VM's own
/// overlay. `net.ifnames=0`: the lab NIC is `eth0` whatever PCI slot a backend gives it.
/// `mitigations=off`: these VMs run only the lab, and under TCG every mitigation costs.
const CMDLINE: &str = "root=/dev/vda rw rootfstype=ext4 fsck.mode=skip net.ifnames=0 mitigations=off";

/// Image folders kept: the newest ones, so that switching between two checkouts does not rebuild.
const KEEP: usize = 2;

/// mkfs.ext4 and qemu-img on 500 MB: 1 s each measured; generous for a slow disk.
const DISK_LIMIT: Duration = Duration::from_secs(300);

/// The files the guest gets: where they go in the image, their text, their mode.
const GUEST_FILES: &[(&str, &str, u32)] = &[
    ("usr/local/sbin/mesh-seed", include_str!("../../../images/debian/mesh-seed"), 0o755),
    ("etc/systemd/system/mesh-seed.service", include_str!("../../../images/debian/mesh-seed.service"), 0o644),
    ("etc/systemd/system/ssh.service.d/mesh-seed.conf", include_str!("../../../images/debian/ssh-after-seed.conf"), 0o644),
    ("etc/ssh/sshd_config.d/mesh.conf", include_str!("../../../images/debian/sshd.conf"), 0o644),
    ("etc/systemd/journald.conf.d/mesh.conf", include_str!("../../../images/debian/journald.conf"), 0o644),
    ("etc/modprobe.d/mesh-lab.conf", include_str!("../../../images/debian/modprobe.conf"), 0o644),
    ("etc/initramfs-tools/conf.d/mesh.conf", include_str!("../../../images/debian/initramfs.conf"), 0o644),
    ("usr/share/initramfs-tools/modules.d/mesh", include_str!("../../../images/debian/initramfs-modules"), 0o644),
    ("etc/apt/preferences.d/mesh-no-usrmerge", include_str!("../../../images/debian/no-usrmerge.pref"), 0o644),
];

/// mmdebstrap's hooks: the first puts the guest files in, the second configures the result.
const HOOKS: &[(&str, &str)] = &[
    ("setup-hook", include_str!("../../../images/debian/setup-hook")),
    ("customize-hook", include_str!("../../../images/debian/customize-hook")),
];

/// mmdebstrap's own hook that makes the root merged-/usr before usr-is-merged installs.
const MERGED_USR_HOOKS: &str = "/usr/share/mmdebstrap/hooks/merged-usr";

/// The Debian image with `tools` installed, from the cache or built now.
pub fn image(tools: &Tools) -> Result<BootImage> {
    let sources = apt_sources()?;
    let recipe = recipe(tools, &sources)?;
    let key = sha256_text(&recipe)?[..16].to_string();
    let dir = images_dir().join(format!("debian-{key}"));
    if is_complete(&dir) {
        let _ = fs::File::open(&dir).and_then(|d| d.set_modified(SystemTime::now()));
    } else {
        let _lock = BuildLock::take()?;
        if !is_complete(&dir) {
            build(tools, &sources, &recipe, &dir)?;
            prune(&dir);
        }
    }
    Ok(BootImage {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        disk: dir.join("disk.qcow2"),
        disk_format: "qcow2".into(),
        cmdline: CMDLINE.into(),
        versions: tools.versions.clone(),
    })
}

fn images_dir() -> PathBuf {
    paths::images_dir()
}

/// A folder is renamed into place only when complete; this also notices one emptied by hand.
fn is_complete(dir: &Path) -> bool {
    ["vmlinuz", "initrd.img", "disk.qcow2"].iter().all(|f| dir.join(f).is_file())
}

/// Everything the image is made from, as text: its hash names the image's folder.
fn recipe(tools: &Tools, sources: &[String]) -> Result<String> {
    let mut text = format!("recipe {RECIPE_VERSION}\nsuite {SUITE}\npackages {}\n", PACKAGES.join(" "));
    text += &format!("excludes {}\ncmdline {CMDLINE}\nsize {ROOT_SIZE}\n", PATH_EXCLUDES.join(" "));
    for source in sources {
        text += &format!("source {source}\n");
    }
    for (name, path) in binaries(tools) {
        text += &format!("binary {name} {}\n", sha256_file(path)?);
    }
    for (dest, contents, mode) in GUEST_FILES {
        text += &format!("file {dest} {mode:o}\n{contents}\n");
    }
    for (name, contents) in HOOKS {
        text += &format!("hook {name}\n{contents}\n");
    }
    Ok(text)
}

fn binaries(tools: &Tools) -> [(&'static str, &Path); 3] {
    [("headscale", &tools.headscale), ("tailscale", &tools.tailscale), ("tailscaled", &tools.tailscaled)]
}

/// This machine's apt sources for the suite, as one-line `deb …` entries: the image comes from
/// the same mirror (or proxy) as the machine's own packages. Both formats are read:
/// `sources.list` lines and deb822 `.sources` stanzas.
fn apt_sources() -> Result<Vec<String>> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    let mut sources = Vec::new();
    for file in &files {
        let Ok(text) = fs::read_to_string(file) else { continue };
        match file.extension().and_then(|e| e.to_str()) {
            Some("sources") => sources.extend(deb822_entries(&text)),
            _ if file.ends_with("sources.list") || file.extension().is_some_and(|e| e == "list") => {
                sources.extend(one_line_entries(&text))
            }
            _ => {}
        }
    }
    if sources.is_empty() {
        bail!(
            "no apt source for Debian {SUITE} in /etc/apt/sources.list or /etc/apt/sources.list.d/: the lab's Debian image \
             is built from this machine's mirror; add one, e.g. `deb http://deb.debian.org/debian {SUITE} main`"
        );
    }
    Ok(sources)
}

/// `bookworm`, `bookworm-updates`, `bookworm-security`, `bookworm/updates`.
fn is_our_suite(suite: &str) -> bool {
    suite == SUITE || suite.strip_prefix(SUITE).is_some_and(|rest| rest.starts_with(['-', '/']))
}

fn one_line_entries(text: &str) -> Vec<String> {
    let mut entries = Vec::new();
    for line in text.lines().map(|l| l.split('#').next().unwrap_or_default().trim()) {
        let Some(rest) = line.strip_prefix("deb ").or_else(|| line.strip_prefix("deb\t")) else { continue };
        let rest = rest.trim_start();
        let (options, rest) = match rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
            Some((options, rest)) => (format!("[{}] ", options.trim()), rest),
            None => (String::new(), rest),
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        if words.len() >= 3 && is_our_suite(words[1]) {
            entries.push(format!("deb {options}{}", words.join(" ")));
        }
    }
    entries
}

fn deb822_entries(text: &str) -> Vec<String> {
    let mut entries = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| -> Option<String> {
            let mut value: Option<String> = None;
            for line in stanza.lines().filter(|l| !l.starts_with('#')) {
                if line.starts_with([' ', '\t']) {
                    if let Some(v) = value.as_mut() {
                        v.push('\n');
                        v.push_str(line.trim());
                    }
                } else if value.is_some() {
                    break;
                } else if let Some((key, v)) = line.split_once(':') {
                    if key.trim().eq_ignore_ascii_case(name) {
                        value = Some(v.trim().to_string());
                    }
                }
            }
            value
        };
        let listed = |name: &str| field(name).unwrap_or_default().split_whitespace().map(str::to_string).collect::<Vec<_>>();
        if field("Enabled").is_some_and(|e| e.eq_ignore_ascii_case("no")) || !listed("Types").iter().any(|t| t == "deb") {
            continue;
        }
        // A key given inline (several lines) cannot be passed on one line: mmdebstrap then
        // finds the key among this machine's trusted ones.
        let options = match field("Signed-By") {
            Some(key) if !key.contains('\n') && !key.is_empty() => format!("[signed-by={key}] "),
            _ => String::new(),
        };
        let components = listed("Components").join(" ");
        for uri in listed("URIs") {
            for suite in listed("Suites").iter().filter(|s| is_our_suite(s)) {
                entries.push(format!("deb {options}{uri} {suite} {components}").trim_end().to_string());
            }
        }
    }
    entries
}

/// The sha256 of `text`, in hex.
fn sha256_text(text: &str) -> Result<String> {
    let mut cmd = std::process::Command::new("sha256sum");
    cmd.arg("-");
    let out = exec::run("this machine", "sha256sum -", cmd, Some(text.as_bytes()), budget::command())?.check()?;
    first_word(&out.stdout)
}

/// The sha256 of a file, remembered beside the images by its size, inode and modification
/// time: hashing the three binaries (150 MB) on every run would cost half a second.
fn sha256_file(path: &Path) -> Result<String> {
    let meta = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let stamp = format!("{} {} {} {}.{}", meta.dev(), meta.ino(), meta.len(), meta.mtime(), meta.mtime_nsec());
    let shown = path.display().to_string();
    let memo = images_dir().join("sha256-memo");
    let remembered = fs::read_to_string(&memo).unwrap_or_default();
    let prefix = format!("{stamp} {shown} ");
    if let Some(sum) = remembered.lines().find_map(|l| l.strip_prefix(&prefix)) {
        return Ok(sum.to_string());
    }
    let sum = first_word(&exec::local(&["sha256sum", &shown], budget::command())?.check()?.stdout)?;
    fs::create_dir_all(images_dir())?;
    // One short append: concurrent runs may both add the same line, which is harmless.
    use std::io::Write;
    let mut file = fs::OpenOptions::new().create(true).append(true).open(&memo)?;
    file.write_all(format!("{prefix}{sum}\n").as_bytes())?;
    Ok(sum)
}

fn first_word(text: &str) -> Result<String> {
    match text.split_whitespace().next() {
        Some(word) if word.len() == 64 => Ok(word.to_string()),
        _ => bail!("sha256sum printed {text:?}"),
    }
}

/// Build the image into `dir`: in a folder beside it, renamed into place when complete. On a
/// failure the folder goes, and mmdebstrap's log is kept beside it, named in the error.
fn build(tools: &Tools, sources: &[String], recipe: &str, dir: &Path) -> Result<()> {
    prerequisites()?;
    let partial = dir.with_extension("partial");
    let failed_log = dir.with_extension("failed.log");
    remove_partial_builds()?;
    fs::create_dir_all(&partial)?;
    let started = Instant::now();
    crate::say!("building the Debian image (first run only, ~1 min) in {} …", dir.display());
    let _live = crate::progress::Phase::start("building the Debian image");
    match build_in(tools, sources, recipe, &partial) {
        Ok(()) => {
            fs::rename(&partial, dir).with_context(|| format!("moving {} into place", partial.display()))?;
            let _ = fs::remove_file(&failed_log);
            let size = fs::metadata(dir.join("disk.qcow2")).map(|m| m.len() >> 20).unwrap_or_default();
            crate::say!("Debian image built in {:.0?}: {} ({size} MiB disk)", started.elapsed(), dir.display());
            Ok(())
        }
        Err(e) => {
            let kept = fs::copy(partial.join("build.log"), &failed_log).is_ok();
            remove_tree(&partial)?;
            let log = if kept { format!("; mmdebstrap's log: {}", failed_log.display()) } else { String::new() };
            Err(e.context(format!("building the Debian image for the VM backend failed{log}")))
        }
    }
}

/// What the build runs, named with the package that has it.
fn prerequisites() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("building the Debian image needs root (mmdebstrap --mode=root makes a root filesystem owned by root)");
    }
    let on_path =
        |p: &str| std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()));
    let missing: Vec<&str> = [("mmdebstrap", "mmdebstrap"), ("mkfs.ext4", "e2fsprogs"), ("qemu-img", "qemu-utils")]
        .iter()
        .filter(|(program, _)| !on_path(program))
        .map(|(_, package)| *package)
        .collect();
    if !missing.is_empty() {
        bail!("building the Debian image needs {}: apt-get install {}", missing.join(", "), missing.join(" "));
    }
    if !Path::new(MERGED_USR_HOOKS).is_dir() {
        bail!("mmdebstrap's hooks are missing ({MERGED_USR_HOOKS}): install mmdebstrap 1.3 or newer (Debian 12's)");
    }
    Ok(())
}

/// The build's steps, each timed, in `partial`.
fn build_in(tools: &Tools, sources: &[String], recipe: &str, partial: &Path) -> Result<()> {
    stage(tools, partial)?;
    fs::write(partial.join("recipe.txt"), recipe)?;
    let step = Instant::now();
    mmdebstrap(sources, partial)?;
    let packages = fs::read_to_string(partial.join("packages.txt")).unwrap_or_default().lines().count();
    crate::say!("mmdebstrap installed {packages} packages in {:.0?}", step.elapsed());
    let step = Instant::now();
    root_disk(partial)?;
    for staged in ["root", "payload"].into_iter().chain(HOOKS.iter().map(|(name, _)| *name)) {
        remove_tree(&partial.join(staged))?;
    }
    crate::say!("root disk written in {:.1?}", step.elapsed());
    Ok(())
}

/// The hooks, and the payload the setup hook copies into the new root: the guest files and
/// the three binaries.
fn stage(tools: &Tools, partial: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let write = |path: &Path, contents: &[u8], mode: u32| -> Result<()> {
        fs::create_dir_all(path.parent().context("a staged file has no folder")?)?;
        fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
        Ok(fs::set_permissions(path, fs::Permissions::from_mode(mode))?)
    };
    for (name, contents) in HOOKS {
        write(&partial.join(name), contents.as_bytes(), 0o755)?;
    }
    let payload = partial.join("payload");
    for (dest, contents, mode) in GUEST_FILES {
        write(&payload.join(dest), contents.as_bytes(), *mode)?;
    }
    let bin = payload.join("usr/local/bin");
    fs::create_dir_all(&bin)?;
    for (name, path) in binaries(tools) {
        // A hard link when the cache shares a filesystem with the binaries: 150 MB not copied
        // twice. So the link is left as it is; the setup hook sets owner and mode in the image.
        if fs::hard_link(path, bin.join(name)).is_err() {
            fs::copy(path, bin.join(name)).with_context(|| format!("copying {}", path.display()))?;
        }
    }
    // cp -a gives the new root the payload folder's own mode.
    fs::set_permissions(&payload, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// mmdebstrap into `partial/root`; its output goes to `partial/build.log` however it ends.
fn mmdebstrap(sources: &[String], partial: &Path) -> Result<()> {
    let root = partial.join("root");
    let mut argv: Vec<String> = ["--mode=root", "--variant=apt", "--format=directory", "--verbose"].map(String::from).to_vec();
    argv.push(format!("--hook-dir={MERGED_USR_HOOKS}"));
    // The machine's mirror may be a snapshot or a proxy of one: its Release files may be old.
    argv.push("--aptopt=Acquire::Check-Valid-Until \"false\"".into());
    argv.extend(apt_proxy()?.into_iter().map(|o| format!("--aptopt={o}")));
    argv.push("--dpkgopt=force-unsafe-io".into());
    argv.extend(PATH_EXCLUDES.iter().map(|p| format!("--dpkgopt=path-exclude={p}")));
    argv.push(format!("--include={}", PACKAGES.join(",")));
    for (name, _) in HOOKS {
        let flag = name.strip_suffix("-hook").unwrap_or(name);
        argv.push(format!("--{flag}-hook={}", partial.join(name).display()));
    }
    argv.extend([SUITE.to_string(), root.display().to_string()]);
    argv.extend(sources.iter().cloned());
    // In a mount and PID namespace of its own: should it be killed (its time limit, or the
    // harness dying), every process it started dies with it, and its mounts in the new root go.
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--mount", "--pid", "--fork", "--kill-child", "mmdebstrap"]).args(&argv);
    let shown = format!("mmdebstrap … {SUITE} {}", root.display());
    let out = exec::run("this machine", &shown, cmd, None, budget::apt())?;
    let log = format!("$ mmdebstrap {}\n{}{}", exec::display_argv(&argv), out.stdout, out.stderr);
    fs::write(partial.join("build.log"), log)?;
    out.check().context("mmdebstrap failed")?;
    Ok(())
}

/// This machine's apt proxy settings, if any, for mmdebstrap's apt (which reads none of the
/// machine's apt configuration).
fn apt_proxy() -> Result<Vec<String>> {
    let dump = exec::local(&["apt-config", "dump"], budget::command())?.check()?.stdout;
    Ok(dump
        .lines()
        .filter(|l| l.starts_with("Acquire::http::Proxy") || l.starts_with("Acquire::https::Proxy"))
        .map(|l| l.trim_end_matches(';').to_string())
        .collect())
}

/// `partial/root` as a bare ext4 filesystem, filled without mounting it, then as qcow2.
fn root_disk(partial: &Path) -> Result<()> {
    let (root, raw, disk) = (partial.join("root"), partial.join("root.raw"), partial.join("disk.qcow2"));
    fs::File::create(&raw)?.set_len(ROOT_SIZE)?;
    let [root, raw_s, disk_s] = [&root, &raw, &disk].map(|p| p.display().to_string());
    // Inode tables and journal zeroed now (zeros take no room in the qcow2), or every VM's
    // kernel would zero them in the background at its first boot, under TCG.
    let mkfs = ["mkfs.ext4", "-q", "-F", "-L", "meshroot", "-m", "0", "-E", "lazy_itable_init=0,lazy_journal_init=0"];
    exec::local(&[&mkfs[..], &["-d", &root, &raw_s]].concat(), DISK_LIMIT)?.check().context("making the root filesystem")?;
    exec::local(&["qemu-img", "convert", "-q", "-O", "qcow2", &raw_s, &disk_s], DISK_LIMIT)?
        .check()
        .context("converting the root disk to qcow2")?;
    fs::remove_file(&raw)?;
    Ok(())
}

/// Keep the newest [`KEEP`] image folders (`current` among them) and failure logs; remove the rest.
fn prune(current: &Path) {
    for suffix in ["", ".failed.log"] {
        let Ok(entries) = fs::read_dir(images_dir()) else { return };
        let mut found: Vec<(SystemTime, PathBuf)> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p != current)
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                let rest = name.strip_prefix("debian-").unwrap_or_default();
                !rest.is_empty() && if suffix.is_empty() { !rest.contains('.') } else { rest.ends_with(suffix) }
            })
            .filter_map(|p| Some((fs::metadata(&p).and_then(|m| m.modified()).ok()?, p)))
            .collect();
        found.sort();
        found.reverse();
        let keep = if suffix.is_empty() { KEEP - 1 } else { KEEP };
        for (_, old) in found.into_iter().skip(keep) {
            if in_use(&old) {
                continue;
            }
            if let Err(e) = remove_tree(&old) {
                crate::say!("warning: could not remove the old image {}: {e:#}", old.display());
            }
        }
    }
}

/// A running VM has a file of this image open (QEMU holds its base disk): a lab still up
/// would lose the disk its overlays lie on.
fn in_use(dir: &Path) -> bool {
    let Ok(procs) = fs::read_dir("/proc") else { return true };
    procs.flatten().filter(|p| p.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))).any(|p| {
        fs::read_dir(p.path().join("fd"))
            .map(|fds| fds.flatten().any(|fd| fs::read_link(fd.path()).is_ok_and(|target| target.starts_with(dir))))
            .unwrap_or(false)
    })
}

/// Builds a killed run left: under the build lock, no other build is running.
fn remove_partial_builds() -> Result<()> {
    for entry in fs::read_dir(images_dir())?.flatten() {
        if entry.path().extension().is_some_and(|e| e == "partial") {
            remove_tree(&entry.path())?;
        }
    }
    Ok(())
}

/// Remove a build folder, which a killed mmdebstrap may have left with /proc, /sys or /dev
/// mounted inside: those are unmounted first, and rm never crosses into another filesystem.
fn remove_tree(path: &Path) -> Result<()> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    let below = format!("{}/", path.display());
    let mut inside: Vec<String> = crate::process::mount_points().into_iter().filter(|m| m.starts_with(&below)).collect();
    inside.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for mount in &inside {
        exec::local(&["umount", "--lazy", mount], budget::command())?.check()?;
    }
    let shown = path.display().to_string();
    exec::local(&["rm", "-rf", "--one-file-system", &shown], DISK_LIMIT)?.check()?;
    Ok(())
}

/// An exclusive lock on building images (flock: released when the process ends, however it
/// ends), so that test processes started side by side build one image, once.
struct BuildLock {
    /// Held, not read: the lock lives as long as the open file.
    _file: fs::File,
}

impl BuildLock {
    fn take() -> Result<BuildLock> {
        fs::create_dir_all(images_dir())?;
        let path = images_dir().join("debian.lock");
        let file = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        // std's file locks are flock(2) on Linux.
        if file.try_lock().is_err() {
            crate::say!("another run is building the Debian image; waiting for it");
            let _live = crate::progress::Phase::start("waiting for another run's build of the Debian image");
            if let Err(e) = file.lock() {
                bail!("locking {}: {e}", path.display());
            }
        }
        Ok(BuildLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_of_the_suite_are_read_in_both_formats() {
        let list = "deb http://m/debian bookworm main # comment\n# deb http://m/x bookworm main\n\
                    deb [arch=amd64] http://m/debian-security bookworm-security main\ndeb http://m/d trixie main\n\
                    deb-src http://m/debian bookworm main\n";
        assert_eq!(
            one_line_entries(list),
            ["deb http://m/debian bookworm main", "deb [arch=amd64] http://m/debian-security bookworm-security main"]
        );
        let deb822 = "Types: deb\nURIs: http://m/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\
                      Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                      Types: deb\nURIs: https://other\nSuites: nodistro\nComponents: main\n\n\
                      Types: deb\nEnabled: no\nURIs: http://off\nSuites: bookworm\nComponents: main\n";
        assert_eq!(
            deb822_entries(deb822),
            [
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://m/debian bookworm main",
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://m/debian bookworm-updates main"
            ]
        );
        assert!(!is_our_suite("bookwormish") && is_our_suite("bookworm/updates"));
    }

    /// Builds the image for real (root, mmdebstrap, the pinned binaries): `cargo test -p meshlab
    /// --lib images::debian -- --ignored`.
    #[test]
    #[ignore]
    fn builds_and_then_reuses_the_image() {
        let tools = Tools::resolve().unwrap();
        let built = image(&tools).unwrap();
        let started = Instant::now();
        let again = image(&tools).unwrap();
        let hit = started.elapsed();
        assert!(hit < Duration::from_secs(1), "a cache hit took {hit:.1?}");
        println!("cache hit in {hit:.2?}");
        assert_eq!(built.disk, again.disk);
        println!("{}", serde_json::to_string_pretty(&again).unwrap());
    }
}
