//! What this machine has and lacks for each backend (`cargo mesh doctor`), found by looking:
//! every probe is the harness's own (the programs `prereq` needs, the user namespace it makes,
//! the KVM choice the VM backend makes, the Nix and Go checks, the tools' cache), and none
//! installs, starts or changes anything. Each finding that is not `ok` carries the command
//! that fixes it; the verdict says which backends a run could use now.

use crate::backend::{hypervisor, BackendKind};
use crate::images::{self, ImagesKind};
use crate::prereq::{self, Need};
use crate::tools::{self, Release, HEADSCALE, TAILSCALE};
use crate::version::Version;
use crate::{budget, exec, upgrade};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// How one thing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Works, or the harness provides it itself when it runs; worth knowing (and fixable).
    Warning,
    /// A run needs it and would stop without it.
    Missing,
}

impl Status {
    pub fn word(&self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Missing => "missing",
        }
    }
}

/// One thing looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub status: Status,
    /// What was looked at: `nft (nftables)`, `/dev/net/tun`, `headscale 0.29.3`.
    pub what: String,
    /// What was found, and why it matters.
    pub found: String,
    /// The command that fixes it, for what is not `ok` (where one does).
    pub fix: Option<String>,
}

impl Finding {
    fn ok(what: impl Into<String>, found: impl Into<String>) -> Finding {
        Finding { status: Status::Ok, what: what.into(), found: found.into(), fix: None }
    }

    fn new(status: Status, what: impl Into<String>, found: impl Into<String>, fix: Option<String>) -> Finding {
        Finding { status, what: what.into(), found: found.into(), fix }
    }
}

/// What a group of findings is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// The default backend; also what the VM backend's router needs.
    Netns,
    /// The VM backend (`--features libvirt`).
    Libvirt,
    /// Features a run may ask for; none is needed.
    Optional,
}

impl Part {
    pub fn title(&self) -> &'static str {
        match self {
            Part::Netns => "netns",
            Part::Libvirt => "libvirt (VMs)",
            Part::Optional => "optional",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    pub part: Part,
    pub findings: Vec<Finding>,
}

/// Everything looked at, by what needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub groups: Vec<Group>,
}

impl Report {
    fn group(&self, part: Part) -> impl Iterator<Item = &Finding> {
        self.groups.iter().filter(move |g| g.part == part).flat_map(|g| &g.findings)
    }

    /// How many findings of `part` are missing.
    pub fn missing(&self, part: Part) -> usize {
        self.group(part).filter(|f| f.status == Status::Missing).count()
    }

    /// A backend is ready when nothing it needs is missing. The VM backend needs the netns
    /// backend's part too: its router is a namespace of this machine.
    pub fn ready(&self, backend: BackendKind) -> bool {
        match backend {
            BackendKind::Netns => self.missing(Part::Netns) == 0,
            BackendKind::Libvirt => self.missing(Part::Netns) == 0 && self.missing(Part::Libvirt) == 0,
        }
    }

    /// The backends a run could use on this machine now.
    pub fn ready_backends(&self) -> Vec<BackendKind> {
        [BackendKind::Netns, BackendKind::Libvirt].into_iter().filter(|b| self.ready(*b)).collect()
    }

    /// The one-line verdict: which backends are ready, what the others lack.
    pub fn verdict(&self) -> String {
        let ready: Vec<&str> = self.ready_backends().iter().map(|b| b.name()).collect();
        let mut line = format!("backends ready: {}", if ready.is_empty() { "none".to_string() } else { ready.join(", ") });
        let mut not_ready = Vec::new();
        for (backend, part) in [(BackendKind::Netns, Part::Netns), (BackendKind::Libvirt, Part::Libvirt)] {
            if self.ready(backend) {
                continue;
            }
            let mut why = Vec::new();
            if self.missing(part) > 0 {
                why.push(format!("{} missing", self.missing(part)));
            }
            if part != Part::Netns && self.missing(Part::Netns) > 0 {
                why.push("the netns part it needs is not ready".to_string());
            }
            not_ready.push(format!("{} ({})", part.title(), why.join(", and ")));
        }
        if !not_ready.is_empty() {
            line += &format!("; not ready: {}", not_ready.join(", "));
        }
        let optional: Vec<&Finding> = self.group(Part::Optional).collect();
        let present = optional.iter().filter(|f| f.status == Status::Ok).count();
        line + &format!("; optional: {present} of {} present", optional.len())
    }
}

