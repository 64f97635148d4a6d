# A headscale control server for a self-hosted Tailscale mesh, on top of nixpkgs'
# services.headscale: this module only chooses its settings (server URL, listen address,
# MagicDNS, the embedded DERP relay and STUN server, TLS from files on the host) and refuses
# combinations headscale would refuse at run time, at evaluation instead.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.headscale-server;

  # "https://headscale.example.com:8443/path" -> "headscale.example.com"
  serverHost =
    let
      afterScheme = lib.last (lib.splitString "://" cfg.serverUrl);
      hostAndPort = builtins.head (lib.splitString "/" afterScheme);
    in
    builtins.head (lib.splitString ":" hostAndPort);

  # "192.168.1.5:3478" -> 3478
  stunPort = lib.toInt (lib.last (lib.splitString ":" cfg.derp.stunListenAddress));

  isStorePath = path: lib.hasPrefix "${builtins.storeDir}/" path;

  isUrl = url: lib.hasPrefix "https://" url || lib.hasPrefix "http://" url;

  # Whether a Go listen address ("HOST:PORT") listens on every interface: no host
  # (":9090"), 0.0.0.0 or ::, and an unset or empty address (headscale 0.27 then serves
  # metrics on all interfaces at a random port).
  listensWide =
    address:
    let
      text = if address == null then "" else toString address;
      bracketed = builtins.match "[[](.*)[]](:.*)?" text;
      host = if bracketed != null then builtins.head bracketed else builtins.head (lib.splitString ":" text);
      # An unbracketed IPv6 address with no port ("::") splits to an empty first part too.
    in
    text == "" || builtins.elem host [
      ""
      "0.0.0.0"
      "0"
      "::"
      "::0"
      "0:0:0:0:0:0:0:0"
    ];

  # headscale's listeners only admins should reach: (setting, its value, the module's option).
  adminListeners = [
    {
      setting = "metrics_listen_addr";
      what = "metrics and the /debug pages, unauthenticated";
      option = "metricsListenAddress";
      example = "127.0.0.1:9090";
    }
    {
      setting = "grpc_listen_addr";
      what = "the gRPC admin API (API keys guard it, but it should not face the internet)";
      option = "grpcListenAddress";
      example = "127.0.0.1:50443";
    }
  ];
