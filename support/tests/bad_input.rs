//! Bad input to `cargo mesh`: each is one line naming the cause and the fix, a non-zero exit,
//! no panic, and nothing left behind. These drive the real `mesh` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn mesh(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mesh"));
    cmd.args(args)
        .env_remove("MESH_LAB")
        .env_remove("MESH_BACKEND")
        .env_remove("MESH_SUBNET_A")
        .env_remove("MESH_SUBNET_B")
        .env_remove("MESH_HEADSCALE_VERSION")
        .env_remove("MESH_TAILSCALE_VERSION")
        .env_remove("MESH_CLIENT_VERSIONS")
        .env_remove("MESH_UPGRADE_FROM")
        .env_remove("MESH_POLICY")
        .env_remove("MESH_NODES")
        .env_remove("MESH_HEADSCALE_CONFIG")
        .env_remove("MESH_DATABASE")
        .env_remove("MESH_PRIORITIES");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the mesh binary runs")
}

/// Where built releases are cached (`MESH_TOOLS_DIR`, else the checkout's `target/mesh-tools`).
fn tools_dir() -> PathBuf {
    match std::env::var_os("MESH_TOOLS_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/mesh-tools"),
    }
}

/// Namespaces of this tool on the machine right now.
fn our_namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| n.starts_with("mesh-")).collect())
        .unwrap_or_default()
}

/// The command failed with one `mesh: error:` line containing every `says`, and left nothing.
fn assert_refused(out: &Output, says: &[&str], before: &[String]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        // It built a lab it should have refused: remove that lab before failing.
        let stdout = String::from_utf8_lossy(&out.stdout);
        if let Some(id) = stdout.split("lab ").nth(1).and_then(|r| r.split_whitespace().next()) {
            let _ = Command::new(env!("CARGO_BIN_EXE_mesh")).args(["down", id]).status();
        }
        panic!("expected a non-zero exit; it succeeded: {stdout}\n{stderr}");
    }
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("mesh: error:")).collect();
    assert_eq!(errors.len(), 1, "expected exactly one error line; stderr: {stderr}");
    for s in says {
        assert!(errors[0].contains(s), "expected the error to say {s:?}; it says: {}", errors[0]);
    }
    assert!(!stderr.contains("panicked") && !stderr.contains("stack backtrace"), "a panic instead of an error: {stderr}");
    // Nothing of a lab was begun: no run id claimed (its line comes before the first piece of
    // a lab exists), and no namespace that was not there before, other than those of labs the
    // index lists — other tests' labs, built and removed meanwhile (nextest runs tests side by
    // side), are theirs.
    assert!(!stderr.contains("building lab "), "the refused command began to build a lab: {stderr}");
    let indexed: Vec<String> = std::fs::read_dir("/run/mesh-lab")
        .map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    let new: Vec<String> = our_namespaces()
        .into_iter()
        .filter(|n| !before.contains(n) && !indexed.iter().any(|id| n.starts_with(&format!("mesh-{id}-"))))
        .collect();
    assert_eq!(new, Vec::<String>::new(), "the refused command left namespaces behind");
}

#[test]
fn an_unknown_backend_is_refused_with_the_valid_names() {
    let before = our_namespaces();
    let out = mesh(&["up", "--backend", "kvm-magic"], &[]);
    assert_refused(&out, &["unknown backend \"kvm-magic\"", "netns"], &before);
    let out = mesh(&["check"], &[("MESH_BACKEND", "nope")]);
    assert_refused(&out, &["unknown backend \"nope\"", "MESH_BACKEND"], &before);
}

#[test]
fn invalid_and_overlapping_subnets_are_refused_with_the_fix() {
    let before = our_namespaces();
    let out = mesh(&["up", "--subnet-a", "192.168.1.0/24", "--subnet-b", "192.168.0.0/16"], &[]);
    assert_refused(&out, &["overlap", "MESH_SUBNET_A"], &before);
    let out = mesh(&["up", "--subnet-a", "192.168.1/24"], &[]);
    assert_refused(&out, &["not an IPv4 subnet", "e.g."], &before);
    let out = mesh(&["check"], &[("MESH_SUBNET_B", "10.0.0.9/24")]);
    assert_refused(&out, &["did you mean 10.0.0.0/24"], &before);
}