/// Look at this machine: everything each backend needs, and the optional features.
pub fn examine() -> Report {
    let root = prereq::is_root();
    let go_found = tools::local_go();
    let (tools, to_build) = tools_findings(go_usable(&go_found));
    let mut netns = vec![running_as(root)];
    netns.push(programs(&prereq::needs(BackendKind::Netns), root));
    if !root {
        netns.push(match prereq::user_namespaces_problem() {
            None => Finding::ok("user namespaces", "a normal user may make the lab's (unshare --user … true works)"),
            Some(p) => Finding::new(
                Status::Missing,
                "user namespaces",
                p.message,
                Some(p.fix.unwrap_or_else(|| "run as root: sudo -E cargo mesh check".into())),
            ),
        });
    }
    netns.push(match prereq::tun_problem() {
        None => Finding::ok("/dev/net/tun", "opens for reading and writing (tailscaled's TUN device)"),
        Some(p) => Finding::new(Status::Missing, "/dev/net/tun", p.message, p.fix),
    });
    netns.push(go(go_found, to_build));
    netns.extend(tools);

    let (images, images_why) = ImagesKind::from_env().unwrap_or((ImagesKind::Debian, "MESH_IMAGES is not valid"));
    let mut libvirt = vec![];
    if !root {
        libvirt.push(Finding::new(
            Status::Missing,
            "root",
            "the libvirt backend runs as root only: its router is a network namespace of this machine and its VMs are qemu:///system's",
            Some("sudo -E cargo mesh-vm check --backend libvirt".into()),
        ));
    }
    libvirt.push(this_build());
    libvirt.extend(build_dependencies());
    let netns_needs = prereq::needs(BackendKind::Netns);
    let vm_needs: Vec<&Need> = prereq::needs(BackendKind::Libvirt).into_iter().filter(|n| !netns_needs.contains(n)).collect();
    libvirt.push(programs(&vm_needs, root));
    libvirt.push(libvirt_daemon(root));
    libvirt.push(acceleration());
    libvirt.push(images_source(images, images_why));

    let mut optional = vec![postgres()];
    let nix = nix();
    if images == ImagesKind::Nix {
        libvirt.push(nix);
    } else {
        optional.push(nix);
    }
    Report {
        groups: vec![
            Group { part: Part::Netns, findings: netns },
            Group { part: Part::Libvirt, findings: libvirt },
            Group { part: Part::Optional, findings: optional },
        ],
    }
}

fn running_as(root: bool) -> Finding {
    let uid = nix::unistd::geteuid().as_raw();
    if root && prereq::have("apt-get") {
        Finding::ok("user", "root: labs use this machine's namespaces; a run installs missing Debian packages with apt-get")
    } else if root {
        Finding::ok("user", "root: labs use this machine's namespaces (no apt-get: missing packages are yours to install)")
    } else {
        Finding::ok(
            "user",
            format!("uid {uid}: the lab lives in a user namespace of its own; packages cannot be installed by the run"),
        )
    }
}

/// The programs of `needs` in one line: all found, or which are not and the one command that
/// installs their packages. As root with apt-get a run installs them itself: a warning then.
fn programs(needs: &[&Need], root: bool) -> Finding {
    let missing: Vec<&&Need> = needs.iter().filter(|n| !prereq::have(n.command)).collect();
    if missing.is_empty() {
        let names: Vec<&str> = needs.iter().map(|n| n.command).collect();
        return Finding::ok("programs", format!("all {} found: {}", names.len(), names.join(" ")));
    }
    let mut packages: Vec<&str> = Vec::new();
    for need in &missing {
        if !packages.contains(&need.package) {
            packages.push(need.package);
        }
    }
    let absent: Vec<String> = missing.iter().map(|n| format!("{} ({})", n.command, n.package)).collect();
    let found = format!("{} of {} found; not installed: {}", needs.len() - missing.len(), needs.len(), absent.join(", "));
    let fix = Some(prereq::install_command(&packages));
    if root && prereq::have("apt-get") {
        Finding::new(Status::Warning, "programs", format!("{found}; a run as root installs them with apt-get"), fix)
    } else {
        Finding::new(Status::Missing, "programs", found, fix)
    }
}

