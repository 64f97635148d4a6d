//! Labs that outlive a command: `up`, `status`, `shell`, `down`.

use crate::table;
use anyhow::{anyhow, bail, Context, Result};
use meshlab::lab::{Lab, LabOptions};
use meshlab::process::{Lifetime, ProcessId};
use meshlab::registry::{self, LabRecord};
use meshlab::say;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

/// `until_exit_of`: the lab lives until that process exits (a test runner), then its watchdog
/// removes it. `env_file`: `MESH_LAB=<id>` is appended there (nextest's `$NEXTEST_ENV`).
pub fn up(foreground: bool, until_exit_of: Option<u32>, env_file: Option<PathBuf>) -> Result<ExitCode> {
    let mut options = LabOptions::from_env()?;
    options.lifetime = if foreground { Lifetime::WithOwner } else { Lifetime::Detached };
    if let Some(pid) = until_exit_of {
        options.owner = Some(ProcessId::of(pid).ok_or_else(|| {
            anyhow!("--until-exit-of {pid}: no such process; give the pid of the process the lab is to outlive no longer")
        })?);
    }
    if LabOptions::policy_asked() {
        // `--policy` / `MESH_POLICY` or `MESH_NODES`: a lab for P7's tests to attach to.
        options = options.under_policy()?;
    }
    let lab = Lab::build(options)?;
    let clients = lab.client_names().join(", ");
    if foreground {
        println!(
            "lab {id} is up while this command runs; Ctrl-C removes it\n\
             point tests at it:  export MESH_LAB={id}\n\
             a shell in a host:  {mesh} shell client-1 --lab {id}",
            id = lab.record.run_id,
            mesh = lab.record.backend.commands().0,
        );
        // The interrupt handler removes the lab and exits; a kill leaves it to the next run.
        loop {
            std::thread::park();
        }
    }
    let record = lab.release();
    if let Some(path) = env_file {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        writeln!(file, "MESH_LAB={}", record.run_id).with_context(|| format!("writing MESH_LAB to {}", path.display()))?;
    }
    if let Some(pid) = until_exit_of {
        println!(
            "lab {} is up ({}) until process {pid} exits; its watchdog removes it then",
            record.run_id,
            record.backend.name()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "lab {id} is up ({backend}): headscale at {url}; clients {clients}\n\
         point tests at it:  export MESH_LAB={id}   (then {test} …)\n\
         a shell in a host:  {mesh} shell client-1\n\
         remove it:          {mesh} down {id}",
        id = record.run_id,
        mesh = record.backend.commands().0,
        test = record.backend.commands().1,
        backend = record.backend.name(),
        url = record.spec.server_url(),
    );
    Ok(ExitCode::SUCCESS)
}

/// The lab a command means: the one named, else MESH_LAB, else the only one there is.
fn resolve(name: Option<String>) -> Result<LabRecord> {
    let name = name.or_else(|| std::env::var("MESH_LAB").ok().filter(|v| !v.is_empty()));
    let labs = registry::indexed();
    match name {
        Some(n) => labs
            .into_iter()
            .find(|r| r.run_id == n || r.dir.display().to_string() == n)
            .ok_or_else(|| anyhow!("no running lab {n:?}: `cargo mesh status` lists the running ones")),
        None => match labs.len() {
            0 => bail!("no lab is running: start one with `cargo mesh up`"),
            1 => Ok(labs.into_iter().next().unwrap()),
            _ => bail!(
                "{} labs are running ({}): name one (--lab ID, or MESH_LAB)",
                labs.len(),
                labs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>().join(", ")
            ),
        },
    }
}

pub fn down(name: Option<String>, all: bool) -> Result<ExitCode> {
    if !all {
        let record = resolve(name)?;
        registry::remove(&record)?;
        println!("lab {} removed (its logs stay in {})", record.run_id, record.dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let mut removed = Vec::new();
    for record in registry::indexed() {
        registry::remove(&record)?;
        removed.push(record.run_id);
    }
    removed.extend(registry::remove_unrecorded_namespaces(&[]));
    // Labs in user namespaces that no record of ours lists: a normal user's own; for root,
    // every user's (their records are theirs, so they are found by their holders alone).
    let uid = nix::unistd::geteuid().as_raw();
    removed.extend(registry::remove_unrecorded_holders(&[], (uid != 0).then_some(uid)));
    removed.extend(registry::remove_unrecorded_vms(&[]));
    if removed.is_empty() {
        println!("no labs of this tool on this machine");
    } else {
        println!("removed {}: {}", if removed.len() == 1 { "1 lab" } else { "labs" }, removed.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn tools() -> Result<ExitCode> {
    let options = LabOptions::from_env()?;
    let mut tools = meshlab::tools::Tools::resolve()?;
    // P6's older headscale too, so that no test builds a release while its time runs.
    if let meshlab::upgrade::Plan::Rehearse { from, .. } = meshlab::upgrade::Plan::from_env(options.backend)? {
        tools.add_upgrade_from(from)?;
        say!("P6's server starts at headscale {from}: ready");
    }
    println!(
        "programs under test: headscale {} ({}), {} ({})",
        tools.versions.headscale,
        tools.headscale.display(),
        tools.versions.describe_tailscale(),
        tools.tailscale.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn status() -> Result<ExitCode> {
    // Root also sees normal users' labs (which `cargo mesh down --all` removes too).
    let labs: Vec<LabRecord> = registry::indexed().into_iter().chain(registry::indexed_by_other_users()).collect();
    if labs.is_empty() {
        println!("no labs running");
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![vec!["lab".to_string(), "backend".into(), "kept by".into(), "hosts".into(), "folder".into()]];
    for r in &labs {
        let mut owner = match r.lifetime {
            Lifetime::Detached if r.watchdog.is_some() => format!("process {} (until it exits)", r.owner.pid),
            Lifetime::Detached => "cargo mesh down".to_string(),
            Lifetime::WithOwner if r.owner.alive() => format!("process {}", r.owner.pid),
            Lifetime::WithOwner => format!("nobody (process {} is gone)", r.owner.pid),
        };
        if r.backend().is_ok_and(|b| b.in_user_namespace()) {
            let uid = std::fs::metadata(r.dir.join("lab.json")).map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap_or(0);
            owner += &format!(", user {uid} (in a user namespace)");
        }
        let hosts = r.spec.hosts.iter().map(|h| format!("{} {}", h.name, h.addr)).collect::<Vec<_>>().join(", ");
        rows.push(vec![r.run_id.clone(), r.backend.name().into(), owner, hosts, r.dir.display().to_string()]);
    }
    print!("{}", table::render(&rows));
    Ok(ExitCode::SUCCESS)
}

pub fn shell(host: &str, name: Option<String>) -> Result<ExitCode> {
    let record = resolve(name)?;
    let lab = Lab::attach(&record.dir.display().to_string())?;
    let argv = lab.shell_argv(host)?;
    eprintln!("a shell in {host} of lab {}; `exit` leaves it", record.run_id);
    let err = Command::new(&argv[0]).args(&argv[1..]).exec();
    Err(anyhow!("starting a shell in {host}: {err}"))
}
