# The mesh lab's per-run data, applied at boot from the seed disk, exactly as on the Debian
# images (the contract: support/src/images/seed.rs). The seed is a small ext4 filesystem
# labelled MESHSEED, attached read-only as the VM's second disk, with these files:
#
#   hostname                   the host's name, e.g. client-1
#   role                       server or client
#   mac                        the MAC address of its lab NIC
#   address                    its address with prefix, e.g. 192.168.1.10/24
#   routes                     one "DESTINATION GATEWAY" a line; never a default route
#   hosts                      the whole /etc/hosts
#   resolv.conf                the whole /etc/resolv.conf
#   authorized_keys            root's SSH keys (the run's key)
#   ssh_host_ed25519_key{,.pub}  the host key the harness pins for this run
#
# A oneshot unit copies them into place before network-pre.target, systemd-networkd and sshd:
# a networkd configuration in /run (MAC match, the address, the routes, an unreachable default route, no
# IPv6 link-local or router advertisements), the hostname, /etc/hosts, /etc/resolv.conf (a
# plain file, which tailscale's MagicDNS then manages directly), root's authorized_keys and the
# SSH host key. One image serves every run: nothing per-run, and no secret, is in the store.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.lab-seed;

  # systemd's name for /dev/disk/by-label/<label>.
  seedDevice = "dev-disk-by\\x2dlabel-${cfg.label}.device";
