//! Bad input to `cargo mesh`: each is one line naming the cause and the fix, a non-zero exit,
//! no panic, and nothing left behind. These drive the real `mesh` binary.

use std::path::Path;
use std::process::{Command, Output};

fn mesh(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mesh"));
    cmd.args(args).env_remove("MESH_LAB").env_remove("MESH_BACKEND").env_remove("MESH_SUBNET_A").env_remove("MESH_SUBNET_B");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the mesh binary runs")
}

/// Namespaces of this tool on the machine right now.
fn our_namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| n.starts_with("mesh-")).collect())
        .unwrap_or_default()
}

/// The command failed with one `mesh: error:` line containing every `says`, and left nothing.
fn assert_refused(out: &Output, says: &[&str], before: &[String]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        // It built a lab it should have refused: remove that lab before failing.
        let stdout = String::from_utf8_lossy(&out.stdout);
        if let Some(id) = stdout.split("lab ").nth(1).and_then(|r| r.split_whitespace().next()) {
            let _ = Command::new(env!("CARGO_BIN_EXE_mesh")).args(["down", id]).status();
        }
        panic!("expected a non-zero exit; it succeeded: {stdout}\n{stderr}");
    }
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("mesh: error:")).collect();
    assert_eq!(errors.len(), 1, "expected exactly one error line; stderr: {stderr}");
    for s in says {
        assert!(errors[0].contains(s), "expected the error to say {s:?}; it says: {}", errors[0]);
    }
    assert!(!stderr.contains("panicked") && !stderr.contains("stack backtrace"), "a panic instead of an error: {stderr}");
    assert_eq!(our_namespaces(), before, "the refused command left namespaces behind");
}

#[test]
fn an_unknown_backend_is_refused_with_the_valid_names() {
    let before = our_namespaces();
    let out = mesh(&["up", "--backend", "kvm-magic"], &[]);
    assert_refused(&out, &["unknown backend \"kvm-magic\"", "netns"], &before);
    let out = mesh(&["check"], &[("MESH_BACKEND", "nope")]);
    assert_refused(&out, &["unknown backend \"nope\"", "MESH_BACKEND"], &before);
}

#[test]
fn invalid_and_overlapping_subnets_are_refused_with_the_fix() {
    let before = our_namespaces();
    let out = mesh(&["up", "--subnet-a", "192.168.1.0/24", "--subnet-b", "192.168.0.0/16"], &[]);
    assert_refused(&out, &["overlap", "MESH_SUBNET_A"], &before);
    let out = mesh(&["up", "--subnet-a", "192.168.1/24"], &[]);
    assert_refused(&out, &["not an IPv4 subnet", "e.g."], &before);
    let out = mesh(&["check"], &[("MESH_SUBNET_B", "10.0.0.9/24")]);
    assert_refused(&out, &["did you mean 10.0.0.0/24"], &before);
}

#[test]
fn a_binary_of_the_wrong_version_is_refused_naming_both_versions() {
    let before = our_namespaces();
    let dir = std::env::temp_dir().join(format!("mesh-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = dir.join("headscale");
    std::fs::write(&fake, "#!/bin/sh\necho 'headscale version v0.22.0'\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = mesh(&["up"], &[("MESH_HEADSCALE_BIN", fake.to_str().unwrap())]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_refused(&out, &["0.22.0", "0.29.3", "unset MESH_HEADSCALE_BIN"], &before);
}

#[test]
fn a_missing_binary_is_refused_naming_the_variable() {
    let before = our_namespaces();
    let out = mesh(&["up"], &[("MESH_HEADSCALE_BIN", "/nonexistent/headscale")]);
    assert_refused(&out, &["MESH_HEADSCALE_BIN=/nonexistent/headscale: no such file", "unset it"], &before);
}

/// As a normal user (here `nobody`, with no folder it may write) the error names what is
/// missing and the fix: user namespaces (a sysctl, or root), a usable /dev/net/tun, a program
/// (its package), or the labs' folder (MESH_STATE_DIR), whichever this machine lacks first.
#[test]
fn without_root_the_error_says_what_is_needed() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: this test drops root to run as another user; it runs as root");
        return;
    }
    assert!(Path::new("/usr/bin/setpriv").exists(), "this test drops root with setpriv: install util-linux");
    let before = our_namespaces();
    let out = Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_mesh"), "up"])
        .env_remove("MESH_LAB")
        .env("MESH_STATE_DIR", "/proc/mesh-labs")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let fixes = ["sudo ", "chmod 0666 /dev/net/tun", "modprobe tun", "MESH_STATE_DIR"];
    let fix = fixes.iter().find(|f| stderr.contains(**f)).unwrap_or_else(|| panic!("no fix named ({fixes:?}): {stderr}"));
    assert_refused(&out, &[fix], &before);
}

#[test]
fn naming_a_lab_that_does_not_exist_says_how_to_find_the_real_ones() {
    let before = our_namespaces();
    let out = mesh(&["down", "no-such-lab"], &[]);
    assert_refused(&out, &["no running lab \"no-such-lab\"", "cargo mesh status"], &before);
}

#[test]
fn bad_tuning_values_are_refused_naming_what_they_take() {
    let before = our_namespaces();
    for (var, value, says) in [
        ("MESH_TIME_SCALE", "-2", "positive number"),
        ("MESH_TIME_SCALE", "fast", "positive number"),
        ("MESH_SOAK", "forever", "10s, 15m or 1h"),
        ("MESH_VERBOSE", "yes", "set it to 1"),
        ("MESH_ALLOW_VERSION_MISMATCH", "true", "set it to 1"),
        ("MESH_IMAGES", "ubuntu", "debian, nix"),
        ("MESH_ACCEL", "kvm-please", "tcg"),
        ("MESH_LIBVIRT_URI", "localhost", "qemu:///system"),
    ] {
        let out = mesh(&["up"], &[(var, value)]);
        assert_refused(&out, &[var, value, says], &before);
    }
}

/// A build without the VM backend says how to get one.
#[cfg(not(feature = "libvirt"))]
#[test]
fn the_vm_backend_names_the_feature_that_builds_it() {
    let before = our_namespaces();
    let out = mesh(&["check"], &[("MESH_BACKEND", "libvirt")]);
    assert_refused(&out, &["no libvirt backend", "--features libvirt", "libvirt-dev"], &before);
}

/// libvirt out of reach: the error says so within the connect budget, and nothing of the lab
/// (router namespace, networks, VMs) is left.
#[cfg(feature = "libvirt")]
#[test]
fn an_unreachable_libvirt_is_named_with_how_to_start_it() {
    let before = our_namespaces();
    let started = std::time::Instant::now();
    let uri = "qemu+unix:///system?socket=/nonexistent/libvirt-sock";
    let out = mesh(&["up"], &[("MESH_BACKEND", "libvirt"), ("MESH_LIBVIRT_URI", uri)]);
    assert_refused(&out, &["cannot connect to libvirt", uri], &before);
    assert!(started.elapsed() < std::time::Duration::from_secs(120), "it took {:?} to give up", started.elapsed());
}
