//! NixOS images built from the flake in `nix/` with `nix build`, one a host:
//! `nix build <repo>/nix#lab-<host> --out-link target/mesh-images/nix-<host>`.
//!
//! The out-link is a folder (`nix/lab/image.nix`): `kernel`, `initrd`, `disk.qcow2` (the Nix
//! store image the VM's root filesystem mounts), `cmdline` (`init=` of the system, no
//! `console=`) and `versions.json` (the headscale and tailscale of that system). An image does
//! not depend on the run: a VM takes its address, names and keys from its seed disk at boot
//! (`nix/modules/lab-seed.nix`), so `nix build` is a no-op until `nix/` or `topology.json`
//! change.

use super::BootImage;
use crate::spec::{HostSpec, LabSpec};
use crate::tools::Versions;
use crate::version::Version;
use crate::{budget, exec, paths, say};
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The flake the images come from.
pub fn flake_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../nix"));
    dir.canonicalize().unwrap_or(dir)
}

/// Where `nix build` leaves its out-link for `host`.
pub fn out_link(host: &str) -> PathBuf {
    paths::images_dir().join(format!("nix-{host}"))
}

/// A first build downloads nixpkgs and the systems' closures (or builds what the binary cache
/// lacks); later ones evaluate and find everything built.
const BUILD_LIMIT: Duration = Duration::from_secs(3600);

/// The NixOS image of `host`, built from the flake in `nix/` (or found built: `nix build` is
/// a no-op then). The image is the same whatever subnets `spec` uses: the seed carries them.
pub fn image(spec: &LabSpec, host: &HostSpec) -> Result<BootImage> {
    spec.host(&host.name)?;
    if !on_path("nix") {
        bail!(
            "MESH_IMAGES=nix builds the lab's NixOS images with `nix build`, but `nix` is not on PATH: \
             install Nix, or use MESH_IMAGES=debian"
        );
    }
    check_nix_version()?;
    let flake = flake_dir();
    let link = out_link(&host.name);
    std::fs::create_dir_all(link.parent().expect("the out-link is in a folder"))?;
    let installable = format!("{}#lab-{}", flake.display(), host.name);
    let link_shown = link.display().to_string();
    say!("{}: nix build {installable} (a first build downloads nixpkgs and the system; minutes)", host.name);
    let started = Instant::now();
    let _live = crate::progress::Phase::start(format!("{}: nix build", host.name));
    let argv = ["nix", "--extra-experimental-features", "nix-command flakes", "build", &installable, "--out-link", &link_shown];
    let out = exec::local(&argv, BUILD_LIMIT)?;
    if !out.success() {
        let hint = if out.stderr.contains("does not exist") || out.stderr.contains("is not tracked") {
            "\n  Nix sees only the files git tracks: `git add nix topology.json` if they are new"
        } else {
            ""
        };
        bail!("building the NixOS image of {}: {}{hint}", host.name, out.describe_failure());
    }
    let image = boot_image_from(&link).with_context(|| format!("the NixOS image of {} ({link_shown})", host.name))?;
    say!(
        "{}: NixOS image ready in {:.1}s (headscale {}, tailscale {}): {}",
        host.name,
        started.elapsed().as_secs_f64(),
        image.versions.headscale,
        image.versions.tailscale,
        link_shown
    );
    Ok(image)
}

/// The oldest Nix that evaluates the flake's nixpkgs: nixos-25.11 refuses older ones
/// (its `lib/minver.nix`), and flakes as `nix build` uses them need a recent Nix anyway.
pub const MIN_NIX: Version = Version::new(2, 18, 0);

/// `nix --version` names a Nix at least [`MIN_NIX`], or the error says which one it found and
/// how to get a newer one (Debian's nix-bin is 2.8, for instance).
fn check_nix_version() -> Result<()> {
    let found = installed_version().context("MESH_IMAGES=nix")?;
    if found < MIN_NIX {
        bail!("{}", too_old(found));
    }
    Ok(())
}

/// The version of the `nix` on PATH, as `nix --version` names it.
pub fn installed_version() -> Result<Version> {
    let out = exec::local(&["nix", "--version"], budget::command())?;
    if !out.success() {
        bail!("`nix --version` failed: {}", out.describe_failure());
    }
    nix_version(&out.stdout)
}

/// The command that installs a current Nix (nixos.org's installer, multi-user).
pub const INSTALL_NIX: &str = "sh <(curl --proto '=https' --tlsv1.2 -L https://nixos.org/nix/install) --daemon";