in
{
  options.services.lab-seed = {
    enable = lib.mkEnableOption "applying the mesh lab's per-run seed disk at boot (network, names, SSH keys)";

    label = lib.mkOption {
      type = lib.types.strMatching "[A-Za-z0-9_-]{1,16}";
      default = "MESHSEED";
      description = "Filesystem label of the seed disk.";
    };
  };

  config = lib.mkIf cfg.enable {
    systemd.services.lab-seed = {
      description = "Apply the mesh lab's per-run seed disk (address, routes, names, SSH keys)";
      wantedBy = [ "sysinit.target" ];
      wants = [ "network-pre.target" ];
      requires = [ seedDevice ];
      after = [
        seedDevice
        "local-fs.target"
      ];
      before = [
        "sysinit.target"
        "network-pre.target"
        "systemd-networkd.service"
        "sshd.service"
        "sshd-keygen.service"
      ];
      # It runs before sysinit.target is reached: no default ordering after it.
      unitConfig.DefaultDependencies = false;
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
      };
      path = with pkgs; [
        coreutils
        gnugrep
        util-linux
      ];
      script = ''
        set -euo pipefail

        seed=/run/lab-seed
        mkdir -p "$seed"
        # Read-only device: no journal replay.
        mount -t ext4 -o ro,noload,nodev,nosuid,noexec /dev/disk/by-label/${cfg.label} "$seed"
        trap 'umount "$seed" && rmdir "$seed"' EXIT

        fail() { echo "lab-seed: $*" >&2; exit 1; }
        # The first line of a seed file, whitespace removed.
        value() {
          [ -f "$seed/$1" ] || fail "the seed has no file $1"
          local v
          v=$(head -n 1 "$seed/$1" | tr -d '[:space:]')
          [ -n "$v" ] || fail "the seed's $1 is empty"
          printf '%s' "$v"
        }
        matches() { printf '%s' "$1" | grep -Eq "$2"; }

        name=$(value hostname)
        role=$(value role)
        mac=$(value mac)
        address=$(value address)
        ipv4='([0-9]{1,3}\.){3}[0-9]{1,3}'
        matches "$name" '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' || fail "hostname $name is not a host name"
        matches "$role" '^(server|client)$' || fail "role $role is neither server nor client"
        matches "$mac" '^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$' || fail "mac $mac is not a MAC address"
        matches "$address" "^$ipv4/[0-9]{1,2}$" || fail "address $address is not an IPv4 address with prefix"

        # The lab NIC: matched by MAC, static address and routes, nothing learnt from the
        # network, and the configuration kept while the link is cut (scenarios cut it).
        network=/run/systemd/network/10-lab.network
        mkdir -p /run/systemd/network
        {
          echo "# Written at boot by lab-seed.service from the seed disk (${cfg.label})."
          echo "[Match]"
          echo "MACAddress=$mac"
          echo
          echo "[Link]"
          echo "RequiredForOnline=no"
          echo
          echo "[Network]"
          echo "Address=$address"
          echo "DHCP=no"
          echo "LinkLocalAddressing=no"
          echo "IPv6AcceptRA=no"
          echo "LLMNR=no"
          echo "MulticastDNS=no"
          echo "ConfigureWithoutCarrier=yes"
          echo "IgnoreCarrierLoss=yes"
          if [ -f "$seed/routes" ]; then
            while read -r destination gateway rest; do
              [ -n "$destination" ] || continue
              case "$destination" in
                default | 0.0.0.0/0) fail "the seed's routes name a default route: the lab has none" ;;
              esac
              matches "$destination" "^$ipv4/[0-9]{1,2}$" || fail "route destination $destination is not an IPv4 subnet"
              matches "$gateway" "^$ipv4$" || fail "route gateway $gateway is not an IPv4 address"
              [ -z "$rest" ] || fail "route line \"$destination $gateway $rest\" has more than two fields"
              echo
              echo "[Route]"
              echo "Destination=$destination"
              echo "Gateway=$gateway"
            done < "$seed/routes"
          fi
          # A default route that leads nowhere, as a netns host has: nothing leaves the lab,
          # and tailscaled sees a default route as on a real host.
          echo
          echo "[Route]"
          echo "Type=unreachable"
          echo "Destination=0.0.0.0/0"
        } > "$network.tmp"
        chmod 0644 "$network.tmp"
        mv -f "$network.tmp" "$network"

        # Replace, never write through: NixOS's own /etc files are links into the store.
        put() { # put SOURCE TARGET MODE
          install -m "$3" "$1" "$2.lab-seed"
          mv -f "$2.lab-seed" "$2"
        }

        echo "$name" > /proc/sys/kernel/hostname
        printf '%s\n' "$name" > /etc/hostname.lab-seed
        mv -f /etc/hostname.lab-seed /etc/hostname
        put "$seed/hosts" /etc/hosts 0644
        put "$seed/resolv.conf" /etc/resolv.conf 0644

        install -d -m 0700 /root/.ssh
        put "$seed/authorized_keys" /root/.ssh/authorized_keys 0600
        install -d -m 0755 /etc/ssh
        put "$seed/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key 0600
        put "$seed/ssh_host_ed25519_key.pub" /etc/ssh/ssh_host_ed25519_key.pub 0644

        # sshd listens on the lab address alone, like everything of the lab (the include is
        # in its configuration below); it may start before networkd has put the address up.
        echo "ListenAddress ''${address%/*}" > /run/lab-seed-sshd.conf

        echo "lab-seed: $name ($role) at $address on $mac"
      '';
    };

    # The network exists only as the seed describes it: networkd with the file above and
    # nothing else, no DHCP, no waiting for "online" (the lab has no way out to wait for).
    networking.useNetworkd = true;
    networking.useDHCP = false;
    systemd.network.enable = true;
    systemd.network.wait-online.enable = false;

    # /etc/resolv.conf is the seed's plain file, which tailscale manages directly once MagicDNS
    # is on; neither resolvconf nor systemd-resolved may take it over.
    networking.resolvconf.enable = false;
    services.resolved.enable = false;

    # SSH: root with the run's key only, presenting the host key the harness pinned. sshd
    # waits for the seed, so it never starts with a key of its own making.
    services.openssh = {
      enable = true;
      openFirewall = true;
      hostKeys = [
        {
          path = "/etc/ssh/ssh_host_ed25519_key";
          type = "ed25519";
        }
      ];
      extraConfig = "Include /run/lab-seed-sshd.conf";
      settings = {
        PermitRootLogin = "prohibit-password";
        PasswordAuthentication = false;
        KbdInteractiveAuthentication = false;
      };
    };
    boot.kernel.sysctl."net.ipv4.ip_nonlocal_bind" = 1;
    systemd.services.sshd = {
      requires = [ "lab-seed.service" ];
      after = [ "lab-seed.service" ];
    };
  };
}
