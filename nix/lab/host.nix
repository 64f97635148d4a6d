# One lab host from topology.json: its name, and the module of its role configured the way
# the lab runs it (server URL, base domain, addresses, the embedded DERP), so that the
# modules are evaluated, asserted and built exactly as a user would deploy them.
{
  config,
  lib,
  labTopology,
  labHost,
  ...
}:

let
  isServer = labHost.role == "server";
  server = labTopology.server;
  # Where the harness puts the lab's certificate on the server (its state folder).
  harnessState = "/var/lib/mesh";
in
{
  networking.hostName = labHost.name;

  services.headscale-server = lib.mkIf isServer {
    enable = true;
    serverUrl = labTopology.serverUrl;
    listenAddress = server.address;
    port = 443;
    baseDomain = labTopology.base_domain;
    tls = {
      certFile = "${harnessState}/tls/server.crt";
      keyFile = "${harnessState}/tls/server.key";
    };
    derp = {
      enable = true;
      stunListenAddress = "${server.address}:3478";
      ipv4 = server.address;
      regionCode = "lab";
      regionName = "Mesh lab embedded DERP";
    };
  };

  services.tailscale-client = lib.mkIf (!isServer) {
    enable = true;
    loginServer = labTopology.serverUrl;
    hostname = labHost.name;
    acceptDns = true;
    # No authKeyFile: the harness registers each client itself with a single-use pre-auth
    # key made for the run, which never enters the image.
  };

  # In the lab, the harness itself starts headscale and tailscaled in each VM, as transient
  # systemd units with its own per-run configuration (the same as on the Debian images) and
  # the programs from /run/current-system/sw/bin. The units the modules above define stay in
  # the image but must not start at boot: they would hold the ports, the TUN device and the
  # tailscaled socket the harness's units need.
  # (The conditions sit on the whole attribute set: a unit named on a host without it would
  # become an empty unit.)
  #
  # nixpkgs' tailscaled-set (made because the client module passes --hostname, --accept-dns
  # and --accept-routes through services.tailscale.extraSetFlags) is a oneshot, wanted by
  # multi-user.target, that `wants` tailscaled.service and runs `tailscale set …` against
  # tailscaled's socket. Left to start at boot it would start the module's tailscaled after
  # all (wants= pulls it in), holding the TUN device, the port and the socket the harness's
  # own tailscaled needs; and run later, against the harness's tailscaled, it would change
  # that node's preferences behind the harness's back. The harness sets those itself with
  # `tailscale up`, so in the lab the unit is kept in the image, as built, but never started.
  systemd.services = lib.mkMerge [
    (lib.mkIf isServer { headscale.wantedBy = lib.mkForce [ ]; })
    (lib.mkIf (!isServer) { tailscaled.wantedBy = lib.mkForce [ ]; })
    (lib.mkIf (!isServer && config.services.tailscale.extraSetFlags != [ ]) {
      tailscaled-set.wantedBy = lib.mkForce [ ];
    })
  ];

  # The harness writes the server's own /etc/headscale/config.yaml (so that `headscale` in a
  # shell on the server works without flags): a copy instead of a link into the read-only store.
  environment.etc = lib.mkIf isServer { "headscale/config.yaml".mode = "0644"; };
}
