//! Panics: the message one carried (a helper thread's panic becomes an error that says it),
//! and panics on purpose, for the harness's own tests of what a failed build leaves behind.

/// The message a panic carried.
pub fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(a panic without a message)".into())
}

/// The variable that names the point to panic at: for tests of the harness only.
pub const INJECT_VAR: &str = "MESH_INJECT_PANIC";

/// Panic here if `MESH_INJECT_PANIC` names this point of a lab's build: `build` (the building
/// thread itself, once the hosts exist), `registration` (a client's registration thread),
/// `vm-boot` (a VM's SSH wait). For the harness's tests of a build that panics; never set in a
/// real run.
pub fn inject(point: &str) {
    if std::env::var(INJECT_VAR).is_ok_and(|v| v == point) {
        panic!("{INJECT_VAR}={point}: a panic on purpose, during the lab's build");
    }
}