in
{
  options.services.headscale-server = {
    enable = lib.mkEnableOption "a headscale control server for a self-hosted Tailscale mesh, built on {option}`services.headscale`";

    package = lib.mkPackageOption pkgs "headscale" { };

    serverUrl = lib.mkOption {
      type = lib.types.str;
      example = "https://headscale.example.com";
      description = ''
        The URL clients reach this server at (headscale's `server_url`): what
        {option}`services.tailscale-client.loginServer` is set to on every client.
        Its host name must resolve to this server for every client and must not lie within
        {option}`services.headscale-server.baseDomain`.
      '';
    };

    listenAddress = lib.mkOption {
      type = lib.types.str;
      default = "0.0.0.0";
      example = "192.168.1.5";
      description = ''
        Address headscale listens on for clients (the control protocol, and the embedded DERP
        relay when {option}`services.headscale-server.derp.enable` is set).
        `127.0.0.1` behind a reverse proxy that terminates TLS.
      '';
    };

    port = lib.mkOption {
      type = lib.types.port;
      default = 443;
      example = 8080;
      description = ''
        Port headscale listens on: 443 when headscale serves TLS itself
        ({option}`services.headscale-server.tls.certFile`), a port such as 8080 behind a
        reverse proxy.
      '';
    };

    metricsListenAddress = lib.mkOption {
      type = lib.types.str;
      default = "127.0.0.1:9090";
      example = "192.168.1.5:9090";
      description = ''
        Address and port of headscale's `/metrics` and `/debug` endpoints
        (`metrics_listen_addr`), which need no authentication. Loopback by default, as
        headscale's own example configuration has it; left unset, headscale 0.27 serves them
        on every interface. Listening on every interface is refused unless
        {option}`services.headscale-server.allowWideListeners` is set.
      '';
    };

    grpcListenAddress = lib.mkOption {
      type = lib.types.str;
      default = "127.0.0.1:50443";
      example = "192.168.1.5:50443";
      description = ''
        Address and port of headscale's gRPC admin API (`grpc_listen_addr`), for remote
        `headscale` CLIs with an API key. Loopback by default, as headscale's own example
        configuration has it (the local CLI uses the unix socket). Listening on every
        interface is refused unless {option}`services.headscale-server.allowWideListeners` is
        set.
      '';
    };

    allowWideListeners = lib.mkOption {
      type = lib.types.bool;
      default = false;
      example = true;
      description = ''
        Whether headscale's admin listeners (`metrics_listen_addr`, `grpc_listen_addr`) may
        listen on every interface (`0.0.0.0`, `[::]`, no host, or unset). Off: such a
        configuration fails evaluation, naming the setting. Turn it on only where a firewall
        keeps those ports from the clients and the internet.
      '';
    };

    ephemeralInactivityTimeout = lib.mkOption {
      type = lib.types.str;
      default = "30m";
      example = "5m";
      description = ''
        How long an ephemeral node may stay offline before headscale deletes it. Written under
        both keys headscale has had for it: `ephemeral_node_inactivity_timeout` (0.27 and
        0.28 read only this one; 0.29 still reads it, with a deprecation warning) and
        `node.ephemeral.inactivity_timeout` (0.29; 0.27 ignores `node:`), so the same value
        holds whichever headscale {option}`services.headscale-server.package` is.
      '';
    };

    baseDomain = lib.mkOption {
      type = lib.types.str;
      example = "tailnet.example.com";
      description = ''
        MagicDNS base domain: every node answers to `<hostname>.<baseDomain>`.

        It must differ from the server's own host name (from
        {option}`services.headscale-server.serverUrl`) and must not contain it: clients send
        every name under the base domain to MagicDNS, so they would lose the control server and
        its DERP relay. headscale refuses to start with such a configuration; this module
        refuses to evaluate it.
      '';
    };

    magicDns = lib.mkOption {
      type = lib.types.bool;
      default = true;
      example = false;
      description = "Whether clients get MagicDNS: peers' names resolved by `100.100.100.100`.";
    };

    nameservers = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "9.9.9.9" ];
      description = ''
        Resolvers headscale pushes to clients for every name outside the tailnet. Empty: clients
        keep their own resolvers for those names (headscale's `dns.override_local_dns = false`).
      '';
    };

    tls = {
      certFile = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "/var/lib/headscale/tls/server.crt";
        description = ''
          Certificate (PEM, with its chain) headscale serves TLS with: a path on the host, read
          by headscale at run time. `null` when a reverse proxy in front terminates TLS.
        '';
      };

      keyFile = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "/run/secrets/headscale-tls.key";
        description = ''
          Private key of {option}`services.headscale-server.tls.certFile`: a path on the host,
          read by headscale at run time and never copied into the Nix store. It must be
          readable by the `headscale` user.
        '';
      };
    };

    derp = {
      enable = lib.mkOption {
        type = lib.types.bool;
        default = true;
        example = false;
        description = ''
          Whether to run headscale's embedded DERP relay (on
          {option}`services.headscale-server.port`, over TLS) and its STUN server, so that
          peers that cannot reach each other directly (NAT, UDP blocked) still talk, relayed by
          this server. Needs an `https://` {option}`services.headscale-server.serverUrl`.
        '';
      };

      stunListenAddress = lib.mkOption {
        type = lib.types.str;
        default = "0.0.0.0:3478";
        example = "192.168.1.5:3478";
        description = "Address and UDP port of the embedded STUN server.";
      };

      ipv4 = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "192.168.1.5";
        description = ''
          IPv4 address of the embedded DERP relay as published in the DERP map clients get.
          `null`: clients resolve the server URL's host name.
        '';
      };

      regionId = lib.mkOption {
        type = lib.types.ints.positive;
        default = 999;
        description = "DERP region ID of the embedded relay; it must not clash with another DERP map's.";
      };

      regionCode = lib.mkOption {
        type = lib.types.str;
        default = "headscale";
        example = "lab";
        description = "Short name of the embedded DERP region, as `tailscale netcheck` and `tailscale ping` show it.";
      };

      regionName = lib.mkOption {
        type = lib.types.str;
        default = "Headscale embedded DERP";
        description = "Long name of the embedded DERP region.";
      };

      usePublicDerpMap = lib.mkOption {
        type = lib.types.bool;
        default = false;
        example = true;
        description = ''
          Whether clients also get Tailscale Inc.'s public DERP relays (the map headscale fetches
          from `controlplane.tailscale.com` and refreshes daily). Off: the mesh depends on no
          third party.
        '';
      };
    };

    logLevel = lib.mkOption {
      type = lib.types.enum [
        "trace"
        "debug"
        "info"
        "warn"
        "error"
      ];
      default = "info";
      example = "debug";
      description = "headscale's log level.";
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      example = true;
      description = ''
        Whether to open {option}`services.headscale-server.port` (TCP) in the firewall, and the
        STUN port (UDP) when the embedded DERP is on.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = isUrl cfg.serverUrl;
        message = "services.headscale-server.serverUrl must start with https:// or http:// (it is \"${cfg.serverUrl}\").";
      }
      {
        assertion = cfg.baseDomain != "" && !lib.hasSuffix "." cfg.baseDomain && !lib.hasPrefix "." cfg.baseDomain;
        message = "services.headscale-server.baseDomain must be a domain name without leading or trailing dot (it is \"${cfg.baseDomain}\").";
      }
      {
        # headscale's own rule (hscontrol/types/config.go, isSafeServerURL).
        assertion = serverHost != cfg.baseDomain && !lib.hasSuffix ".${cfg.baseDomain}" serverHost;
        message = ''
          services.headscale-server: the server's name ${serverHost} (from serverUrl) is equal to or
          under the MagicDNS base domain ${cfg.baseDomain}. Clients would ask MagicDNS for the
          server's own name and lose the control server and its DERP relay, and headscale refuses
          to start. Choose a base domain that does not contain the server's name, e.g.
          tailnet.example.com for a server at headscale.example.com.
        '';
      }
      {
        assertion = (cfg.tls.certFile == null) == (cfg.tls.keyFile == null);
        message = "services.headscale-server: set both tls.certFile and tls.keyFile, or neither (TLS terminated by a reverse proxy).";
      }
      {
        assertion = lib.all (file: file == null || (lib.hasPrefix "/" file && !isStorePath file)) [
          cfg.tls.certFile
          cfg.tls.keyFile
        ];
        message = "services.headscale-server: tls.certFile and tls.keyFile must be absolute paths outside the Nix store (anyone can read the store).";
      }
      {
        assertion = cfg.derp.enable -> lib.hasPrefix "https://" cfg.serverUrl;
        message = "services.headscale-server: the embedded DERP relay (derp.enable) needs an https:// serverUrl: clients speak DERP over TLS only.";
      }
      {
        assertion = cfg.derp.enable || cfg.derp.usePublicDerpMap;
        message = ''
          services.headscale-server: with neither derp.enable nor derp.usePublicDerpMap, clients get
          no DERP relay at all, and peers that cannot reach each other directly never connect.
        '';
      }
    ]
    # Read from the final settings, so that a value set through services.headscale.settings
    # directly is judged too.
    ++ map (listener: {
      assertion =
        cfg.allowWideListeners || !listensWide (config.services.headscale.settings.${listener.setting} or null);
      message = ''
        services.headscale-server: headscale's ${listener.setting} is "${
          toString (config.services.headscale.settings.${listener.setting} or "")
        }", which listens on every interface and serves ${listener.what}. Set
        services.headscale-server.${listener.option} to a loopback or private address
        (e.g. ${listener.example}), or set services.headscale-server.allowWideListeners = true
        if a firewall keeps that port from clients and the internet.
      '';
    }) adminListeners;

    services.headscale = {
      enable = true;
      package = cfg.package;
      address = cfg.listenAddress;
      port = cfg.port;
      settings = {
        server_url = cfg.serverUrl;
        metrics_listen_addr = cfg.metricsListenAddress;
        grpc_listen_addr = cfg.grpcListenAddress;
        # The same value under 0.27/0.28's key and 0.29's (support/src/releases.rs,
        # node_settings): each release reads its own and ignores or tolerates the other.
        ephemeral_node_inactivity_timeout = cfg.ephemeralInactivityTimeout;
        node.ephemeral.inactivity_timeout = cfg.ephemeralInactivityTimeout;
        tls_cert_path = cfg.tls.certFile;
        tls_key_path = cfg.tls.keyFile;
        dns = {
          magic_dns = cfg.magicDns;
          base_domain = cfg.baseDomain;
          override_local_dns = cfg.nameservers != [ ];
          nameservers.global = cfg.nameservers;
        };
        derp = {
          server = {
            enabled = cfg.derp.enable;
            region_id = cfg.derp.regionId;
            region_code = cfg.derp.regionCode;
            region_name = cfg.derp.regionName;
            stun_listen_addr = cfg.derp.stunListenAddress;
            automatically_add_embedded_derp_region = true;
            ipv4 = lib.mkIf (cfg.derp.ipv4 != null) cfg.derp.ipv4;
          };
          urls = lib.optional cfg.derp.usePublicDerpMap "https://controlplane.tailscale.com/derpmap/default";
          auto_update_enabled = cfg.derp.usePublicDerpMap;
        };
        log.level = cfg.logLevel;
        # Nothing of the mesh leaves it: no log uploads to Tailscale Inc.
        logtail.enabled = false;
      };
    };

    networking.firewall = lib.mkIf cfg.openFirewall {
      allowedTCPPorts = [ cfg.port ];
      allowedUDPPorts = lib.optional cfg.derp.enable stunPort;
    };
  };
}