#[test]
fn a_binary_of_the_wrong_version_is_refused_naming_both_versions() {
    let before = our_namespaces();
    let dir = std::env::temp_dir().join(format!("mesh-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = dir.join("headscale");
    std::fs::write(&fake, "#!/bin/sh\necho 'headscale version v0.22.0'\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = mesh(&["up"], &[("MESH_HEADSCALE_BIN", fake.to_str().unwrap())]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_refused(&out, &["0.22.0", "0.29.3", "unset MESH_HEADSCALE_BIN"], &before);
}

#[test]
fn a_malformed_version_is_refused_naming_the_form_it_takes() {
    let before = our_namespaces();
    let out = mesh(&["up", "--headscale-version", "0.27"], &[]);
    assert_refused(&out, &["MESH_HEADSCALE_VERSION=\"0.27\"", "not a release number", "0.27.1 or v0.27.1"], &before);
    for bad in ["v1.90", "1.90.9-rc1", "latest"] {
        let out = mesh(&["check"], &[("MESH_TAILSCALE_VERSION", bad)]);
        assert_refused(&out, &["MESH_TAILSCALE_VERSION", bad, "not a release number"], &before);
    }
}

/// The release table has no row for the series: refused before anything is fetched.
#[test]
fn a_headscale_series_the_harness_does_not_know_is_refused_with_the_ones_it_does() {
    let before = our_namespaces();
    let out = mesh(&["up", "--headscale-version", "0.26.1"], &[]);
    assert_refused(&out, &["headscale 0.26.1", "0.27.x, 0.28.x, 0.29.x", "support/src/releases.rs"], &before);
}

/// A client older than the server lets in is named before anything is built.
#[test]
fn a_client_outside_the_servers_window_is_refused_with_the_window() {
    let before = our_namespaces();
    let started = Instant::now();
    let out = mesh(&["up", "--tailscale-version", "1.78.1"], &[]);
    assert_refused(&out, &["tailscale 1.78.1", "headscale 0.29.3", "1.80 and newer", "MESH_TAILSCALE_VERSION"], &before);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("go install"), "it started building first");
    assert!(started.elapsed() < Duration::from_secs(10), "it took {:?}", started.elapsed());
}

/// A release the Go module proxy does not serve: go says so at once; nothing of the attempt
/// stays in the tools' cache. (Asks the real proxy, as every build does.)
#[test]
fn a_release_the_proxy_does_not_serve_fails_within_seconds() {
    let before = our_namespaces();
    let started = Instant::now();
    let out = mesh(&["up", "--headscale-version", "0.29.9"], &[]);
    assert_refused(&out, &["headscale 0.29.9 is not served by the Go module proxy", "pick a release it serves"], &before);
    assert!(started.elapsed() < Duration::from_secs(30), "it took {:?} to say so", started.elapsed());
    let left: Vec<_> = std::fs::read_dir(tools_dir())
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.contains("@v0.29.9")).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "the attempt left {left:?} in {}", tools_dir().display());
}

