//! What this machine offers the VM backend, found without libvirt's library (so that a build
//! without the `libvirt` feature can tell too): KVM or TCG, and whether libvirt's daemon runs.

use std::path::Path;

/// The socket of the machine's own libvirt daemon (`qemu:///system`).
pub const LIBVIRT_SOCKET: &str = "/run/libvirt/libvirt-sock";

/// libvirtd accepts connections on [`LIBVIRT_SOCKET`]: it is running.
pub fn libvirt_answers() -> bool {
    std::os::unix::net::UnixStream::connect(LIBVIRT_SOCKET).is_ok()
}

/// The virtualisation the CPU offers, as /proc/cpuinfo names it: `vmx` (Intel), `svm` (AMD).
pub fn cpu_virtualisation() -> Option<&'static str> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpu.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    flags.split_whitespace().find_map(|f| match f {
        "vmx" => Some("vmx"),
        "svm" => Some("svm"),
        _ => None,
    })
}

/// The device KVM is used through.
pub const KVM_DEVICE: &str = "/dev/kvm";

/// /dev/kvm opens for reading and writing as this user.
pub fn kvm_opens() -> bool {
    std::fs::OpenOptions::new().read(true).write(true).open(KVM_DEVICE).is_ok()
}

/// /dev/kvm is there (whether or not it opens, or is used).
pub fn kvm_device_exists() -> bool {
    Path::new(KVM_DEVICE).exists()
}

/// KVM only where it truly works: the CPU offers virtualisation (vmx/svm) and /dev/kvm opens.
/// A nested or paravirtualised /dev/kvm without them (measured here: PVM) lets a guest die
/// ~54 s into boot with QEMU paused, so it is never tried. `MESH_ACCEL=tcg` forces TCG.
/// Returns libvirt's domain type (`kvm`, or `qemu` for TCG) and why.
pub fn acceleration() -> (&'static str, String) {
    if std::env::var("MESH_ACCEL").is_ok_and(|v| v.trim() == "tcg") {
        return ("qemu", "MESH_ACCEL=tcg".into());
    }
    match (cpu_virtualisation().is_some(), kvm_opens()) {
        (true, true) => ("kvm", "the CPU offers vmx/svm and /dev/kvm opens".into()),
        (false, true) => ("qemu", "/dev/kvm exists but the CPU offers no vmx/svm (nested or paravirtual KVM), so TCG".into()),
        (_, false) => ("qemu", "no usable /dev/kvm, so TCG".into()),
    }
}
