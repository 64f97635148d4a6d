# The lab's topology as Nix reads it: the repository's topology.json, the same file the Rust
# harness reads (support/src/spec.rs), with each host's default address worked out from its
# host number within its subnet's default CIDR.
#
# These addresses are the defaults only. The harness may move the subnets at run time
# (MESH_SUBNET_A, MESH_SUBNET_B); a lab VM takes the address it really uses from its seed disk
# at boot (modules/lab-seed.nix), never from here.
#
# Builtins only, no nixpkgs: `nix-instantiate --eval --strict --json nix/lib/topology.nix`
# works anywhere, and a Rust test compares its answer with the harness's own.
let
  file = builtins.fromJSON (builtins.readFile ../../topology.json);

  fail = message: throw "topology.json: ${message}";

  splitOn = separator: text: builtins.filter builtins.isString (builtins.split separator text);

  # Decimal text to an integer ("010" is refused, as JSON refuses it).
  toInt =
    text:
    let
      value = builtins.fromJSON text;
    in
    if builtins.isInt value then value else fail "${text} is not a whole number";

  mod = n: m: n - (n / m) * m;

  # "192.168.1.0" -> 3232235776
  ipToInt =
    ip:
    let
      octets = map toInt (splitOn "\\." ip);
    in
    if builtins.length octets == 4 && builtins.all (o: o >= 0 && o <= 255) octets then
      builtins.foldl' (acc: octet: acc * 256 + octet) 0 octets
    else
      fail "${ip} is not an IPv4 address";

  # 3232235781 -> "192.168.1.5"
  intToIp =
    n:
    builtins.concatStringsSep "." (
      map (unit: toString (mod (n / unit) 256)) [
        16777216
        65536
        256
        1
      ]
    );

  parseCidr =
    cidr:
    let
      parts = splitOn "/" cidr;
    in
    if builtins.length parts == 2 then
      {
        network = builtins.elemAt parts 0;
        prefixLength = toInt (builtins.elemAt parts 1);
      }
    else
      fail "${cidr} is not an IPv4 CIDR";

  # The n-th address of a subnet: its network address plus n.
  nthAddress = cidr: n: intToIp (ipToInt (parseCidr cidr).network + n);

  subnets = builtins.listToAttrs (
    map (subnet: {
      name = subnet.name;
      value =
        subnet
        // {
          inherit (parseCidr subnet.default_cidr) network prefixLength;
          router = nthAddress subnet.default_cidr subnet.router_host;
        };
    }) file.subnets
  );

  hosts = map (
    host:
    let
      subnet = subnets.${host.subnet} or (fail "host ${host.name} is on subnet ${host.subnet}, which is not one of the lab's");
    in
    {
      joins_later = false;
    }
    // host
    // {
      address = nthAddress subnet.default_cidr host.host_number;
      inherit (subnet) prefixLength;
    }
  ) file.hosts;

  servers = builtins.filter (host: host.role == "server") hosts;
in
if builtins.length servers != 1 then
  fail "a lab has exactly one host with role \"server\""
else
  {
    inherit (file) server_name base_domain user;
    inherit subnets hosts;

    # The URL every client logs in to: headscale's server_url.
    serverUrl = "https://${file.server_name}";

    server = builtins.head servers;

    hostsByName = builtins.listToAttrs (
      map (host: {
        name = host.name;
        value = host;
      }) hosts
    );
  }