/// A release that requires a newer Go than the machine's gets the toolchain go names, and says
/// so: tailscale 1.104.0 requires Go 1.27.1 (served), and then a gvisor version it needs is
/// not served (2026-12), which the error names.
#[test]
fn a_release_needing_a_newer_go_gets_that_toolchain_and_names_what_then_fails() {
    let before = our_namespaces();
    let out = mesh(&["up", "--tailscale-version", "1.104.0"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("requires Go 1.27.1") && stderr.contains("GOTOOLCHAIN=go1.27.1"), "no toolchain said: {stderr}");
    assert_refused(&out, &["tailscale 1.104.0 cannot be built here", "dependency gvisor.dev/gvisor@"], &before);
}

/// Clients of their own releases: an unknown host, a pair without `=`, a bad version, and a
/// client outside the server's window are each refused before anything is built.
#[test]
fn malformed_client_versions_are_refused_naming_the_fix() {
    let before = our_namespaces();
    for (value, says) in [
        ("client-9=1.80.3", &["\"client-9\"", "not a client of the lab", "client-1, client-2, client-3, client-4"][..]),
        ("client-1:1.80.3", &["has no '='", "client-1=1.80.3,client-2=1.98.10"][..]),
        ("client-2=1.98", &["\"1.98\" is not a release number"][..]),
        ("client-1=1.80.3,client-1=1.90.9", &["names client-1 twice"][..]),
        ("client-3=1.78.1", &["client-3's tailscale 1.78.1", "1.80 and newer"][..]),
    ] {
        let out = mesh(&["up"], &[("MESH_CLIENT_VERSIONS", value)]);
        assert_refused(&out, says, &before);
        assert!(!String::from_utf8_lossy(&out.stderr).contains("go install"), "{value}: it started building first");
    }
}

/// `cargo mesh matrix --combos`: checked whole before any release is built or any lab made.
#[test]
fn bad_matrix_combinations_are_refused_before_anything_is_built() {
    let before = our_namespaces();
    for (value, says) in [
        ("0.29.3", &["\"0.29.3\" has no '/'", "HEADSCALE/TAILSCALE"][..]),
        ("0.29.3/1.98", &["\"1.98\" is not a release number"][..]),
        ("0.26.1/1.90.9", &["headscale 0.26.1", "0.27.x, 0.28.x, 0.29.x"][..]),
        ("0.29.3/1.98.10+1.78.1", &["client-2's tailscale 1.78.1", "1.80 and newer"][..]),
        ("0.29.3/1.80.3+1.80.3+1.80.3+1.80.3+1.80.3", &["the lab has 4 clients"][..]),
        ("0.29.3/1.80.3,0.29.3/1.80.3", &["names 0.29.3/1.80.3 twice"][..]),
    ] {
        let out = mesh(&["matrix", "--combos", value], &[]);
        assert_refused(&out, says, &before);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("go install") && !stderr.contains("cargo test"), "{value}: it started building first");
    }
    let out = mesh(&["matrix"], &[("MESH_UPGRADE_FROM", "0.27.1")]);
    assert_refused(&out, &["MESH_UPGRADE_FROM=0.27.1 is not older than 0.27.1/1.90.9's headscale"], &before);
    let out = mesh(&["matrix", "--combos", "0.29.3/1.98.10"], &[("MESH_HEADSCALE_BIN", "/usr/bin/true")]);
    assert_refused(&out, &["MESH_HEADSCALE_BIN is set", "unset MESH_HEADSCALE_BIN"], &before);
}

/// The upgrade rehearsal's "from" must be older than the headscale it upgrades to.
#[test]
fn an_upgrade_from_a_release_not_older_than_the_target_is_refused() {
    let before = our_namespaces();
    for (env, says) in [
        (&[("MESH_UPGRADE_FROM", "0.29.3")][..], &["MESH_UPGRADE_FROM=0.29.3 is not older", "(0.29.3,"][..]),
        (&[("MESH_UPGRADE_FROM", "0.29.3"), ("MESH_HEADSCALE_VERSION", "0.27.1")][..], &["not older", "(0.27.1,"][..]),
        (&[("MESH_UPGRADE_FROM", "0.26.1")][..], &["MESH_UPGRADE_FROM=0.26.1", "0.27.x, 0.28.x, 0.29.x"][..]),
        (&[("MESH_UPGRADE_FROM", "0.27")][..], &["MESH_UPGRADE_FROM=\"0.27\" is not a release number"][..]),
    ] {
        for command in ["check", "up"] {
            let out = mesh(&[command], env);
            assert_refused(&out, says, &before);
            assert!(!String::from_utf8_lossy(&out.stderr).contains("go install"), "{env:?}: it started building first");
        }
    }
}

#[test]
fn a_missing_binary_is_refused_naming_the_variable() {
    let before = our_namespaces();
    let out = mesh(&["up"], &[("MESH_HEADSCALE_BIN", "/nonexistent/headscale")]);
    assert_refused(&out, &["MESH_HEADSCALE_BIN=/nonexistent/headscale: no such file", "unset it"], &before);
}