/// The one-line refusal of a Nix older than [`MIN_NIX`].
fn too_old(found: Version) -> String {
    format!(
        "MESH_IMAGES=nix needs Nix {MIN_NIX} or newer (nixpkgs 25.11's minimum), but `nix --version` is {found}: \
         install a current Nix (https://nixos.org/download, or the Determinate Systems installer; Debian's nix-bin \
         is too old), or use MESH_IMAGES=debian"
    )
}

/// The version in what `nix --version` prints: `nix (Nix) 2.18.1`, Determinate Nix's
/// `nix (Determinate Nix 3.6.2) 2.29.0`, Lix's `nix (Lix, like Nix) 2.91.1`, a development
/// build's `nix (Nix) 2.25.0pre20241010_5c86b6d`. The last word is Nix's own version (a
/// missing patch number counts as 0); what follows its digits is ignored.
pub fn nix_version(text: &str) -> Result<Version> {
    let line = text.lines().next().unwrap_or("").trim();
    let word = line.split_whitespace().last().unwrap_or("");
    match crate::version::leading(word) {
        Some(version) if line.contains("Nix") => Ok(version),
        _ => bail!("`nix --version` printed {line:?}, which names no Nix version"),
    }
}

/// The boot image in a folder `nix build` made. Its files are resolved to where they really
/// are (the Nix store), so that a later build moving the out-link never changes the files a
/// running lab's VMs use (their overlays name the base disk by path).
pub fn boot_image_from(dir: &Path) -> Result<BootImage> {
    const EXPECTED: &str = "kernel, initrd, disk.qcow2, cmdline and versions.json";
    let file = |name: &str| -> Result<PathBuf> {
        let path = dir.join(name);
        let real = path
            .canonicalize()
            .with_context(|| format!("{} has no {name} (a lab image folder has {EXPECTED})", dir.display()))?;
        if !real.is_file() {
            bail!("{} is not a file", path.display());
        }
        Ok(real)
    };
    let (kernel, initrd, disk) = (file("kernel")?, file("initrd")?, file("disk.qcow2")?);

    let cmdline = std::fs::read_to_string(file("cmdline")?)?.split_whitespace().collect::<Vec<_>>().join(" ");
    if !cmdline.split(' ').any(|arg| arg.starts_with("init=")) {
        bail!("its cmdline {cmdline:?} has no init=: the kernel would not find the NixOS system");
    }
    if let Some(console) = cmdline.split(' ').find(|arg| arg.starts_with("console=")) {
        bail!("its cmdline names {console}: the backend adds the serial console itself (nix/lab/image.nix leaves it out)");
    }

    let text = std::fs::read_to_string(file("versions.json")?)?;
    let versions: Versions = serde_json::from_str(&text)
        .with_context(|| format!("its versions.json is not {{\"headscale\", \"tailscale\", \"tailscaled\"}}: {text}"))?;
    for (what, version) in
        [("headscale", &versions.headscale), ("tailscale", &versions.tailscale), ("tailscaled", &versions.tailscaled)]
    {
        if version.trim().is_empty() {
            bail!("its versions.json gives no version for {what}");
        }
    }

    let disk_format = disk_format(&disk)?;
    Ok(BootImage { kernel, initrd, disk, disk_format, cmdline, versions })
}

/// `qcow2` when the file starts with qcow2's magic, `raw` otherwise: what qemu must be told.
fn disk_format(disk: &Path) -> Result<String> {
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(disk).with_context(|| format!("opening {}", disk.display()))?;
    let n = f.read(&mut magic)?;
    Ok(if n == 4 && magic == *b"QFI\xfb" { "qcow2" } else { "raw" }.into())
}

