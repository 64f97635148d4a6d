{
  description = "Headscale mesh suite: NixOS modules for a headscale server and its Tailscale clients, and the lab's NixOS hosts";

  # A stable NixOS release. The headscale and tailscale it carries are not the versions the
  # other backends pin (support/src/tools.rs); each run reports the ones it used.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};

      # The repository's topology.json: the same hosts, subnets and names as the Rust harness.
      topology = import ./lib/topology.nix;

      # A lab host: the production modules, configured from topology.json, plus what makes it
      # a lab VM (the seed disk, the common profile, the boot folder).
      labSystem =
        host:
        lib.nixosSystem {
          specialArgs = {
            labTopology = topology;
            labHost = host;
          };
          modules = [
            self.nixosModules.headscale-server
            self.nixosModules.tailscale-client
            self.nixosModules.lab-seed
            ./lab/profile.nix
            ./lab/host.nix
            ./lab/image.nix
            { nixpkgs.hostPlatform = system; }
          ];
        };

      forHosts = f: lib.listToAttrs (map (host: lib.nameValuePair host.name (f host)) topology.hosts);

      # Whether a NixOS configuration made of the lab profile and `modules` evaluates: a failed
      # assertion makes its toplevel throw.
      evaluates =
        modules:
        (builtins.tryEval
          (lib.nixosSystem {
            modules = [
              self.nixosModules.default
              self.nixosModules.lab-seed
              ./lab/profile.nix
              { nixpkgs.hostPlatform = system; }
            ]
            ++ modules;
          }).config.system.build.toplevel.drvPath
        ).success;
    in
    {
      nixosModules = {
        headscale-server = ./modules/headscale-server.nix;
        tailscale-client = ./modules/tailscale-client.nix;
        # Lab-only: applies the harness's per-run seed disk at boot.
        lab-seed = ./modules/lab-seed.nix;
        default = {
          imports = [
            self.nixosModules.headscale-server
            self.nixosModules.tailscale-client
          ];
        };
      };

      # One configuration a host of topology.json: headscale, client-1 … client-4.
      nixosConfigurations = forHosts labSystem;

      # What the libvirt backend boots (MESH_IMAGES=nix): a folder with kernel, initrd,
      # disk.qcow2, cmdline and versions.json a host (see lab/image.nix).
      packages.${system} = lib.mapAttrs' (
        name: nixos: lib.nameValuePair "lab-${name}" nixos.config.system.build.labBoot
      ) self.nixosConfigurations;

      # `nix flake check`: every host evaluates (nixosConfigurations), and the modules refuse
      # what they must.
      checks.${system}.module-assertions =
        let
          server = settings: {
            services.headscale-server = {
              enable = true;
              serverUrl = "https://headscale.example.com";
            }
            // settings;
          };
          client = settings: { services.tailscale-client = { enable = true; } // settings; };
        in
        assert evaluates [ (server { baseDomain = "tailnet.example.com"; }) ];
        assert !evaluates [ (server { baseDomain = "example.com"; }) ];
        assert !evaluates [ (server { baseDomain = "headscale.example.com"; }) ];
        # headscale's admin listeners: loopback by default; every interface only when asked.
        assert !evaluates [ (server { baseDomain = "tailnet.example.com"; metricsListenAddress = "0.0.0.0:9090"; }) ];
        assert !evaluates [ (server { baseDomain = "tailnet.example.com"; grpcListenAddress = "[::]:50443"; }) ];
        assert !evaluates [
          (server { baseDomain = "tailnet.example.com"; })
          { services.headscale.settings.metrics_listen_addr = lib.mkForce ":9090"; }
        ];
        assert evaluates [
          (server {
            baseDomain = "tailnet.example.com";
            metricsListenAddress = "0.0.0.0:9090";
            allowWideListeners = true;
          })
        ];
        assert evaluates [ (client { loginServer = "https://headscale.example.com"; authKeyFile = "/run/secrets/key"; }) ];
        assert !evaluates [ (client { authKeyFile = "/run/secrets/key"; }) ];
        assert !evaluates [ (client { loginServer = "https://headscale.example.com"; authKeyFile = "${pkgs.hello}/key"; }) ];
        pkgs.runCommand "module-assertions" { } "touch $out";

      # Everything `cargo test` needs on a Nix machine. The VM tier also needs libvirt's daemon
      # running: on NixOS, virtualisation.libvirtd.enable = true.
      devShells.${system}.default = pkgs.mkShell {
        nativeBuildInputs = with pkgs; [
          cargo
          rustc
          rustfmt
          clippy
          go
          pkg-config
          # The netns backend and the scenarios.
          iproute2
          nftables
          util-linux
          procps
          iputils
          tcpdump
          nginx
          curl
          dnsutils
          netcat-openbsd
          # The VM tier (libvirt backend).
          qemu
          libvirt
          e2fsprogs
          openssh
        ];
        # C libraries of the `libvirt` feature's crates (virt, ssh2).
        buildInputs = with pkgs; [
          libvirt
          openssl
          zlib
        ];
      };
    };
}
