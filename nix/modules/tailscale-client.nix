# A Tailscale client of a self-hosted headscale, on top of nixpkgs' services.tailscale: this
# module only chooses its settings (the login server, the pre-auth key file, the node's name,
# DNS, no log uploads, a private CA) and refuses combinations that would send a key to the
# wrong server or a secret into the Nix store.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.tailscale-client;

  isStorePath = path: lib.hasPrefix "${builtins.storeDir}/" path;

  isUrl = url: lib.hasPrefix "https://" url || lib.hasPrefix "http://" url;

  # The flags `tailscale up` gets when the node logs in by itself (authKeyFile).
  upFlags =
    lib.optional (cfg.loginServer != null) "--login-server=${cfg.loginServer}"
    ++ lib.optional (cfg.hostname != null) "--hostname=${cfg.hostname}"
    ++ [ "--accept-dns=${lib.boolToString cfg.acceptDns}" ]
    ++ lib.optional cfg.acceptRoutes "--accept-routes"
    ++ cfg.extraUpFlags;

  # The settings `tailscale up` applies only at a login, applied again by `tailscale set`
  # (nixpkgs' tailscaled-set unit) at every boot and switch, so that changing them reaches a
  # node that is already logged in: nixpkgs' tailscaled-autoconnect runs `tailscale up` only
  # while the node needs a login. The values are the same as upFlags', so `tailscale up`
  # finds nothing changed behind its back.
  setFlags =
    lib.optional (cfg.hostname != null) "--hostname=${cfg.hostname}"
    ++ [
      "--accept-dns=${lib.boolToString cfg.acceptDns}"
      "--accept-routes=${lib.boolToString cfg.acceptRoutes}"
    ];
in
{
  options.services.tailscale-client = {
    enable = lib.mkEnableOption "a Tailscale client of a self-hosted headscale, built on {option}`services.tailscale`";

    package = lib.mkPackageOption pkgs "tailscale" { };

    loginServer = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "https://headscale.example.com";
      description = ''
        URL of the control server the node logs in to: the headscale's
        {option}`services.headscale-server.serverUrl` (`tailscale up --login-server`).
        `null` means Tailscale Inc.'s own control server.
      '';
    };

    authKeyFile = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "/run/secrets/tailscale-preauth-key";
      description = ''
        File holding a pre-auth key (`headscale preauthkeys create`). With it, the node logs in
        by itself at boot whenever it is logged out, with the flags these options make. A path
        on the host, read at run time, never copied into the Nix store: put it there with your
        secrets tool (agenix, sops-nix, …). `null`: log in yourself with
        `tailscale up --login-server=<loginServer>`.
      '';
    };

    hostname = lib.mkOption {
      type = lib.types.nullOr (lib.types.strMatching "[[:alnum:]]([[:alnum:]-]{0,61}[[:alnum:]])?");
      default = null;
      example = "client-1";
      description = ''
        The node's name in the tailnet and in MagicDNS (`--hostname`). `null`: the machine's
        host name.
      '';
    };

    acceptDns = lib.mkOption {
      type = lib.types.bool;
      default = true;
      example = false;
      description = ''
        Whether the node uses the DNS settings the server pushes: MagicDNS names of its peers
        and the server's resolvers (`--accept-dns`).
      '';
    };

    acceptRoutes = lib.mkOption {
      type = lib.types.bool;
      default = false;
      example = true;
      description = "Whether the node uses subnet routes other nodes advertise (`--accept-routes`).";
    };

    port = lib.mkOption {
      type = lib.types.port;
      default = 41641;
      description = "UDP port tailscaled's WireGuard listens on (0: any free port).";
    };

    interfaceName = lib.mkOption {
      type = lib.types.str;
      default = "tailscale0";
      description = ''The tunnel's network interface; "userspace-networking" runs without a TUN device.'';
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      example = true;
      description = "Whether to open {option}`services.tailscale-client.port` (UDP) in the firewall, for direct paths to this node.";
    };

    caCertFile = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "/etc/ssl/headscale-ca.pem";
      description = ''
        CA certificates (PEM) tailscaled trusts for the control server and DERP relays instead of
        the system's: for a headscale whose certificate comes from a private CA. Sets
        `SSL_CERT_FILE` for tailscaled.
      '';
    };

    uploadLogs = lib.mkOption {
      type = lib.types.bool;
      default = false;
      example = true;
      description = ''
        Whether tailscaled uploads its logs to Tailscale Inc. (`log.tailscale.io`). Off by
        default here: a self-hosted mesh keeps its logs (`--no-logs-no-support`).
      '';
    };

    extraUpFlags = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "--advertise-tags=tag:server" ];
      description = "More flags for `tailscale up`, after the ones the options above make.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.authKeyFile != null -> cfg.loginServer != null;
        message = ''
          services.tailscale-client.authKeyFile is set but loginServer is not: the pre-auth key
          would be sent to Tailscale Inc.'s control server instead of your headscale. Set
          services.tailscale-client.loginServer to the headscale's server URL.
        '';
      }
      {
        assertion = cfg.authKeyFile == null || (lib.hasPrefix "/" cfg.authKeyFile && !isStorePath cfg.authKeyFile);
        message = ''
          services.tailscale-client.authKeyFile must be an absolute path outside the Nix store: a key
          in the store is readable by every user and every machine the closure is copied to.
        '';
      }
      {
        assertion = cfg.loginServer == null || isUrl cfg.loginServer;
        message = "services.tailscale-client.loginServer must start with https:// or http:// (it is \"${toString cfg.loginServer}\").";
      }
      {
        assertion = cfg.caCertFile == null || lib.hasPrefix "/" cfg.caCertFile;
        message = "services.tailscale-client.caCertFile must be an absolute path.";
      }
    ];

    services.tailscale = {
      enable = true;
      package = cfg.package;
      port = cfg.port;
      interfaceName = cfg.interfaceName;
      openFirewall = cfg.openFirewall;
      authKeyFile = cfg.authKeyFile;
      extraUpFlags = upFlags;
      extraSetFlags = setFlags;
      extraDaemonFlags = lib.optional (!cfg.uploadLogs) "--no-logs-no-support";
    };

    systemd.services.tailscaled.environment = lib.mkIf (cfg.caCertFile != null) {
      SSL_CERT_FILE = cfg.caCertFile;
    };
  };
}
