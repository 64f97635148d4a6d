//! One lab VM as a libvirt domain: direct kernel boot of its image, its own qcow2 overlay, the
//! seed disk read-only, one NIC on its subnet's network, the serial console into a file.

use super::{LibvirtRecord, VirtDomain, VM_MEMORY_MIB};
use crate::images::BootImage;
use std::path::Path;

/// XML text escaping for values we put into the definition (paths, names).
fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('\'', "&apos;").replace('"', "&quot;")
}

pub fn xml(record: &LibvirtRecord, d: &VirtDomain, image: &BootImage, overlay: &Path, seed: &Path) -> String {
    let path = |p: &Path| esc(&p.display().to_string());
    // TCG: the most capable emulated CPU; KVM: the host's own.
    // TCG's translation cache defaults to 1 GiB of this machine's memory a VM; 128 MiB boots
    // as fast and keeps a lab within its memory budget.
    let tcg = if record.accel == "kvm" { "" } else { "<tcg><tb-cache unit='MiB'>128</tb-cache></tcg>" };
    let cpu = if record.accel == "kvm" { "<cpu mode='host-passthrough'/>" } else { "<cpu mode='maximum'/>" };
    format!(
        "<domain type='{accel}'>
  <name>{name}</name>
  <memory unit='MiB'>{memory}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{cmdline} console=ttyS0</cmdline>
  </os>
  <features>
    <acpi/>
    {tcg}
  </features>
  {cpu}
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='unsafe'/>
      <source file='{overlay}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{seed}'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
    <interface type='network'>
      <source network='{network}'/>
      <mac address='{mac}'/>
      <model type='virtio'/>
      <rom enabled='no'/>
    </interface>
    <serial type='file'>
      <source path='{console}'/>
      <target port='0'/>
    </serial>
    <rng model='virtio'>
      <backend model='random'>/dev/urandom</backend>
    </rng>
    <memballoon model='none'/>
  </devices>
</domain>
",
        accel = record.accel,
        tcg = tcg,
        name = esc(&d.name),
        memory = VM_MEMORY_MIB,
        kernel = path(&image.kernel),
        initrd = path(&image.initrd),
        cmdline = esc(&image.cmdline),
        overlay = path(overlay),
        seed = path(seed),
        network = esc(&d.network),
        mac = d.mac,
        console = path(&d.console_log),
    )
}
