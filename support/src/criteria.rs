//! The success criteria of the requirements (SC-001 … SC-008), each once: its id, what it
//! measures, its limit and which side of it passes. Tests, `bench` and the report all take
//! them from here; a measurement becomes a [`Criterion`] of the report by [`Sc::measured`].

use crate::report::Criterion;

/// Which side of its limit a criterion passes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Times, latencies, counts of what must not happen.
    AtMost,
    /// Uptime, success rates.
    AtLeast,
}

/// One success criterion.
#[derive(Debug, Clone, Copy)]
pub struct Sc {
    pub id: &'static str,
    pub name: &'static str,
    pub limit: f64,
    pub unit: &'static str,
    pub bound: Bound,
}

impl Sc {
    /// This criterion as measured once (record it with [`Criterion::check`]).
    pub fn measured(&self, value: f64) -> Criterion {
        match self.bound {
            Bound::AtMost => Criterion::at_most(self.id, self.name, value, self.limit, self.unit),
            Bound::AtLeast => Criterion::at_least(self.id, self.name, value, self.limit, self.unit),
        }
    }
}

/// All three clients connected within 2 minutes of registration.
pub const SC001: Sc =
    Sc { id: "SC-001", name: "all clients connected after registration", limit: 120.0, unit: "s", bound: Bound::AtMost };
/// A ping between any two clients under 50 ms.
pub const SC002: Sc = Sc { id: "SC-002", name: "ping round trip between clients", limit: 50.0, unit: "ms", bound: Bound::AtMost };
/// 99 % mesh uptime over the soak (an hour in the plan; `MESH_SOAK`).
pub const SC003: Sc = Sc { id: "SC-003", name: "mesh uptime during the soak", limit: 99.0, unit: "%", bound: Bound::AtLeast };
/// A DNS lookup answers in under a second.
pub const SC004: Sc = Sc { id: "SC-004", name: "DNS lookup time", limit: 1.0, unit: "s", bound: Bound::AtMost };
/// The mesh reconnects within 30 s of an interruption (a server restart or upgrade, a cut link).
pub const SC005: Sc = Sc { id: "SC-005", name: "reconnect after an interruption", limit: 30.0, unit: "s", bound: Bound::AtMost };
/// No plaintext of the mesh's payloads between hosts on the underlay.
pub const SC006: Sc = Sc {
    id: "SC-006",
    name: "mesh payloads seen in plaintext on the underlay",
    limit: 0.0,
    unit: "packets",
    bound: Bound::AtMost,
};
/// The environment deployed from scratch in under 15 minutes.
pub const SC007: Sc =
    Sc { id: "SC-007", name: "environment deployed from scratch", limit: 900.0, unit: "s", bound: Bound::AtMost };
/// First-attempt success in at least 95 % of runs.
pub const SC008: Sc = Sc { id: "SC-008", name: "first-attempt success", limit: 95.0, unit: "%", bound: Bound::AtLeast };

/// Every criterion, in order.
pub const ALL: [Sc; 8] = [SC001, SC002, SC003, SC004, SC005, SC006, SC007, SC008];

#[cfg(test)]
mod tests {
    #[test]
    fn the_catalogue_is_the_requirements_table() {
        let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/spec/requirements.md"));
        for (i, sc) in super::ALL.iter().enumerate() {
            assert_eq!(sc.id, format!("SC-00{}", i + 1), "in order, none missing");
            // Where the requirements are at hand (beside the checkout), each id is in them.
            if let Ok(spec) = &spec {
                assert!(spec.contains(&format!("| {} |", sc.id)), "{} is a criterion of the requirements", sc.id);
            }
        }
    }

    #[test]
    fn a_measurement_passes_on_the_criterions_side_of_its_limit() {
        assert!(super::SC001.measured(119.0).ok && !super::SC001.measured(121.0).ok);
        assert!(super::SC003.measured(99.5).ok && !super::SC003.measured(98.0).ok);
        assert!(super::SC006.measured(0.0).ok && !super::SC006.measured(1.0).ok);
        assert_eq!(super::SC004.measured(0.2).id, "SC-004");
    }
}