fn on_path(command: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(command).is_file())).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder shaped like `nix build`'s out-link: links into a "store" folder.
    fn fake_out_link(root: &Path, cmdline: &str, versions: &str) -> PathBuf {
        let store = root.join("store");
        let out = root.join("nix-client-1");
        std::fs::create_dir_all(&store).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(store.join("bzImage"), b"kernel").unwrap();
        std::fs::write(store.join("initrd"), b"initrd").unwrap();
        std::fs::write(store.join("nixos.qcow2"), b"QFI\xfb\0\0\0\x03rest").unwrap();
        for (link, target) in [("kernel", "bzImage"), ("initrd", "initrd"), ("disk.qcow2", "nixos.qcow2")] {
            std::os::unix::fs::symlink(store.join(target), out.join(link)).unwrap();
        }
        std::fs::write(out.join("cmdline"), cmdline).unwrap();
        std::fs::write(out.join("versions.json"), versions).unwrap();
        out
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("meshlab-nix-image-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    const VERSIONS: &str = r#"{"headscale": "0.27.1", "tailscale": "1.90.9", "tailscaled": "1.90.9"}"#;

    #[test]
    fn an_out_link_folder_is_read_into_a_boot_image() {
        let dir = temp_dir("good");
        let out = fake_out_link(&dir, "init=/nix/store/abc-nixos-system-client-1/init loglevel=4\n", VERSIONS);
        let image = boot_image_from(&out).unwrap();
        let store = dir.join("store").canonicalize().unwrap();
        assert_eq!(image.kernel, store.join("bzImage"), "resolved to the store, not the out-link");
        assert_eq!(image.initrd, store.join("initrd"));
        assert_eq!(image.disk, store.join("nixos.qcow2"));
        assert_eq!(image.disk_format, "qcow2");
        assert_eq!(image.cmdline, "init=/nix/store/abc-nixos-system-client-1/init loglevel=4");
        assert_eq!(
            (image.versions.headscale.as_str(), image.versions.tailscale.as_str(), image.versions.tailscaled.as_str()),
            ("0.27.1", "1.90.9", "1.90.9")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_raw_disk_is_given_as_raw() {
        let dir = temp_dir("raw");
        let out = fake_out_link(&dir, "init=/x/init", VERSIONS);
        std::fs::write(dir.join("store").join("nixos.qcow2"), b"\x53\xef ext4 superblock somewhere").unwrap();
        assert_eq!(boot_image_from(&out).unwrap().disk_format, "raw");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_folder_is_refused_with_what_is_wrong() {
        let dir = temp_dir("bad");
        let cases = [
            ("init=/x/init console=ttyS0", VERSIONS, "backend adds the serial console"),
            ("loglevel=4", VERSIONS, "no init="),
            ("init=/x/init", r#"{"headscale": "0.27.1"}"#, "versions.json is not"),
            ("init=/x/init", r#"{"headscale": "", "tailscale": "1", "tailscaled": "1"}"#, "no version for headscale"),
        ];
        for (i, (cmdline, versions, says)) in cases.into_iter().enumerate() {
            let out = fake_out_link(&dir.join(i.to_string()), cmdline, versions);
            let err = format!("{:#}", boot_image_from(&out).unwrap_err());
            assert!(err.contains(says), "{cmdline} {versions}: expected {says:?} in {err}");
        }
        let out = fake_out_link(&dir.join("no-initrd"), "init=/x/init", VERSIONS);
        std::fs::remove_file(out.join("initrd")).unwrap();
        let err = format!("{:#}", boot_image_from(&out).unwrap_err());
        assert!(err.contains("has no initrd") && err.contains("versions.json"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nix_versions_are_read_from_what_nix_version_prints() {
        for (printed, version) in [
            ("nix (Nix) 2.18.1\n", Version::new(2, 18, 1)),
            ("nix (Nix) 2.8.0", Version::new(2, 8, 0)),
            ("nix (Nix) 2.24", Version::new(2, 24, 0)),
            ("nix (Determinate Nix 3.6.2) 2.29.0\n", Version::new(2, 29, 0)),
            ("nix (Lix, like Nix) 2.91.1\n", Version::new(2, 91, 1)),
            ("nix (Nix) 2.25.0pre20241010_5c86b6d\n", Version::new(2, 25, 0)),
        ] {
            assert_eq!(nix_version(printed).unwrap(), version, "{printed:?}");
        }
        for bad in ["", "nix", "nix (Nix)", "command not found", "bash 5.2.15"] {
            assert!(nix_version(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn an_old_nix_is_refused_in_one_line_with_the_way_out() {
        assert!(nix_version("nix (Nix) 2.8.0").unwrap() < MIN_NIX);
        assert!(nix_version("nix (Nix) 2.18.0").unwrap() >= MIN_NIX);
        assert!(nix_version("nix (Determinate Nix 3.6.2) 2.29.0").unwrap() >= MIN_NIX);
        let message = too_old(Version::new(2, 8, 0));
        assert!(!message.contains('\n'), "{message}");
        for says in ["2.8.0", "2.18.0", "nixos.org/download", "MESH_IMAGES=debian"] {
            assert!(message.contains(says), "{says:?} missing in {message}");
        }
    }

    #[test]
    fn the_flake_is_the_repositorys_nix_folder() {
        assert!(flake_dir().join("flake.nix").is_file(), "{}", flake_dir().display());
        // In the images' folder, wherever MESH_IMAGES_DIR puts it.
        assert_eq!(out_link("client-1"), paths::images_dir().join("nix-client-1"));
    }
}