/// As a normal user (here `nobody`, with no folder it may write) the error names what is
/// missing and the fix: user namespaces (a sysctl, or root), a usable /dev/net/tun, a program
/// (its package), or the labs' folder (MESH_STATE_DIR), whichever this machine lacks first.
#[test]
fn without_root_the_error_says_what_is_needed() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: this test drops root to run as another user; it runs as root");
        return;
    }
    assert!(Path::new("/usr/bin/setpriv").exists(), "this test drops root with setpriv: install util-linux");
    let before = our_namespaces();
    let out = Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_mesh"), "up"])
        .env_remove("MESH_LAB")
        .env("MESH_STATE_DIR", "/proc/mesh-labs")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let fixes = ["sudo ", "chmod 0666 /dev/net/tun", "modprobe tun", "MESH_STATE_DIR"];
    let fix = fixes.iter().find(|f| stderr.contains(**f)).unwrap_or_else(|| panic!("no fix named ({fixes:?}): {stderr}"));
    assert_refused(&out, &[fix], &before);
}

#[test]
fn naming_a_lab_that_does_not_exist_says_how_to_find_the_real_ones() {
    let before = our_namespaces();
    let out = mesh(&["down", "no-such-lab"], &[]);
    assert_refused(&out, &["no running lab \"no-such-lab\"", "cargo mesh status"], &before);
}

#[test]
fn bad_tuning_values_are_refused_naming_what_they_take() {
    let before = our_namespaces();
    for (var, value, says) in [
        ("MESH_TIME_SCALE", "-2", "positive number"),
        ("MESH_TIME_SCALE", "fast", "positive number"),
        ("MESH_SOAK", "forever", "10s, 15m or 1h"),
        ("MESH_VERBOSE", "yes", "set it to 1"),
        ("MESH_ALLOW_VERSION_MISMATCH", "true", "set it to 1"),
        ("MESH_IMAGES", "ubuntu", "debian, nix"),
        ("MESH_ACCEL", "kvm-please", "tcg"),
        ("MESH_LIBVIRT_URI", "localhost", "qemu:///system"),
        ("MESH_DATABASE", "mysql", "sqlite, postgres"),
        ("MESH_PRIORITIES", "7-0", "0-7 or 0,1,5"),
    ] {
        let out = mesh(&["up"], &[(var, value)]);
        assert_refused(&out, &[var, value, says], &before);
    }
}

/// A build without the VM backend says how to get one.
#[cfg(not(feature = "libvirt"))]
#[test]
fn the_vm_backend_names_the_feature_that_builds_it() {
    let before = our_namespaces();
    let out = mesh(&["check"], &[("MESH_BACKEND", "libvirt")]);
    assert_refused(&out, &["no libvirt backend", "--features libvirt", "libvirt-dev"], &before);
}

/// libvirt out of reach: the error says so within the connect budget, and nothing of the lab
/// (router namespace, networks, VMs) is left.
#[cfg(feature = "libvirt")]
#[test]
fn an_unreachable_libvirt_is_named_with_how_to_start_it() {
    let before = our_namespaces();
    let started = std::time::Instant::now();
    let uri = "qemu+unix:///system?socket=/nonexistent/libvirt-sock";
    let out = mesh(&["up"], &[("MESH_BACKEND", "libvirt"), ("MESH_LIBVIRT_URI", uri)]);
    assert_refused(&out, &["cannot connect to libvirt", uri], &before);
    assert!(started.elapsed() < std::time::Duration::from_secs(120), "it took {:?} to give up", started.elapsed());
}

/// A policy file of the test's own, removed with the value.
struct PolicyFile(PathBuf);

impl PolicyFile {
    fn new(name: &str, text: &str) -> PolicyFile {
        let dir = std::env::temp_dir().join(format!("mesh-bad-policy-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.hujson"));
        std::fs::write(&path, text).unwrap();
        PolicyFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for PolicyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
    }
}