/// Go on PATH at [`tools::MIN_GO`] or newer.
fn go_usable(found: &Option<(PathBuf, anyhow::Result<Version>)>) -> bool {
    matches!(found, Some((_, Ok(v))) if *v >= tools::MIN_GO)
}

/// Go, needed to build a release the cache lacks (`needed`): otherwise a warning at most. The
/// fix is apt-get's golang-go where its candidate is new enough, else Go's own download.
fn go(found: Option<(PathBuf, anyhow::Result<Version>)>, needed: bool) -> Finding {
    if let Some((path, Ok(v))) = &found {
        if *v >= tools::MIN_GO {
            return Finding::ok("go", format!("Go {v} ({})", path.display()));
        }
    }
    let min = format!("{}.{}", tools::MIN_GO.major, tools::MIN_GO.minor);
    let candidate = prereq::apt_candidate("golang-go");
    let apt_is_new_enough =
        candidate.as_deref().and_then(|c| tools::go_version(&format!("go{c}")).ok()).is_some_and(|v| v >= tools::MIN_GO);
    let fix = Some(match candidate {
        _ if apt_is_new_enough => prereq::install_command(&["golang-go"]),
        Some(c) => format!("install Go {min} or newer from https://go.dev/dl/ into /usr/local/go, /usr/local/go/bin on PATH (apt-get's golang-go here is {c}, too old)"),
        None => format!("install Go {min} or newer from https://go.dev/dl/ into /usr/local/go, /usr/local/go/bin on PATH"),
    });
    let lacking = if needed { Status::Missing } else { Status::Warning };
    let why = if needed {
        "a release below is not built yet, and building it needs Go"
    } else {
        "needed only to build a release not in the cache"
    };
    match found {
        Some((path, Ok(v))) => {
            Finding::new(lacking, "go", format!("Go {v} ({}) is older than {min}: {why}", path.display()), fix)
        }
        Some((path, Err(e))) => {
            Finding::new(lacking, "go", format!("{} does not say its version ({e:#}): {why}", path.display()), fix)
        }
        None => Finding::new(lacking, "go", format!("not on PATH: {why}"), fix),
    }
}

/// The role of the run's own headscale and tailscale among [`releases`].
const RUNS: &str = "the run's";

/// The releases a run uses: the run's headscale and tailscale (which `MESH_*_BIN` may give
/// by path), each client's own tailscale, and the older headscale P6's server starts at.
fn releases() -> anyhow::Result<Vec<(Release, &'static str)>> {
    let mut releases = vec![(HEADSCALE.wanted()?, RUNS), (TAILSCALE.wanted()?, RUNS)];
    for version in crate::settings::client_versions()?.into_values() {
        if !releases.iter().any(|(r, _)| r.module.name == TAILSCALE.name && r.version == version) {
            releases.push((Release { module: &TAILSCALE, version }, "a client's own"));
        }
    }
    if let upgrade::Plan::Rehearse { from, .. } = upgrade::Plan::from_env(BackendKind::Netns)? {
        releases.push((Release { module: &HEADSCALE, version: from }, "P6's server starts at"));
    }
    Ok(releases)
}

