//! `cargo mesh doctor`: what this machine has and lacks for each backend, as grouped lines
//! (or JSON), each lack with the command that fixes it. Looks only: nothing is installed,
//! started or changed, no lab is built. Exits 0 when the default backend (netns) is ready.

use anyhow::Result;
use meshlab::backend::BackendKind;
use meshlab::doctor::{self, Part, Report};
use std::process::ExitCode;

pub fn run(json: bool) -> Result<ExitCode> {
    let report = doctor::examine();
    if json {
        println!("{}", serde_json::to_string_pretty(&as_json(&report))?);
    } else {
        print!("{}", render(&report));
    }
    Ok(if report.ready(BackendKind::Netns) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// What each group is for, under its title.
fn subtitle(part: Part) -> &'static str {
    match part {
        Part::Netns => "the default backend (and the VM backend's router)",
        Part::Libvirt => "MESH_BACKEND=libvirt, built with --features libvirt; needs the netns part too",
        Part::Optional => "none is needed",
    }
}

/// The groups, a line a finding (`ok`/`warning`/`missing`, what, what was found) and under each
/// that is not ok the command that fixes it; then the verdict.
pub fn render(report: &Report) -> String {
    let width = report.groups.iter().flat_map(|g| &g.findings).map(|f| f.what.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for group in &report.groups {
        out += &format!("{} — {}\n", group.part.title(), subtitle(group.part));
        for f in &group.findings {
            out += &format!("  {:<7}  {:<width$}  {}\n", f.status.word(), f.what, f.found);
            if let Some(fix) = &f.fix {
                out += &format!("  {:<7}  {:<width$}  fix: {fix}\n", "", "");
            }
        }
        out.push('\n');
    }
    out += &report.verdict();
    out.push('\n');
    out
}

/// The same as JSON: every finding by group, which backends are ready, the verdict line.
pub fn as_json(report: &Report) -> serde_json::Value {
    let ready: Vec<&str> = report.ready_backends().iter().map(|b| b.name()).collect();
    let groups: Vec<serde_json::Value> = report
        .groups
        .iter()
        .map(|g| {
            serde_json::json!({
                "part": g.part,
                "title": g.part.title(),
                "missing": report.missing(g.part),
                "findings": g.findings,
            })
        })
        .collect();
    serde_json::json!({
        "ready": ready,
        "default_backend_ready": report.ready(BackendKind::Netns),
        "groups": groups,
        "verdict": report.verdict(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshlab::doctor::{Finding, Group, Status};

    fn sample() -> Report {
        let f = |status, what: &str, found: &str, fix: Option<&str>| Finding {
            status,
            what: what.into(),
            found: found.into(),
            fix: fix.map(str::to_string),
        };
        Report {
            groups: vec![
                Group {
                    part: Part::Netns,
                    findings: vec![
                        f(Status::Ok, "programs", "all 14 found", None),
                        f(Status::Missing, "nft", "not installed (package nftables)", Some("sudo apt-get install -y nftables")),
                    ],
                },
                Group { part: Part::Libvirt, findings: vec![f(Status::Warning, "KVM or TCG", "TCG", None)] },
                Group { part: Part::Optional, findings: vec![f(Status::Ok, "postgresql", "found", None)] },
            ],
        }
    }

    #[test]
    fn a_missing_item_is_followed_by_its_fix() {
        let text = render(&sample());
        let lines: Vec<&str> = text.lines().collect();
        let at = lines.iter().position(|l| l.trim_start().starts_with("missing") && l.contains("nft")).expect(&text);
        assert!(lines[at].contains("not installed (package nftables)"), "{text}");
        assert_eq!(lines[at + 1].trim(), "fix: sudo apt-get install -y nftables", "{text}");
        // Columns line up: every finding's text starts at the same place.
        let starts: Vec<usize> =
            [lines[at], lines[at - 1]].iter().map(|l| l.find("not installed").or(l.find("all 14")).unwrap()).collect();
        assert_eq!(starts[0], starts[1], "{text}");
        assert!(!text.contains("fix: \n"), "{text}");
    }

    #[test]
    fn every_group_is_named_and_the_verdict_closes() {
        let text = render(&sample());
        for title in ["netns — ", "libvirt (VMs) — ", "optional — "] {
            assert!(text.lines().any(|l| l.starts_with(title)), "no {title:?} in {text}");
        }
        let last = text.lines().last().unwrap();
        assert!(last.starts_with("backends ready: none; not ready: netns (1 missing)"), "{last}");
    }

    #[test]
    fn the_json_says_the_same() {
        let json = as_json(&sample());
        assert_eq!(json["default_backend_ready"], false);
        assert_eq!(json["ready"], serde_json::json!([]));
        assert_eq!(json["groups"][0]["part"], "netns");
        assert_eq!(json["groups"][0]["missing"], 1);
        assert_eq!(json["groups"][0]["findings"][1]["status"], "missing");
        assert_eq!(json["groups"][0]["findings"][1]["fix"], "sudo apt-get install -y nftables");
        assert_eq!(json["groups"][1]["title"], "libvirt (VMs)");
    }
}
