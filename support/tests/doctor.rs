//! `cargo mesh doctor` on this machine, for real: it names every backend and its verdict, gives
//! each missing piece its fix, says the same as JSON, exits 0 exactly when the default backend
//! is ready, and changes nothing (no lab, no namespace, no folder made).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn doctor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mesh"))
        .arg("doctor")
        .args(args)
        .env_remove("MESH_BACKEND")
        .output()
        .expect("the mesh binary runs")
}

fn namespaces() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// The folders a run would make (labs, tools' cache), from the environment or under target/.
fn folders() -> Vec<(PathBuf, bool)> {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let dir = |var: &str, default: PathBuf| std::env::var_os(var).map(PathBuf::from).unwrap_or(default);
    [dir("MESH_STATE_DIR", target.join("mesh/labs")), dir("MESH_TOOLS_DIR", target.join("mesh-tools"))]
        .into_iter()
        .map(|d| {
            let there = d.exists();
            (d, there)
        })
        .collect()
}

#[test]
fn doctor_names_every_backend_and_exits_0_when_netns_is_ready() {
    let (netns_before, folders_before) = (namespaces(), folders());
    let out = doctor(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    for title in ["netns — ", "libvirt (VMs) — ", "optional — "] {
        assert!(text.lines().any(|l| l.starts_with(title)), "no {title:?} group in:\n{text}");
    }
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("missing ") {
            let next = lines.get(i + 1).map(|l| l.trim_start()).unwrap_or("");
            assert!(next.starts_with("fix: "), "a missing piece without its fix: {line}\n{text}");
        }
    }
    let verdict = lines.last().copied().unwrap_or("");
    assert!(verdict.starts_with("backends ready: "), "the last line is not the verdict:\n{text}");

    let json = doctor(&["--json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("doctor --json prints JSON");
    assert_eq!(json.status.code(), out.status.code(), "the text and the JSON disagree on the exit");
    assert_eq!(report["verdict"].as_str(), Some(verdict), "the JSON's verdict is the text's");
    let parts: Vec<&str> = report["groups"].as_array().unwrap().iter().filter_map(|g| g["part"].as_str()).collect();
    assert_eq!(parts, ["netns", "libvirt", "optional"]);
    for finding in report["groups"].as_array().unwrap().iter().flat_map(|g| g["findings"].as_array().unwrap()) {
        assert!(["ok", "warning", "missing"].contains(&finding["status"].as_str().unwrap()), "{finding}");
        if finding["status"] == "missing" {
            assert!(finding["fix"].is_string(), "a missing piece without its fix: {finding}");
        }
    }

    // Exit 0 exactly when the default backend is ready.
    let ready = report["default_backend_ready"].as_bool().unwrap();
    assert_eq!(out.status.success(), ready, "exit {:?} but default_backend_ready is {ready}:\n{text}", out.status.code());
    assert!(verdict.contains(if ready { "backends ready: netns" } else { "netns (" }), "{verdict}");
    if !ready {
        let required = std::env::var("MESH_REQUIRE_PREREQUISITES").is_ok_and(|v| v == "1");
        assert!(!required, "MESH_REQUIRE_PREREQUISITES=1, and the netns backend is not ready here:\n{text}");
        eprintln!("SKIPPED the exit-0 check: the netns backend is not ready on this machine, as doctor says:\n{text}");
    }

    // It looked and changed nothing.
    assert_eq!(namespaces(), netns_before, "doctor made or removed a namespace");
    assert_eq!(folders(), folders_before, "doctor made a folder a run would make");
}