/// Each release a run uses, found in the tools' cache or given by path; and whether any is
/// still to be built (which needs Go: missing without one, `go_ok`).
fn tools_findings(go_ok: bool) -> (Vec<Finding>, bool) {
    let releases = match releases() {
        Ok(r) => r,
        Err(e) => {
            let fix = Some("fix or unset the variable it names".to_string());
            return (vec![Finding::new(Status::Missing, "versions asked for", format!("{e:#}"), fix)], false);
        }
    };
    let mut out = Vec::new();
    let mut to_build = false;
    for (release, role) in releases {
        let what = format!("{} {}", release.module.name, release.version);
        let given: Vec<(String, String)> = release
            .module
            .commands
            .iter()
            .filter_map(|p| Some((tools::env_var(p), std::env::var(tools::env_var(p)).ok()?)))
            .collect();
        if role == RUNS && !given.is_empty() && given.len() == release.module.commands.len() {
            let shown: Vec<String> = given.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let absent: Vec<&(String, String)> = given.iter().filter(|(_, v)| !Path::new(v).is_file()).collect();
            out.push(if absent.is_empty() {
                Finding::ok(what, format!("{role}: given by {} (a run checks its version)", shown.join(", ")))
            } else {
                let names: Vec<&str> = absent.iter().map(|(k, _)| k.as_str()).collect();
                let fix = Some(format!("unset {} to let the harness build it", names.join(" ")));
                Finding::new(Status::Missing, what, format!("{role}: {} names no file", names.join(", ")), fix)
            });
            continue;
        }
        let (dir, missing) = tools::not_in_cache(&release);
        if missing.is_empty() {
            out.push(Finding::ok(what, format!("{role}: built, in {}", dir.display())));
        } else {
            to_build = true;
            let absent = format!("{role}: not built yet ({} not in {})", missing.join(", "), dir.display());
            out.push(if go_ok {
                Finding::new(
                    Status::Warning,
                    what,
                    format!("{absent}: the first run builds it with `go install` (about 4 minutes on 2 cores, once)"),
                    Some("cargo mesh tools".into()),
                )
            } else {
                // Only the run's own programs may be given by path.
                let vars: Vec<String> = release.module.commands.iter().map(|p| tools::env_var(p)).collect();
                let or = if role == RUNS { format!("; or point {} at binaries of it", vars.join(", ")) } else { String::new() };
                Finding::new(
                    Status::Missing,
                    what,
                    format!("{absent}, and there is no Go to build it with (see go above)"),
                    Some(format!("install Go (above), then `cargo mesh tools`{or}")),
                )
            });
        }
    }
    (out, to_build)
}

/// Whether this build has the VM backend built in.
fn this_build() -> Finding {
    if cfg!(feature = "libvirt") {
        Finding::ok("this build", "has the libvirt backend (--features libvirt)")
    } else {
        Finding::new(
            Status::Warning,
            "this build",
            "has no libvirt backend (built without --features libvirt); `cargo mesh-vm` is the build with it, which needs the build dependencies below",
            Some("cargo mesh-vm doctor".into()),
        )
    }
}

/// What building the VM backend needs: pkg-config, and libvirt's and OpenSSL's C libraries
/// as pkg-config finds them. Missing only for a build without the backend (one with it was
/// built already).
fn build_dependencies() -> Vec<Finding> {
    let lacking = if cfg!(feature = "libvirt") { Status::Warning } else { Status::Missing };
    let libraries = [("libvirt", "libvirt-dev"), ("openssl", "libssl-dev")];
    if !prereq::have("pkg-config") {
        let mut out = vec![Finding::new(
            lacking,
            "pkg-config",
            "not installed (package pkg-config): building the libvirt backend needs it",
            Some(prereq::install_command(&["pkg-config"])),
        )];
        for (library, package) in libraries {
            out.push(Finding::new(
                Status::Warning,
                package,
                format!("not looked for: `pkg-config --exists {library}` needs pkg-config"),
                Some(prereq::install_command(&["pkg-config", package])),
            ));
        }
        return out;
    }
    libraries
        .into_iter()
        .map(|(library, package)| match exec::local(&["pkg-config", "--modversion", library], budget::command()) {
            Ok(out) if out.success() => Finding::ok(package, format!("{library} {} (pkg-config)", out.stdout.trim())),
            _ => Finding::new(
                lacking,
                package,
                format!("pkg-config finds no {library}: building the libvirt backend needs it"),
                Some(prereq::install_command(&[package])),
            ),
        })
        .collect()
}