#[test]
fn an_unreadable_or_invalid_policy_is_refused_naming_the_file() {
    let before = our_namespaces();
    let out = mesh(&["check"], &[("MESH_POLICY", "/nonexistent/policy.hujson")]);
    assert_refused(&out, &["MESH_POLICY=/nonexistent/policy.hujson cannot be read", "No such file"], &before);
    let broken = PolicyFile::new("broken", "// a policy\n{ \"acls\": [ { \"action\": \"accept\" \"src\": [] } ] }\n");
    let out = mesh(&["up", "--policy", broken.path()], &[]);
    assert_refused(&out, &["is not a HuJSON policy", "line 2", broken.path()], &before);
    let list = PolicyFile::new("list", "[]");
    let out = mesh(&["check"], &[("MESH_POLICY", list.path())]);
    assert_refused(&out, &["is not a policy", "top level"], &before);
}

#[test]
fn mesh_nodes_naming_an_unknown_host_or_a_user_the_policy_lacks_is_refused() {
    let before = our_namespaces();
    let out = mesh(&["check"], &[("MESH_NODES", "client-9=alice")]);
    assert_refused(&out, &["MESH_NODES", "client-9", "not a client of the lab", "client-1, client-2, client-3"], &before);
    let out = mesh(&["up", "--nodes", "client-2=carol"], &[]);
    assert_refused(&out, &["client-2 the user carol", "the built-in policy does not name", "alice, bob"], &before);
    let out = mesh(&["check"], &[("MESH_NODES", "client-3=tag:db")]);
    assert_refused(&out, &["tag:db", "tagOwners", "tag:server"], &before);
    let out = mesh(&["check"], &[("MESH_NODES", "client-1:alice")]);
    assert_refused(&out, &["has no '='", "client-1=alice,client-2=bob,client-3=tag:server"], &before);
    // A user's policy without MESH_NODES: the built-in mapping does not fit it, and the fix says so.
    let theirs =
        PolicyFile::new("theirs", "{ \"acls\": [ { \"action\": \"accept\", \"src\": [\"dave@\"], \"dst\": [\"erin@:22\"] } ] }");
    let out = mesh(&["check"], &[("MESH_POLICY", theirs.path())]);
    assert_refused(&out, &["built-in mapping", "the user alice", "dave, erin", "MESH_NODES"], &before);
}

/// headscale itself judges the policy on this machine before anything of a lab exists, and its
/// own error is the one line.
#[test]
fn a_policy_headscale_rejects_stops_the_run_before_any_lab_exists() {
    let before = our_namespaces();
    let typo =
        PolicyFile::new("typo", "{ \"acls\": [ { \"action\": \"accpt\", \"src\": [\"alice@\"], \"dst\": [\"bob@:22\"] } ] }");
    let started = Instant::now();
    let out = mesh(&["check"], &[("MESH_POLICY", typo.path()), ("MESH_NODES", "client-1=alice,client-2=bob,client-3=alice")]);
    assert_refused(&out, &["headscale 0.29.3 rejects", typo.path(), "accpt", "invalid ACL action"], &before);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("cargo test --no-run"), "it built the scenario tests first");
    assert!(started.elapsed() < Duration::from_secs(30), "it took {:?}", started.elapsed());
    let out = mesh(&["up", "--policy", typo.path(), "--nodes", "client-1=alice,client-2=bob,client-3=bob"], &[]);
    assert_refused(&out, &["rejects", "accpt"], &before);
    // A malformed tests block is headscale 0.29's to reject too (it would not start on it).
    let tests = PolicyFile::new(
        "tests",
        "{ \"acls\": [ { \"action\": \"accept\", \"src\": [\"alice@\"], \"dst\": [\"bob@:22\"] } ],\n  \"tests\": [ { \"src\": \"alice@\", \"proto\": \"icmp\", \"accept\": [\"bob@:22\"] } ] }",
    );
    let out = mesh(&["check"], &[("MESH_POLICY", tests.path()), ("MESH_NODES", "client-1=alice,client-2=bob,client-3=bob")]);
    assert_refused(&out, &["rejects", "test protocol must be tcp, udp, sctp, or empty"], &before);
}

