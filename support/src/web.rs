//! A web service bound to the mesh alone: nginx on a client, listening only on its tailnet
//! addresses, and curl to fetch from it.
//!
//! nginx binds addresses that exist only while tailscaled runs. The host allows binding
//! addresses it does not have yet (`net.ipv4.ip_nonlocal_bind`, `net.ipv6.ip_nonlocal_bind`),
//! so nginx starts before the mesh is up and keeps its sockets across a mesh restart.

use crate::backend::Host;
use crate::exec::Output;
use crate::lab::Lab;
use crate::{budget, sockets};
use anyhow::Result;
use std::time::Duration;

pub const SERVICE: &str = "nginx";
pub const PORT: u16 = 80;
const CONFIG: &str = "/etc/nginx/mesh-lab.conf";

/// The page a client's nginx serves: says who served it, for which lab.
pub fn page(lab: &Lab, host: &str) -> String {
    format!("served by {host} over the mesh, lab {}", lab.record.run_id)
}

/// nginx configuration listening on `addresses` only, answering every request with `body`.
/// Its workers drop to nginx's default user, except where the host's root is a normal user
/// ([`Host::root_is_unprivileged`]): no other user exists there, and they stay that root.
pub fn config(addresses: &[String], body: &str, root_is_unprivileged: bool) -> String {
    let listen: String = addresses
        .iter()
        .map(|a| if a.contains(':') { format!("    listen [{a}]:{PORT};\n") } else { format!("    listen {a}:{PORT};\n") })
        .collect();
    let user = if root_is_unprivileged { "user root root;\n" } else { "" };
    format!(
        "# written by the mesh suite: a page served on the tailnet addresses alone\n{user}\
         worker_processes 1;\npid /run/nginx-mesh/nginx.pid;\nerror_log stderr;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log /dev/stdout;\n\
           client_body_temp_path /run/nginx-mesh/body;\n  proxy_temp_path /run/nginx-mesh/proxy;\n\
           fastcgi_temp_path /run/nginx-mesh/fastcgi;\n  uwsgi_temp_path /run/nginx-mesh/uwsgi;\n  scgi_temp_path /run/nginx-mesh/scgi;\n\
           server {{\n{listen}    default_type text/plain;\n    location / {{ return 200 \"{body}\\n\"; }}\n  }}\n}}\n"
    )
}

/// Make sure `host` serves its page on its tailnet addresses; start nginx if it is not running
/// (several test processes may share one lab).
pub fn ensure_serving(lab: &Lab, host: &str) -> Result<()> {
    let h = lab.host(host)?;
    if h.service_running(SERVICE) {
        return Ok(());
    }
    allow_binding_absent_addresses(h)?;
    h.write_file(CONFIG, config(lab.tailnet_ips(host)?, &page(lab, host), h.root_is_unprivileged()).as_bytes())?;
    start(h)?;
    await_listening(h, lab.tailnet_ips(host)?)
}

/// Start nginx on the configuration already written (also while the mesh is down).
pub fn start(h: &dyn Host) -> Result<()> {
    h.succeed(&["mkdir", "-p", "/run/nginx-mesh"])?;
    let argv: Vec<String> = ["nginx", "-c", CONFIG, "-e", "stderr", "-g", "daemon off;"].iter().map(|s| s.to_string()).collect();
    h.start_service(SERVICE, &argv, &[])
}

pub fn allow_binding_absent_addresses(h: &dyn Host) -> Result<()> {
    h.succeed(&["sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1", "net.ipv6.ip_nonlocal_bind=1"])?;
    Ok(())
}

/// The local addresses listening on the web port, as `ss -ltn` shows them.
pub fn listening_addresses(h: &dyn Host) -> Result<Vec<String>> {
    sockets::listening_addresses(h, PORT)
}

pub fn await_listening(h: &dyn Host, addresses: &[String]) -> Result<()> {
    sockets::await_listening(h, SERVICE, PORT, addresses)
}

/// `curl` from `from`, once, giving up after `limit`: the output whatever happened.
pub fn fetch(from: &dyn Host, url: &str, limit: Duration) -> Result<Output> {
    let max_time = format!("{:.1}", limit.as_secs_f64());
    from.exec(&["curl", "-sS", "-g", "--max-time", &max_time, url], None, limit + budget::command())
}

/// The URL of the web port at `address` (an IPv4, an IPv6 or a name).
pub fn url(address: &str) -> String {
    if address.contains(':') {
        format!("http://[{address}]:{PORT}/")
    } else {
        format!("http://{address}:{PORT}/")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn nginx_listens_on_exactly_the_given_addresses() {
        let conf = super::config(&["100.64.0.1".into(), "fd7a:115c:a1e0::1".into()], "hello", false);
        assert!(conf.contains("listen 100.64.0.1:80;") && conf.contains("listen [fd7a:115c:a1e0::1]:80;"), "{conf}");
        assert_eq!(conf.matches("listen ").count(), 2, "{conf}");
        assert!(!conf.contains("user "), "workers keep nginx's default user as real root: {conf}");
        let conf = super::config(&["100.64.0.1".into()], "hello", true);
        assert!(conf.starts_with("# written by the mesh suite") && conf.contains("\nuser root root;\n"), "{conf}");
        assert_eq!(super::url("fd7a::1"), "http://[fd7a::1]:80/");
    }
}
