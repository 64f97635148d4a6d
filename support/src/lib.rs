//! The harness of the Headscale mesh suite.
//!
//! - [`spec`]: the lab as data (subnets, hosts by role);
//! - [`backend`]: the [`backend::Host`] abstraction and the backends that make hosts;
//! - [`tools`]: the systems under test, pinned or asked for by number, built with `go install`;
//! - [`releases`]: what each headscale release can do, one table; [`version`]: release numbers;
//! - [`combos`]: the version combinations `cargo mesh matrix` runs; [`upgrade`]: the server's
//!   upgrade in place (P6);
//! - [`headscale`], [`tailscale`]: the real programs, driven through their CLIs;
//! - [`lab`]: building and attaching to a whole lab; [`registry`]: finding and removing labs;
//! - [`fixture`]: the lab scenarios share; [`report`]: criteria and the run's report;
//!   [`html`]: the report as a self-contained page, `report.html`;
//! - [`poll`], [`budget`], [`exec`], [`process`]: waiting, time limits, commands, services;
//! - [`prereq`]: what a lab needs on this machine; [`doctor`]: what it has and lacks, looked at;
//!   [`database`]: SQLite or the lab's PostgreSQL.

pub mod progress;

pub mod backend;
pub mod budget;
pub mod combos;
pub mod criteria;
pub mod database;
pub mod dns;
pub mod doctor;
pub mod exec;
pub mod fanout;
pub mod fixture;
pub mod guards;
pub mod headscale;
pub mod html;
pub mod images;
pub mod lab;
pub mod panics;
pub mod paths;
pub mod ping;
pub mod pki;
pub mod policy;
pub mod poll;
pub mod prereq;
pub mod process;
pub mod registry;
pub mod releases;
pub mod report;
pub mod runner;
pub mod settings;
pub mod sockets;
pub mod spec;
pub mod ssh;
pub mod tailscale;
pub mod tools;
pub mod upgrade;
pub mod userconfig;
pub mod version;
pub mod web;

pub use fixture::lab;

#[cfg(test)]
mod layering {
    //! The modules import one another in one direction only: no cycle, at the level of the
    //! top-level modules and of the folders' children (`backend::netns`, `policy::live`, …).
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Module path → its source (without its unit tests), from `support/src`.
    fn modules() -> BTreeMap<String, String> {
        fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                let stem = path.file_stem().unwrap().to_string_lossy().to_string();
                if path.is_dir() {
                    if stem != "bin" {
                        walk(&path, &[prefix, &[stem]].concat(), out);
                    }
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let name = if stem == "mod" { prefix.to_vec() } else { [prefix, &[stem]].concat() };
                    if name != ["lib"] {
                        let text = std::fs::read_to_string(&path).unwrap();
                        // Code only: its unit tests and comments (a doc link is no import) left out.
                        let code = text.split("#[cfg(test)]").next().unwrap();
                        let text: String =
                            code.lines().filter(|l| !l.trim_start().starts_with("//")).map(|l| format!("{l}\n")).collect();
                        out.insert(name.join("::"), text);
                    }
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &[], &mut out);
        out
    }

    /// The unit a path names: a folder's child where there is one, else the top-level module.
    fn unit(path: &str, units: &BTreeSet<String>) -> Option<String> {
        let parts: Vec<&str> = path.split("::").collect();
        let child = parts.get(..2).map(|p| p.join("::"));
        child.filter(|c| units.contains(c)).or_else(|| Some(parts[0].to_string()).filter(|t| units.contains(t)))
    }

    #[test]
    fn no_module_imports_one_that_imports_it_back() {
        let modules = modules();
        let units: BTreeSet<String> = modules.keys().cloned().collect();
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (name, text) in &modules {
            let from = unit(name, &units).unwrap();
            let mut refs: Vec<String> = Vec::new();
            for piece in text.split("crate::").skip(1) {
                if let Some(group) = piece.strip_prefix('{') {
                    let group = group.split('}').next().unwrap_or("");
                    refs.extend(group.split(',').map(|r| r.trim().split(' ').next().unwrap_or("").to_string()));
                } else {
                    refs.push(piece.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_' || *c == ':').collect());
                }
            }
            for r in refs {
                let Some(to) = unit(r.trim_end_matches(':'), &units) else { continue };
                // A folder's children use their parent (it declares them): not a cycle.
                if to != from && !from.starts_with(&format!("{to}::")) && !to.starts_with(&format!("{from}::")) {
                    edges.entry(from.clone()).or_default().insert(to);
                }
            }
        }
        // A path back to where it started is a cycle; name it.
        fn back(
            edges: &BTreeMap<String, BTreeSet<String>>,
            start: &str,
            at: &str,
            path: &mut Vec<String>,
        ) -> Option<Vec<String>> {
            for next in edges.get(at).into_iter().flatten() {
                if next == start {
                    return Some([path.clone(), vec![start.to_string()]].concat());
                }
                if !path.contains(next) {
                    path.push(next.clone());
                    if let Some(cycle) = back(edges, start, next, path) {
                        return Some(cycle);
                    }
                    path.pop();
                }
            }
            None
        }
        assert!(edges.len() > 20, "the modules and their imports are read: {edges:?}");
        for start in edges.keys() {
            if let Some(cycle) = back(&edges, start, start, &mut vec![start.clone()]) {
                panic!("an import cycle: {}", cycle.join(" → "));
            }
        }
    }
}