/// The user's headscale configuration (`MESH_HEADSCALE_CONFIG`, `--headscale-config`): a file
/// that cannot be read, is not YAML, gives prefixes that are not IP prefixes, or names
/// a database headscale does not know is one line naming the file, the cause and the fix,
/// before anything is built.
#[test]
fn an_unreadable_or_invalid_headscale_config_is_refused_naming_the_file_and_the_fix() {
    let before = our_namespaces();
    let out = mesh(&["check"], &[("MESH_HEADSCALE_CONFIG", "/nonexistent/config.yaml")]);
    assert_refused(&out, &["MESH_HEADSCALE_CONFIG=/nonexistent/config.yaml cannot be read", "No such file"], &before);
    let broken = PolicyFile::new("config-broken", "server_url: https://hs.example.com\ndns:\n  base_domain: [unclosed\n");
    let out = mesh(&["up", "--headscale-config", broken.path()], &[]);
    assert_refused(&out, &[broken.path(), "is not a YAML (or JSON) headscale configuration", "line 3"], &before);
    let list = PolicyFile::new("config-list", "- server_url\n");
    let out = mesh(&["bench", "--headscale-config", list.path()], &[]);
    assert_refused(&out, &["its top level is not a mapping"], &before);
    let prefixes = PolicyFile::new("config-prefixes", "prefixes:\n  v4: 100.80.0.0/16\n  v6: fd7a:115c:a1e0:80::/200\n");
    let out = mesh(&["check", "--headscale-config", prefixes.path()], &[]);
    assert_refused(&out, &["prefixes.v6 is \"fd7a:115c:a1e0:80::/200\", which is not an IPv6 prefix"], &before);
    let mysql = PolicyFile::new("config-mysql", "database:\n  type: mysql\n");
    let out = mesh(&["check"], &[("MESH_HEADSCALE_CONFIG", mysql.path())]);
    assert_refused(&out, &["database.type is \"mysql\"", "which headscale does not know", "use sqlite, or postgres"], &before);
    let out = mesh(&["tools", "--headscale-config", mysql.path()], &[]);
    assert_refused(&out, &["database.type is \"mysql\""], &before);
}

/// PostgreSQL runs inside a netns host: asked for on VMs (by the variable, or by the user's
/// configuration), it is refused before anything is built, naming the way out.
#[cfg(feature = "libvirt")]
#[test]
fn postgres_on_vms_is_refused_naming_the_backend_it_runs_on() {
    let before = our_namespaces();
    let out = mesh(&["up", "--database", "postgres"], &[("MESH_BACKEND", "libvirt")]);
    assert_refused(&out, &["MESH_DATABASE=postgres runs on the netns backend only", "MESH_BACKEND=netns"], &before);
    let postgres = PolicyFile::new("config-postgres", "database:\n  type: postgres\n");
    let out = mesh(&["check", "--headscale-config", postgres.path()], &[("MESH_BACKEND", "libvirt")]);
    assert_refused(&out, &["MESH_DATABASE=postgres runs on the netns backend only"], &before);
}

/// A configuration of the user's that headscale itself refuses (here 0.29's removed
/// `randomize_client_port`) stops the run before any lab exists, with headscale's own words.
#[test]
fn a_headscale_config_headscale_refuses_stops_the_run_before_any_lab_exists() {
    let before = our_namespaces();
    let old = PolicyFile::new("config-old-key", "prefixes: { v4: 100.80.0.0/16 }\nrandomize_client_port: true\n");
    let started = Instant::now();
    let out = mesh(&["check"], &[("MESH_HEADSCALE_CONFIG", old.path())]);
    assert_refused(&out, &["headscale 0.29.3 refuses", old.path(), "randomize_client_port", "has been removed"], &before);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("cargo test --no-run"), "it built the scenario tests first");
    assert!(started.elapsed() < Duration::from_secs(30), "it took {:?}", started.elapsed());
    let out = mesh(&["up", "--headscale-config", old.path()], &[]);
    assert_refused(&out, &["refuses", "randomize_client_port"], &before);
}
