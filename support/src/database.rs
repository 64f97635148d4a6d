//! The database headscale keeps its state in: SQLite in its state folder (the default), or a
//! real PostgreSQL server, Debian's package, that the harness starts inside the server host
//! with its data in the lab's folder (`MESH_DATABASE=postgres`), as headscale's own CI runs part
//! of its suite on PostgreSQL.
//!
//! PostgreSQL refuses to run as root, and a lab host's only user is its root (a normal user's
//! lab has no other user at all). So the server runs in a user namespace of its own in which it
//! is the machine's `postgres` user, mapped onto the host's root outside (`unshare --map-user`):
//! its files are the lab's, in the lab's folder. Its own IPC namespace holds its System V shared
//! memory (which would outlive a SIGKILL of the server), and its dynamic shared memory lives in
//! its data folder rather than /dev/shm; it has no Unix socket, only TCP on the server host's
//! own loopback. So whatever removes the host's processes (teardown, the watchdog) and the lab's
//! folder leaves nothing of it behind.

use crate::backend::Host;
use crate::userconfig::UserConfig;
use crate::{budget, poll, prereq, say};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The variable (and `--database`) that picks the database.
pub const VAR: &str = "MESH_DATABASE";
/// The PostgreSQL server's service name on the server host.
pub const SERVICE: &str = "postgres";
/// Where it listens, on the server host's loopback only.
pub const HOST: &str = "127.0.0.1";
pub const PORT: u16 = 5432;
/// headscale's database and the role it logs in as.
pub const NAME: &str = "headscale";
pub const ROLE: &str = "headscale";
/// The role's password: the lab's own, reachable only from inside the server host.
const PASSWORD: &str = "mesh-lab-only";
/// The machine's user the server runs as inside its user namespace (Debian's package makes it).
const SYSTEM_USER: &str = "postgres";

/// Which database headscale runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Database {
    #[default]
    Sqlite,
    Postgres,
}

impl Database {
    pub const NAMES: &'static [&'static str] = &["sqlite", "postgres"];

    pub fn parse(text: &str) -> Result<Database> {
        match text.trim() {
            "" | "sqlite" | "sqlite3" => Ok(Database::Sqlite),
            "postgres" | "postgresql" => Ok(Database::Postgres),
            other => bail!("{VAR}={other:?} is not a database headscale runs on here: use one of {}", Self::NAMES.join(", ")),
        }
    }

    /// `MESH_DATABASE` when set; otherwise the database the user's configuration names
    /// (`database.type: postgres` runs on the lab's PostgreSQL); otherwise SQLite.
    pub fn chosen(user: Option<&UserConfig>) -> Result<Database> {
        match std::env::var(VAR) {
            Ok(v) if !v.trim().is_empty() => Database::parse(&v),
            _ => Ok(match user.and_then(UserConfig::database_type) {
                Some("postgres") => Database::Postgres,
                _ => Database::Sqlite,
            }),
        }
    }

    /// How a person names it.
    pub fn title(&self) -> &'static str {
        match self {
            Database::Sqlite => "SQLite",
            Database::Postgres => "PostgreSQL",
        }
    }

    /// headscale's `database` section for it, its state (SQLite's file) in `state_dir`.
    pub fn config(&self, state_dir: &str) -> Value {
        match self {
            Database::Sqlite => json!({
                "type": "sqlite",
                "sqlite": { "path": format!("{state_dir}/db.sqlite"), "write_ahead_log": true }
            }),
            Database::Postgres => json!({
                "type": "postgres",
                "postgres": {
                    "host": HOST,
                    "port": PORT,
                    "name": NAME,
                    "user": ROLE,
                    "pass": PASSWORD,
                    "ssl": "false",
                    "max_open_conns": 10,
                    "max_idle_conns": 10,
                    "conn_max_idle_time_secs": 3600
                }
            }),
        }
    }
}

/// The PostgreSQL server programs of this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Programs {
    /// The folder with `initdb`, `postgres`, `pg_isready` and `createdb`.
    pub bin: PathBuf,
    /// `postgres --version`'s words: `PostgreSQL 15.18 (Debian 15.18-0+deb12u1)`.
    pub version: String,
}

/// The command that installs the server on Debian, as root.
const INSTALL: &str = "apt-get install -y --no-install-recommends postgresql";

impl Programs {
    /// Find the server's programs: Debian keeps them in /usr/lib/postgresql/<major>/bin (the
    /// newest major wins), other systems on the PATH. As root on Debian the package is
    /// installed when missing; elsewhere the error names the command.
    pub fn ensure() -> Result<Programs> {
        if let Some(found) = Programs::find() {
            return found;
        }
        if !prereq::is_root() {
            bail!(
                "{VAR}=postgres needs PostgreSQL's server (initdb, postgres), which this machine lacks: install it with \
                 `{}` (or your system's postgresql server package), or run as root, which installs it",
                prereq::install_command(&["postgresql"])
            );
        }
        prereq::install(&["postgresql"])?;
        Programs::find().unwrap_or_else(|| bail!("still no PostgreSQL server programs after `{INSTALL}`"))
    }

    /// The programs where this machine has them: `None` where it has none, an error where they
    /// are there but cannot serve (no `postgres` user, a `postgres` that does not run).
    pub fn find() -> Option<Result<Programs>> {
        let bin = newest_debian_bin(Path::new("/usr/lib/postgresql")).or_else(|| {
            std::env::split_paths(&prereq::search_path()).find(|d| d.join("postgres").is_file() && d.join("initdb").is_file())
        })?;
        Some(Programs::at(bin))
    }

