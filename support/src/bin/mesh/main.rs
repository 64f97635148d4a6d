//! `cargo mesh`: build a lab and prove the mesh (`check`), keep one running for tests and
//! shells (`up`, `status`, `shell`, `down`), measure how fast and steady it is (`bench`), and
//! tell what this machine has and lacks for each backend (`doctor`).

mod bench;
mod check;
mod doctor;
mod labs;
mod matrix;
mod table;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cargo mesh",
    about = "Prove a self-hosted Headscale mesh works: real headscale and tailscaled in a lab of four hosts"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build a lab, run every scenario in priority order (stopping at the first failure),
    /// print a summary, write the JSON report, tear the lab down.
    Check {
        #[command(flatten)]
        lab: LabArgs,
        /// Also write the JSON report here (it is always written into the lab's folder).
        #[arg(long, value_name = "PATH")]
        json: Option<PathBuf>,
        /// After a failure, keep the lab running for `cargo mesh shell` (remove it with `cargo mesh down`).
        #[arg(long)]
        keep: bool,
    },
    /// Build a lab and leave it running; prints the MESH_LAB value that points tests at it.
    Up {
        #[command(flatten)]
        lab: LabArgs,
        /// Keep the lab only while this command runs: Ctrl-C (or its end in any way) removes it.
        #[arg(long)]
        foreground: bool,
        /// Keep the lab until process PID exits, then remove it (nextest's setup script gives
        /// nextest's pid: one lab for the whole run).
        #[arg(long, value_name = "PID", conflicts_with = "foreground")]
        until_exit_of: Option<u32>,
        /// Append `MESH_LAB=<id>` to this file once the lab is up (nextest's `$NEXTEST_ENV`).
        #[arg(long, value_name = "PATH")]
        env_file: Option<PathBuf>,
    },
    /// Remove a lab left running by `up` or `check --keep`.
    Down {
        /// The lab's run id or folder (default: MESH_LAB, or the only lab there is).
        lab: Option<String>,
        /// Remove every lab this tool left on this machine.
        #[arg(long, conflicts_with = "lab")]
        all: bool,
    },
    /// List the labs on this machine.
    Status,
    /// Tell what this machine has and lacks for each backend, and the command that fixes each
    /// lack; changes nothing. Exits 0 when the default backend (netns) is ready.
    Doctor {
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Build the programs under test for the versions asked (or find them in the cache) and
    /// say which ran where: what nextest's setup script runs before any test.
    Tools {
        #[command(flatten)]
        lab: LabArgs,
    },
    /// Open a shell inside a lab host (`headscale`, `client-1`, `client-2`, `client-3`).
    Shell {
        host: String,
        /// The lab's run id or folder (default: MESH_LAB, or the only lab there is).
        #[arg(long)]
        lab: Option<String>,
    },
    /// Build and check a lab N times; print the median of every phase and the pass count.
    Bench {
        #[command(flatten)]
        lab: LabArgs,
        #[arg(long, default_value_t = 5)]
        runs: u32,
        /// Also write the figures as JSON here.
        #[arg(long, value_name = "PATH")]
        json: Option<PathBuf>,
        /// First measure a deployment from nothing (SC-007): empty Go module and build caches and
        /// no built tools, so headscale and tailscale are downloaded and compiled again.
        #[arg(long)]
        from_scratch: bool,
    },
    /// Run the check for several version combinations, each in a lab of its own, and print a
    /// grid: combination → verdict, first failing scenario and its cause, time.
    Matrix {
        #[command(flatten)]
        lab: LabArgs,
        /// The combinations: HEADSCALE/TAILSCALE separated by commas, e.g. 0.29.3/1.98.10,0.27.1/1.90.9;
        /// a mixed lab gives client-1, client-2, … their releases joined by '+': 0.29.3/1.80.3+1.98.10+1.102.5.
        /// Default: the pins, 0.27.1/1.90.9, 0.29.3/1.80.3, 0.29.3/1.102.5, 0.29.3/1.80.3+1.98.10+1.102.5.
        #[arg(long, value_name = "LIST")]
        combos: Option<String>,
        /// How many combinations run at once, each in its own lab.
        #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=8))]
        jobs: u64,
        /// Also write the grid as JSON here (it is always written into the matrix's folder).
        #[arg(long, value_name = "PATH")]
        json: Option<PathBuf>,
    },
}