/// libvirt's daemon: running if its socket answers. Where none runs, a run as root starts
/// `virtlogd`, `virtlockd` and `libvirtd` itself.
fn libvirt_daemon(root: bool) -> Finding {
    let socket = hypervisor::LIBVIRT_SOCKET;
    if hypervisor::libvirt_answers() {
        return Finding::ok("libvirtd", format!("running ({socket} answers)"));
    }
    let state = if Path::new(socket).exists() { "does not answer" } else { "is not there" };
    let fix = if Path::new("/run/systemd/system").is_dir() {
        prereq::as_root("systemctl start libvirtd")
    } else {
        let start = "virtlogd -d && virtlockd -d && libvirtd -d";
        if root {
            start.to_string()
        } else {
            format!("sudo sh -c '{start}'")
        }
    };
    // As root a run installs libvirt-daemon-system where apt-get can, then starts the daemons.
    let (status, then) = if root && (prereq::have("libvirtd") || prereq::have("apt-get")) {
        (Status::Warning, "a run as root starts virtlogd, virtlockd and libvirtd itself")
    } else {
        (Status::Missing, "a run needs it")
    };
    Finding::new(status, "libvirtd", format!("not running ({socket} {state}): {then}"), Some(fix))
}

/// KVM or TCG, as the VM backend chooses (the same function), and what would give KVM.
fn acceleration() -> Finding {
    let (accel, why) = hypervisor::acceleration();
    if accel == "kvm" {
        return Finding::ok("KVM or TCG", format!("KVM: {why}"));
    }
    let forced = std::env::var("MESH_ACCEL").is_ok_and(|v| v.trim() == "tcg");
    let cpu = hypervisor::cpu_virtualisation();
    let device = hypervisor::kvm_device_exists();
    let (more, fix) = match (forced, hypervisor::kvm_opens(), device, cpu) {
        (true, ..) => (String::new(), Some("unset MESH_ACCEL".to_string())),
        // /dev/kvm opens and the CPU offers nothing: `why` says so.
        (false, true, ..) => ("; nothing on this machine gives KVM".into(), None),
        (false, false, true, _) if !prereq::is_root() => (
            format!("; {} exists but does not open as this user (a run is root's, which may differ)", hypervisor::KVM_DEVICE),
            None,
        ),
        (false, false, true, _) => (format!("; {} exists but does not open", hypervisor::KVM_DEVICE), None),
        (false, false, false, Some(flag)) => (
            format!("; the CPU offers {flag} but there is no {}: its module is not loaded", hypervisor::KVM_DEVICE),
            Some(prereq::as_root(if flag == "vmx" { "modprobe kvm_intel" } else { "modprobe kvm_amd" })),
        ),
        (false, false, false, None) => ("; the CPU offers no vmx/svm either".into(), None),
    };
    Finding::new(
        Status::Warning,
        "KVM or TCG",
        format!("VMs run under TCG, QEMU's emulation (works, several times slower): {why}{more}"),
        fix,
    )
}

/// Where the VMs' images come from (`MESH_IMAGES`) and where they are cached.
fn images_source(kind: ImagesKind, why: &str) -> Finding {
    if let Err(e) = ImagesKind::from_env() {
        return Finding::new(
            Status::Missing,
            "images",
            format!("{e:#}"),
            Some("unset MESH_IMAGES, or set it to debian or nix".into()),
        );
    }
    let how = match kind {
        ImagesKind::Debian => "built with mmdebstrap on the first run (about 35 s)",
        ImagesKind::Nix => "built with `nix build` of nix/",
    };
    Finding::ok("images", format!("{} ({why}): {how}; cached in {}", kind.name(), crate::paths::images_dir().display()))
}

/// Nix, at least [`images::nix::MIN_NIX`]: what `MESH_IMAGES=nix` builds the VMs' images with.
/// Missing when it is not usable; whether that matters is its group's (needed or optional).
fn nix() -> Finding {
    let what = "nix";
    let purpose = "MESH_IMAGES=nix builds the VMs' NixOS images with it";
    let fix = Some(images::nix::INSTALL_NIX.to_string());
    if !prereq::have("nix") {
        return Finding::new(Status::Missing, what, format!("not installed: {purpose}"), fix);
    }
    match images::nix::installed_version() {
        Ok(v) if v >= images::nix::MIN_NIX => Finding::ok(what, format!("Nix {v}: {purpose}")),
        Ok(v) => Finding::new(
            Status::Missing,
            what,
            format!("Nix {v} is older than {} (Debian's nix-bin is 2.8): {purpose}", images::nix::MIN_NIX),
            fix,
        ),
        Err(e) => Finding::new(Status::Missing, what, format!("{e:#}"), fix),
    }
}