    fn at(bin: PathBuf) -> Result<Programs> {
        if nix::unistd::User::from_name(SYSTEM_USER).ok().flatten().is_none() {
            bail!(
                "PostgreSQL's server is here ({}), but the machine has no `{SYSTEM_USER}` user for it to run as (the \
                 server refuses root): Debian's package makes it (`{INSTALL}`), or `useradd --system {SYSTEM_USER}`",
                bin.display()
            );
        }
        let program = bin.join("postgres");
        let out = crate::exec::local(&[&program.display().to_string(), "--version"], budget::command())?;
        let line = out.check().with_context(|| format!("{} --version", program.display()))?.stdout;
        // `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`
        let version = line.trim().trim_start_matches("postgres (PostgreSQL) ").to_string();
        Ok(Programs { bin, version: format!("PostgreSQL {version}") })
    }

    fn program(&self, name: &str) -> String {
        self.bin.join(name).display().to_string()
    }
}

/// `/usr/lib/postgresql/<major>/bin` of the newest major that has a server.
fn newest_debian_bin(root: &Path) -> Option<PathBuf> {
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("postgres").is_file() && bin.join("initdb").is_file())
        .collect();
    majors.sort();
    majors.pop().map(|(_, bin)| bin)
}

/// The argv prefix that runs a program as the `postgres` user of a user namespace of its own,
/// with an IPC namespace of its own (see the module's doc).
fn as_postgres() -> Vec<String> {
    ["unshare", "--user", "--map-user", SYSTEM_USER, "--map-group", SYSTEM_USER, "--ipc", "--"].map(String::from).to_vec()
}

/// A lab's PostgreSQL server on its server host.
pub struct Server<'a> {
    pub host: &'a dyn Host,
    pub programs: &'a Programs,
}

impl Server<'_> {
    /// Its cluster: data, removed with the lab (the server's log stays with the host's).
    fn data_dir(&self) -> String {
        format!("{}/postgres", self.host.data_dir())
    }

    /// Make its cluster (the role headscale logs in as, with its password), start it, wait
    /// until it accepts connections, and make headscale's database.
    pub fn start(&self) -> Result<()> {
        let data = self.data_dir();
        let password_file = format!("{}/postgres-password", self.host.data_dir());
        self.host.write_file(&password_file, PASSWORD.as_bytes())?;
        let mut initdb = as_postgres();
        initdb.extend([
            self.programs.program("initdb"),
            "--pgdata".into(),
            data.clone(),
            "--username".into(),
            ROLE.into(),
            "--pwfile".into(),
            password_file,
            "--auth".into(),
            "scram-sha-256".into(),
            "--encoding".into(),
            "UTF8".into(),
            // The lab's cluster lives minutes; its files need not reach the disk first.
            "--no-sync".into(),
            "--no-instructions".into(),
        ]);
        let argv: Vec<&str> = initdb.iter().map(String::as_str).collect();
        self.host
            .run(&argv)?
            .check()
            .with_context(|| format!("on {}: initdb of headscale's PostgreSQL cluster", self.host.name()))?;

        let mut serve = as_postgres();
        serve.extend([self.programs.program("postgres"), "-D".into(), data]);
        for setting in [
            format!("listen_addresses={HOST}"),
            format!("port={PORT}"),
            "unix_socket_directories=".into(),
            "dynamic_shared_memory_type=mmap".into(),
        ] {
            serve.extend(["-c".into(), setting]);
        }
        self.host.start_service(SERVICE, &serve, &[])?;
        let isready = self.programs.program("pg_isready");
        let port = PORT.to_string();
        poll::until("PostgreSQL accepts connections", budget::database_ready(), || {
            self.host.ensure_running(SERVICE)?;
            let out = self.host.run(&[&isready, "--host", HOST, "--port", &port, "--timeout", "1"])?;
            if out.success() {
                Ok(())
            } else {
                Err(anyhow!("pg_isready says: {}", out.stdout.trim()))
            }
        })?;
        let createdb = self.programs.program("createdb");
        let password = format!("PGPASSWORD={PASSWORD}");
        self.host
            .run(&["env", &password, &createdb, "--host", HOST, "--port", &port, "--username", ROLE, NAME])?
            .check()
            .with_context(|| format!("on {}: creating headscale's database", self.host.name()))?;
        say!("{}: {} serves headscale's database on {HOST}:{PORT}", self.host.name(), self.programs.version);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_named_by_the_variable_or_else_by_the_users_configuration() {
        assert_eq!(Database::parse("").unwrap(), Database::Sqlite);
        assert_eq!(Database::parse(" postgres").unwrap(), Database::Postgres);
        let err = Database::parse("mysql").unwrap_err().to_string();
        assert!(err.contains("MESH_DATABASE") && err.contains("sqlite, postgres"), "{err}");
    }

    #[test]
    fn headscale_reaches_postgres_on_the_servers_loopback_with_the_labs_role() {
        let c = Database::Postgres.config("/state");
        assert_eq!(c["type"], "postgres");
        assert_eq!(c["postgres"]["host"], HOST);
        assert_eq!(c["postgres"]["port"], PORT);
        assert_eq!(c["postgres"]["user"], ROLE);
        let c = Database::Sqlite.config("/state");
        assert_eq!(c["sqlite"]["path"], "/state/db.sqlite");
    }

    #[test]
    fn the_newest_debian_major_with_a_server_is_taken() {
        let root = std::env::temp_dir().join(format!("mesh-pg-test-{}", std::process::id()));
        for (major, complete) in [("13", true), ("15", true), ("16", false)] {
            let bin = root.join(major).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join("postgres"), "").unwrap();
            if complete {
                std::fs::write(bin.join("initdb"), "").unwrap();
            }
        }
        assert_eq!(newest_debian_bin(&root), Some(root.join("15").join("bin")));
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(newest_debian_bin(&root), None);
    }
}
