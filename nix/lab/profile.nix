# What every lab VM has in common: booted directly by the libvirt backend (kernel, initrd and
# `init=` of the system, no boot loader), a read-only Nix store image as its only disk
# besides the seed, everything else in memory, a serial console, and the programs the
# scenarios run. Small on purpose: five of these share a machine's memory.
{
  config,
  lib,
  pkgs,
  modulesPath,
  ...
}:

{
  imports = [
    (modulesPath + "/profiles/qemu-guest.nix")
    (modulesPath + "/profiles/minimal.nix")
  ];

  # Direct kernel boot: no boot loader to install. The backend adds `console=ttyS0` to the
  # command line itself (see ./image.nix); this one is for booting the system any other way.
  boot.loader.grub.enable = false;
  boot.kernelParams = [ "console=ttyS0,115200n8" ];
  # tailscaled opens /dev/net/tun.
  boot.kernelModules = [ "tun" ];

  # The root filesystem lives in memory and starts empty at every boot (the activation script
  # fills /etc, /var, …); the Nix store is the image's disk, mounted read-only. The VM's disk
  # is a throw-away overlay over the image, so nothing ever changes the image itself.
  fileSystems."/" = {
    device = "tmpfs";
    fsType = "tmpfs";
    options = [
      "mode=0755"
      "size=256M"
    ];
  };
  fileSystems."/nix/store" = {
    device = "/dev/disk/by-label/nix-store";
    fsType = "ext4";
    options = [ "ro" ];
    neededForBoot = true;
    noCheck = true;
  };

  services.lab-seed.enable = true;

  # The lab's router is its firewall. Hosts answer as plain Linux hosts do (a closed port
  # refuses at once), the same as the Debian images, which the scenarios rely on.
  networking.firewall.enable = false;
  # The lab has no way out: no time servers to ask.
  services.timesyncd.enable = false;

  # The harness starts services over SSH as transient units; give them the system's programs
  # (tailscaled looks for `ip`, `iptables`, …) as a Debian host's units get /usr/bin. NixOS's
  # own value (file system tools, util-linux, sshd) comes first, unchanged.
  systemd.managerEnvironment.PATH = lib.mkForce (
    lib.makeBinPath (
      config.system.fsPackages
      ++ [ pkgs.util-linux ]
      ++ lib.optional config.services.openssh.enable config.services.openssh.package
    )
    + ":/run/current-system/sw/bin"
  );

  # The systems under test, on the system PATH (/run/current-system/sw/bin), on every host:
  # the harness runs them from there, and versions.json reports these versions.
  environment.systemPackages = [
    config.services.headscale.package
    config.services.tailscale.package
  ]
  # What the scenarios run inside the hosts. nginx is here to be started by a scenario,
  # never at boot.
  ++ (with pkgs; [
    curl
    dnsutils
    iproute2
    iputils
    netcat-openbsd
    nginx
    procps
    tcpdump
    util-linux
  ]);

  # Nothing in the lab builds or installs anything: no Nix daemon, no docs, one locale, and
  # not the nixpkgs sources (lib.nixosSystem would otherwise pin them in the registry and
  # NIX_PATH, putting all of nixpkgs into the image).
  nix.enable = false;
  nixpkgs.flake.setNixPath = false;
  nixpkgs.flake.setFlakeRegistry = false;
  security.sudo.enable = false;
  i18n.supportedLocales = [ "en_US.UTF-8/UTF-8" ];

  system.stateVersion = "25.11";
}