/// PostgreSQL's server programs, for `MESH_DATABASE=postgres`: found as a lab finds them
/// ([`crate::database::Programs::find`]).
fn postgres() -> Finding {
    let what = "postgresql";
    let purpose = "MESH_DATABASE=postgres runs headscale on a PostgreSQL of the lab's own";
    match crate::database::Programs::find() {
        Some(Ok(programs)) => {
            Finding::ok(what, format!("{}: initdb and postgres in {}; {purpose}", programs.version, programs.bin.display()))
        }
        Some(Err(e)) => Finding::new(Status::Missing, what, format!("{e:#}"), Some(prereq::install_command(&["postgresql"]))),
        None => Finding::new(
            Status::Missing,
            what,
            format!("no initdb and postgres (under /usr/lib/postgresql/*/bin or on PATH): {purpose}"),
            Some(prereq::install_command(&["postgresql"])),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(status: Status) -> Finding {
        Finding::new(status, "x", "y", None)
    }

    fn report(netns: &[Status], libvirt: &[Status], optional: &[Status]) -> Report {
        let group = |part, s: &[Status]| Group { part, findings: s.iter().map(|s| finding(*s)).collect() };
        Report { groups: vec![group(Part::Netns, netns), group(Part::Libvirt, libvirt), group(Part::Optional, optional)] }
    }

    #[test]
    fn a_backend_is_ready_when_nothing_it_needs_is_missing() {
        use Status::*;
        let r = report(&[Ok, Warning], &[Missing, Ok], &[Missing]);
        assert!(r.ready(BackendKind::Netns));
        assert!(!r.ready(BackendKind::Libvirt));
        assert_eq!(r.ready_backends(), vec![BackendKind::Netns]);
        let v = r.verdict();
        assert_eq!(v, "backends ready: netns; not ready: libvirt (VMs) (1 missing); optional: 0 of 1 present");
    }

    #[test]
    fn the_vm_backend_is_not_ready_without_the_netns_part() {
        use Status::*;
        let r = report(&[Missing], &[Ok], &[Ok]);
        assert_eq!(r.ready_backends(), Vec::<BackendKind>::new());
        assert_eq!(
            r.verdict(),
            "backends ready: none; not ready: netns (1 missing), libvirt (VMs) (the netns part it needs is not ready); optional: 1 of 1 present"
        );
        let r = report(&[Missing, Missing], &[Missing], &[]);
        assert!(r.verdict().contains("libvirt (VMs) (1 missing, and the netns part it needs is not ready)"), "{}", r.verdict());
        let r = report(&[Ok], &[Warning, Ok], &[Ok, Missing]);
        assert_eq!(r.ready_backends(), vec![BackendKind::Netns, BackendKind::Libvirt]);
        assert_eq!(r.verdict(), "backends ready: netns, libvirt; optional: 1 of 2 present");
    }

    #[test]
    fn missing_programs_name_their_packages_and_one_install_command() {
        let absent = Need { command: "surely-no-such-program-here", package: "no-such-package" };
        let other = Need { command: "surely-not-this-one", package: "other-package" };
        let also = Need { command: "surely-no-such-program-either", package: "no-such-package" };
        let present = Need { command: "sh", package: "dash" };
        let found = programs(&[&absent, &present, &other, &also], false);
        assert_eq!(found.status, Status::Missing, "{found:?}");
        assert!(found.found.starts_with("1 of 4 found"), "{found:?}");
        assert!(found.found.contains("surely-no-such-program-here (no-such-package)"), "{found:?}");
        let fix = found.fix.unwrap();
        assert!(fix.contains("apt-get install") && fix.ends_with(" no-such-package other-package"), "each package once: {fix}");
        let found = programs(&[&present], false);
        assert_eq!((found.status, found.fix), (Status::Ok, None));
    }
}
