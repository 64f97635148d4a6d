# What the libvirt backend boots, as one folder (`system.build.labBoot`, the flake's
# packages.x86_64-linux.lab-<host>):
#
#   kernel         the kernel image
#   initrd         the initial ramdisk
#   disk.qcow2     the Nix store image: an ext4 filesystem (no partition table) holding the
#                  system's closure, mounted read-only at /nix/store (see ./profile.nix)
#   cmdline        the kernel command line: `init=` of the system and its kernel parameters,
#                  without `console=` (the backend adds the serial console)
#   versions.json  {"headscale", "tailscale", "tailscaled"}: the versions of the systems under
#                  test on the system PATH
#   system         the system itself, for reading
#
# The store image is made without a virtual machine (make-disk-image's onlyNixStore), so
# building it needs no KVM.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  storeImage = import (pkgs.path + "/nixos/lib/make-disk-image.nix") {
    inherit config lib pkgs;
    name = "mesh-lab-${config.networking.hostName}-store";
    onlyNixStore = true;
    label = "nix-store";
    partitionTableType = "none";
    installBootLoader = false;
    copyChannel = false;
    format = "qcow2";
    additionalSpace = "64M";
  };

  kernelParams = lib.filter (param: !lib.hasPrefix "console=" param) config.boot.kernelParams;
  cmdline = lib.concatStringsSep " " ([ "init=${config.system.build.toplevel}/init" ] ++ kernelParams);

  versions = builtins.toJSON {
    headscale = config.services.headscale.package.version;
    tailscale = config.services.tailscale.package.version;
    # tailscaled and the tailscale CLI come from the same package.
    tailscaled = config.services.tailscale.package.version;
  };
in
{
  system.build.labBoot = pkgs.runCommand "mesh-lab-boot-${config.networking.hostName}" { } ''
    mkdir -p $out
    ln -s ${config.system.build.kernel}/${config.system.boot.loader.kernelFile} $out/kernel
    ln -s ${config.system.build.initialRamdisk}/${config.system.boot.loader.initrdFile} $out/initrd
    ln -s ${storeImage}/nixos.qcow2 $out/disk.qcow2
    ln -s ${config.system.build.toplevel} $out/system
    printf '%s\n' ${lib.escapeShellArg cmdline} > $out/cmdline
    printf '%s\n' ${lib.escapeShellArg versions} > $out/versions.json
  '';
}