/// How to build a lab; each flag overrides its environment variable.
#[derive(Args, Clone)]
struct LabArgs {
    /// Backend: netns (default). Overrides MESH_BACKEND.
    #[arg(long, value_name = "NAME")]
    backend: Option<String>,
    /// Subnet A, the server's and client-1's (default 192.168.1.0/24). Overrides MESH_SUBNET_A.
    #[arg(long, value_name = "CIDR")]
    subnet_a: Option<String>,
    /// Subnet B, behind NAT: client-2's and client-3's (default 10.0.0.0/24). Overrides MESH_SUBNET_B.
    #[arg(long, value_name = "CIDR")]
    subnet_b: Option<String>,
    /// The headscale release to build and test, e.g. 0.27.1 (default: the pin). Overrides MESH_HEADSCALE_VERSION.
    #[arg(long, value_name = "VERSION")]
    headscale_version: Option<String>,
    /// The tailscale release to build and test, e.g. 1.90.9 (default: the pin). Overrides MESH_TAILSCALE_VERSION.
    #[arg(long, value_name = "VERSION")]
    tailscale_version: Option<String>,
    /// The HuJSON ACL policy P7's lab runs with (default: the built-in one); with `up`, the lab
    /// runs with it. Overrides MESH_POLICY.
    #[arg(long, value_name = "PATH")]
    policy: Option<String>,
    /// Which user or tag each client registers as under the policy, e.g.
    /// client-1=alice,client-2=bob,client-3=tag:server. Overrides MESH_NODES.
    #[arg(long, value_name = "LIST")]
    nodes: Option<String>,
    /// Your headscale config.yaml (or JSON): every setting of yours is kept but what the lab
    /// must own, each replacement printed and reported. Overrides MESH_HEADSCALE_CONFIG.
    #[arg(long, value_name = "PATH")]
    headscale_config: Option<String>,
    /// The database headscale runs on: sqlite (default), or postgres (a PostgreSQL server the
    /// lab starts inside its server host; netns backend). Overrides MESH_DATABASE.
    #[arg(long, value_name = "NAME")]
    database: Option<String>,
    /// The scenario files to run, by priority: e.g. 0-7 or 0,1,5 (default: all); the others
    /// are reported skipped, saying so. Overrides MESH_PRIORITIES.
    #[arg(long, value_name = "LIST")]
    priorities: Option<String>,
}

impl LabArgs {
    /// Flags become the environment, so the scenario processes see the same choices.
    fn apply(&self) {
        for (var, value) in [
            ("MESH_BACKEND", &self.backend),
            ("MESH_SUBNET_A", &self.subnet_a),
            ("MESH_SUBNET_B", &self.subnet_b),
            ("MESH_HEADSCALE_VERSION", &self.headscale_version),
            ("MESH_TAILSCALE_VERSION", &self.tailscale_version),
            ("MESH_POLICY", &self.policy),
            ("MESH_NODES", &self.nodes),
            (meshlab::userconfig::VAR, &self.headscale_config),
            (meshlab::database::VAR, &self.database),
            (meshlab::settings::PRIORITIES_VAR, &self.priorities),
        ] {
            if let Some(v) = value {
                std::env::set_var(var, v);
            }
        }
        // The scenario processes run elsewhere (cargo test runs them in the package's folder):
        // a relative path of the user's is made absolute here, where it was meant.
        if let Some(path) = std::env::var_os(meshlab::userconfig::VAR).filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            if path.is_relative() {
                if let Ok(cwd) = std::env::current_dir() {
                    std::env::set_var(meshlab::userconfig::VAR, cwd.join(path));
                }
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Check { lab, json, keep } => {
            lab.apply();
            check::run(json, keep)
        }
        Cmd::Up { lab, foreground, until_exit_of, env_file } => {
            lab.apply();
            labs::up(foreground, until_exit_of, env_file)
        }
        Cmd::Down { lab, all } => labs::down(lab, all),
        Cmd::Status => labs::status(),
        Cmd::Doctor { json } => doctor::run(json),
        Cmd::Tools { lab } => {
            lab.apply();
            labs::tools()
        }
        Cmd::Shell { host, lab } => labs::shell(&host, lab),
        Cmd::Bench { lab, runs, json, from_scratch } => {
            lab.apply();
            bench::run(runs, json, from_scratch)
        }
        Cmd::Matrix { lab, combos, jobs, json } => {
            if lab.headscale_version.is_some() || lab.tailscale_version.is_some() {
                eprintln!(
                    "mesh: error: the matrix takes its versions from --combos, not --headscale-version or --tailscale-version"
                );
                return ExitCode::FAILURE;
            }
            lab.apply();
            matrix::run(combos, jobs as usize, json)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mesh: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
