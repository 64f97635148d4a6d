//! The lab drawn: its subnets, the router between them and the NAT that hides one, every host,
//! and every client pair an edge. Each half of an edge is the direction from the host at its
//! end, coloured by what that direction's measurements found (direct, DERP, reached by a probe
//! that does not see the path, refused) and labelled with its round trip; a direction no
//! scenario measured is drawn grey and dashed, "not measured".

use super::charts::{line, rect, shorten, svg, text};
use super::{coord, el, round_trip, text_el, El};
use crate::report::{PairFigure, Reach};
use crate::spec::{HostSpec, LabSpec, Role};

/// What one direction of a client pair found, summed up from its measurements.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Direction {
    /// None: no measurement of this direction.
    pub reach: Option<Reach>,
    /// The round trip of the measurement that gave `reach`, if it has one, and what its probe
    /// rounds it to.
    pub rtt_ms: Option<f64>,
    pub resolution_ms: Option<f64>,
    /// Its endpoint or DERP region.
    pub via: Option<String>,
    /// Its probe (`tailscale ping`, `ping (ICMP, IPv4), mean of 5`).
    pub probe: Option<String>,
    /// The probes that connected and those refused, where no path was seen.
    pub reached_by: Vec<String>,
    pub refused_by: Vec<String>,
}

impl Direction {
    /// `from` → `to` from `pairs` (one condition's): the last measurement that saw the path
    /// wins; without one, whether the probes reached it, and which were refused.
    pub fn of(from: &str, to: &str, pairs: &[&PairFigure]) -> Direction {
        let mine: Vec<&&PairFigure> = pairs.iter().filter(|p| p.from == from && p.to == to).collect();
        let mut d = Direction::default();
        for p in &mine {
            match p.reach {
                Reach::Refused => push_once(&mut d.refused_by, &p.probe),
                _ => push_once(&mut d.reached_by, &p.probe),
            }
        }
        let pick = mine
            .iter()
            .rev()
            .find(|p| p.reach.is_path())
            .or_else(|| mine.iter().rev().find(|p| p.reach == Reach::Reached && p.rtt_ms.is_some()))
            .or_else(|| mine.iter().rev().find(|p| p.reach == Reach::Reached))
            .or_else(|| mine.last());
        if let Some(p) = pick {
            d.reach = Some(p.reach);
            d.rtt_ms = p.rtt_ms;
            d.resolution_ms = p.resolution_ms;
            d.via = p.via.clone();
            d.probe = Some(p.probe.clone());
        }
        d
    }

    /// `direct 0.41 ms`, `DERP lab 1.2 ms`, `reached: TCP 8080, ICMP; refused: TCP 8081`,
    /// `not measured`.
    pub fn label(&self) -> String {
        let Some(reach) = self.reach else { return "not measured".into() };
        let rtt = self.rtt_ms.map(|_| format!(" {}", round_trip(self.rtt_ms, self.resolution_ms))).unwrap_or_default();
        match reach {
            Reach::Derp => format!("DERP {}{rtt}", self.via.as_deref().unwrap_or("")).replace("  ", " "),
            r if r.is_path() => format!("{}{rtt}", r.word()),
            _ if self.refused_by.is_empty() => format!("reached{rtt}"),
            _ if self.reached_by.is_empty() => format!("refused: {}", self.refused_by.join(", ")),
            _ => format!("reached: {}; refused: {}", self.reached_by.join(", "), self.refused_by.join(", ")),
        }
    }

    /// The class (and colour, [`stroke`]) its edge is drawn in.
    pub fn class(&self) -> &'static str {
        match self.reach {
            None => "not-measured",
            Some(Reach::Direct) => "direct",
            Some(Reach::Derp) => "derp",
            Some(Reach::PeerRelay) => "peer-relay",
            Some(Reach::Reached) => "reached",
            Some(Reach::Refused) => "refused",
        }
    }
}

fn push_once(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|i| i == item) {
        list.push(item.to_string());
    }
}

/// An edge's colour by its class.
pub fn stroke(class: &str) -> &'static str {
    match class {
        "direct" => "#2e7d32",
        "derp" => "#ef6c00",
        "peer-relay" => "#6a1b9a",
        "reached" => "#1565c0",
        "refused" => "#c62828",
        _ => "#9e9e9e",
    }
}

/// The edge classes, in the legend's order, with what each means.
const LEGEND: &[(&str, &str)] = &[
    ("direct", "direct path"),
    ("derp", "relayed by DERP"),
    ("peer-relay", "peer relay"),
    ("reached", "reached (path not seen)"),
    ("refused", "refused"),
    ("not-measured", "not measured"),
];

const HOST_W: f64 = 200.0;
const HOST_H: f64 = 52.0;
const ROW: f64 = 78.0;
const PAD: f64 = 14.0;
const HEAD: f64 = 46.0;
const GAP: f64 = 360.0;
const ARCS: f64 = 330.0;
const MARGIN: f64 = 20.0;

/// A host's box: where it is drawn.
struct Placed<'a> {
    host: &'a HostSpec,
    /// 0: the left subnet, 1: the right.
    side: usize,
    row: usize,
    x: f64,
    y: f64,
}

/// The lab of `spec`, its client pairs drawn from `pairs` (one condition's measurements);
/// `id` names the drawing in the page.
pub fn drawing(spec: &LabSpec, pairs: &[&PairFigure], id: &str) -> El {
    let subnets: Vec<_> = spec.subnets.iter().take(2).collect();
    let clients_on = |s: usize| -> usize {
        subnets.get(s).map(|n| spec.hosts.iter().filter(|h| h.subnet == n.name && h.role == Role::Client).count()).unwrap_or(0)
    };
    let sub_w = HOST_W + 2.0 * PAD;
    let left = if clients_on(0) > 1 { ARCS } else { MARGIN };
    let right = if clients_on(1) > 1 { ARCS } else { MARGIN };
    let xs = [left, left + sub_w + GAP];
    let router_y = 14.0;
    let router_h = 70.0;
    let sub_y = router_y + router_h + 56.0;
    let mut placed: Vec<Placed> = Vec::new();
    let mut rows = [0usize; 2];
    for host in &spec.hosts {
        let Some(side) = subnets.iter().position(|s| s.name == host.subnet) else { continue };
        let row = rows[side];
        rows[side] += 1;
        placed.push(Placed { host, side, row, x: xs[side] + PAD, y: sub_y + HEAD + ROW * row as f64 });
    }
    // The plain hosts (no tailscale) below the mesh's hosts of their subnet.
    let mut plain = Vec::new();
    for lan in &spec.lan_hosts {
        let Some(side) = subnets.iter().position(|s| s.name == lan.subnet) else { continue };
        let row = rows[side];
        rows[side] += 1;
        plain.push((lan, xs[side] + PAD, sub_y + HEAD + ROW * row as f64));
    }
    let deepest = rows.iter().copied().max().unwrap_or(0).max(1) as f64;
    let sub_h = HEAD + ROW * deepest - (ROW - HOST_H) + PAD;
    let legend_y = sub_y + sub_h + 26.0;
    let width = xs[1] + sub_w + right;
    let height = legend_y + 34.0;
    let mut svg = svg(width, height).attr("id", id).class("lab").attr("role", "img");
    svg.push(text_el("desc", "The lab: its subnets, router, hosts, and every client pair an edge coloured by its path."));

    // The subnets.
    for (side, subnet) in subnets.iter().enumerate() {
        let x = xs[side];
        let mut g = el("g").class("subnet").attr("data-subnet", &subnet.name);
        g.push(
            rect(x, sub_y, sub_w, sub_h, if subnet.masqueraded { "#fff8e1" } else { "#e8f1fb" })
                .attr("stroke", "#90a4ae")
                .attr("rx", "10"),
        );
        let name = format!("subnet {} {}", subnet.name.to_uppercase(), subnet.net);
        g.push(text(x + 12.0, sub_y + 22.0, &name, "start", 13.0).attr("font-weight", "700"));
        if subnet.masqueraded {
            g.push(
                text(x + 12.0, sub_y + 36.0, "behind the router's NAT", "start", 11.0)
                    .attr("fill", "#8d6e00")
                    .attr("font-weight", "600"),
            );
        }
        svg.push(g);
    }

    // The router, its address on each subnet, and the NAT.
    let rx = xs[0] + sub_w + GAP / 2.0;
    let mut router = el("g").class("router");
    for (side, subnet) in subnets.iter().enumerate() {
        let (sx, sy) = (xs[side] + sub_w / 2.0, sub_y);
        let from_x = rx + if side == 0 { -60.0 } else { 60.0 };
        router.push(line(from_x, router_y + router_h, sx, sy, "#78909c", 2.0));
        let (mx, my) = ((from_x + sx) / 2.0, (router_y + router_h + sy) / 2.0);
        let anchor = if side == 0 { "end" } else { "start" };
        let dx = if side == 0 { -8.0 } else { 8.0 };
        router.push(text(mx + dx, my + 4.0, &subnet.router.to_string(), anchor, 11.5).attr("class", "mono"));
        if subnet.masqueraded {
            let outside = subnets.iter().find(|s| !s.masqueraded).map(|s| s.router.to_string()).unwrap_or_else(|| "—".into());
            router.push(rect(mx - 22.0, my - 24.0, 44.0, 17.0, "#8d6e00").attr("rx", "4"));
            router.push(text(mx, my - 11.5, "NAT", "middle", 11.0).attr("fill", "#fff").attr("font-weight", "700"));
            router.push(text(mx + dx, my + 18.0, &format!("masqueraded behind {outside}"), anchor, 10.5).attr("fill", "#8d6e00"));
        }
    }
    router.push(rect(rx - 110.0, router_y, 220.0, router_h, "#eceff1").attr("stroke", "#607d8b").attr("rx", "8"));
    router.push(text(rx, router_y + 22.0, "router", "middle", 13.5).attr("font-weight", "700"));
    router.push(text(rx, router_y + 40.0, "forwards A ↔ B; nothing out of the lab", "middle", 10.5).attr("fill", "#455a64"));
    let nat: Vec<String> = subnets.iter().filter(|s| s.masqueraded).map(|s| s.name.to_uppercase()).collect();
    let nat = if nat.is_empty() { "no NAT".to_string() } else { format!("masquerades {}", nat.join(", ")) };
    router.push(text(rx, router_y + 56.0, &nat, "middle", 10.5).attr("fill", "#455a64"));
    svg.push(router);

    // The client pairs, under the hosts' boxes' text but over the subnets.
    let clients: Vec<&Placed> = placed.iter().filter(|p| p.host.role == Role::Client).collect();
    let mut edges = el("g").class("edges");
    let mut labels = el("g").class("edge-labels");
    for (i, a) in clients.iter().enumerate() {
        for b in clients.iter().skip(i + 1) {
            let (ab, ba) = (Direction::of(&a.host.name, &b.host.name, pairs), Direction::of(&b.host.name, &a.host.name, pairs));
            let (p0, c, p2, anchor) = geometry(a, b, &xs);
            let m = ((p0.0 + 2.0 * c.0 + p2.0) / 4.0, (p0.1 + 2.0 * c.1 + p2.1) / 4.0);
            let mut edge = el("g").class("pair").attr("data-pair", format!("{} {}", a.host.name, b.host.name));
            for (from, to, d, start) in [(a, b, &ab, p0), (b, a, &ba, p2)] {
                let ctrl = ((start.0 + c.0) / 2.0, (start.1 + c.1) / 2.0);
                let class = d.class();
                let mut path = el("path")
                    .attr(
                        "d",
                        format!(
                            "M{} {} Q{} {} {} {}",
                            coord(start.0),
                            coord(start.1),
                            coord(ctrl.0),
                            coord(ctrl.1),
                            coord(m.0),
                            coord(m.1)
                        ),
                    )
                    .attr("fill", "none")
                    .attr("stroke", stroke(class))
                    .attr("stroke-width", if class == "not-measured" { "2" } else { "3.5" })
                    .class(format!("direction {class}"))
                    .attr("data-from", &from.host.name)
                    .attr("data-to", &to.host.name);
                if class == "not-measured" {
                    path = path.attr("stroke-dasharray", "6 5");
                }
                let how = d
                    .probe
                    .as_deref()
                    .map(|p| format!(" (by {p}{})", d.via.as_deref().map(|v| format!(", via {v}")).unwrap_or_default()));
                edge.push(path.tooltip(format!(
                    "{} → {}: {}{}",
                    from.host.name,
                    to.host.name,
                    d.label(),
                    how.unwrap_or_default()
                )));
            }
            edges.push(edge);
            // One line where both directions found the same, else one a direction; above a line
            // across the router, beside an arc; white-haloed so the edges show through.
            let (la, lb) = (shorten(&ab.label(), 60), shorten(&ba.label(), 60));
            let lines: Vec<(String, &str)> = if la == lb {
                vec![(format!("{} ↔ {}: {la}", a.host.name, b.host.name), ab.class())]
            } else {
                vec![
                    (format!("{} → {}: {la}", a.host.name, b.host.name), ab.class()),
                    (format!("{} → {}: {lb}", b.host.name, a.host.name), ba.class()),
                ]
            };
            let n = lines.len() as f64;
            let (lx, first_y) = match anchor {
                "middle" => (m.0, m.1 - 6.0 - 13.0 * (n - 1.0)),
                "start" => (m.0 + 8.0, m.1 + 4.0 - 6.5 * (n - 1.0)),
                _ => (m.0 - 8.0, m.1 + 4.0 - 6.5 * (n - 1.0)),
            };
            for (k, (t, class)) in lines.iter().enumerate() {
                labels.push(
                    text(lx, first_y + 13.0 * k as f64, t, anchor, 10.5)
                        .attr("fill", darker(class))
                        .attr("stroke", "#ffffff")
                        .attr("stroke-width", "3")
                        .attr("stroke-linejoin", "round")
                        .attr("paint-order", "stroke")
                        .class(format!("edge-label {class}")),
                );
            }
        }
    }
    svg.push(edges);

    // The hosts.
    for p in &placed {
        let h = p.host;
        let late = h.joins_later;
        let mut g = el("g").class("host").attr("data-host", &h.name);
        let fill = if h.role == Role::Server { "#ede7f6" } else { "#ffffff" };
        let mut r = rect(p.x, p.y, HOST_W, HOST_H, fill)
            .attr("stroke", if h.role == Role::Server { "#5e35b1" } else { "#37474f" })
            .attr("rx", "6");
        if late {
            r = r.attr("stroke-dasharray", "5 3");
        }
        g.push(r);
        g.push(text(p.x + 10.0, p.y + 17.0, &h.name, "start", 13.0).attr("font-weight", "700"));
        g.push(text(p.x + 10.0, p.y + 32.0, &h.addr.to_string(), "start", 11.5).class("mono"));
        let role = match (h.role, late) {
            (Role::Server, _) => "server: headscale, DERP, STUN",
            (Role::Client, false) => "client: tailscaled",
            (Role::Client, true) => "client: joins later (P4, P5)",
        };
        g.push(text(p.x + 10.0, p.y + 46.0, role, "start", 10.5).attr("fill", "#455a64"));
        svg.push(g);
    }
    for (lan, x, y) in plain {
        let mut g = el("g").class("host lan").attr("data-host", &lan.name);
        g.push(rect(x, y, HOST_W, HOST_H, "#fafafa").attr("stroke", "#90a4ae").attr("stroke-dasharray", "2 3").attr("rx", "6"));
        g.push(text(x + 10.0, y + 17.0, &lan.name, "start", 13.0).attr("font-weight", "700"));
        g.push(text(x + 10.0, y + 32.0, &lan.addr.to_string(), "start", 11.5).class("mono"));
        g.push(text(x + 10.0, y + 46.0, "plain host: no tailscale (P8)", "start", 10.5).attr("fill", "#455a64"));
        svg.push(g);
    }
    svg.push(labels);

    // The legend.
    let mut legend = el("g").class("legend");
    let mut x = MARGIN;
    for (class, what) in LEGEND {
        let mut l = line(x, legend_y, x + 28.0, legend_y, stroke(class), 3.5);
        if *class == "not-measured" {
            l = l.attr("stroke-dasharray", "6 5");
        }
        legend.push(l);
        legend.push(text(x + 34.0, legend_y + 4.0, what, "start", 11.5));
        x += 44.0 + what.chars().count() as f64 * 6.6;
    }
    legend.push(
        text(MARGIN, legend_y + 22.0, "each half of an edge is one direction: from the host at its end; its label gives that direction's path and round trip", "start", 11.0)
            .attr("fill", "#555"),
    );
    svg.push(legend);
    svg
}

/// A direction's label colour: its edge's, a little darker where that is pale.
fn darker(class: &str) -> &'static str {
    match class {
        "not-measured" => "#616161",
        "derp" => "#b94f00",
        other => stroke(other),
    }
}

type Point = (f64, f64);

/// An edge between two clients as a quadratic curve (start, control, end) and how its label
/// is anchored: straight across the router for clients of different subnets, an arc out of the
/// subnet's outer side for clients of one.
fn geometry(a: &Placed, b: &Placed, xs: &[f64; 2]) -> (Point, Point, Point, &'static str) {
    let mid_y = |p: &Placed| p.y + HOST_H / 2.0;
    if a.side != b.side {
        let (l, r) = if a.side == 0 { (a, b) } else { (b, a) };
        let (pl, pr) = ((xs[0] + PAD + HOST_W, mid_y(l)), (xs[1] + PAD, mid_y(r)));
        let (p0, p2) = if a.side == 0 { (pl, pr) } else { (pr, pl) };
        let c = ((p0.0 + p2.0) / 2.0, (p0.1 + p2.1) / 2.0);
        return (p0, c, p2, "middle");
    }
    let distance = a.row.abs_diff(b.row).max(1) as f64;
    let bulge = 36.0 + 40.0 * (distance - 1.0);
    let (edge_x, out, anchor) = if a.side == 0 { (xs[0] + PAD, -1.0, "end") } else { (xs[1] + PAD + HOST_W, 1.0, "start") };
    let (p0, p2) = ((edge_x, mid_y(a)), (edge_x, mid_y(b)));
    let c = (edge_x + out * 2.0 * bulge, (p0.1 + p2.1) / 2.0);
    (p0, c, p2, anchor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(from: &str, to: &str, reach: Reach, probe: &str, rtt: Option<f64>) -> PairFigure {
        PairFigure { rtt_ms: rtt, ..PairFigure::new(from, to, reach, probe) }
    }

    #[test]
    fn the_path_seen_wins_over_a_probe_that_does_not_see_it() {
        let icmp = pair("client-1", "client-2", Reach::Reached, "ping (ICMP, IPv4), mean of 5", Some(0.8));
        let pong = pair("client-1", "client-2", Reach::Direct, "tailscale ping", Some(0.4)).via("192.168.1.1:41641");
        let d = Direction::of("client-1", "client-2", &[&pong, &icmp]);
        assert_eq!((d.reach, d.rtt_ms, d.label()), (Some(Reach::Direct), Some(0.4), "direct 0.4 ms".to_string()));
        assert_eq!(Direction::of("client-2", "client-1", &[&pong, &icmp]).label(), "not measured");
        let d = Direction::of("client-1", "client-2", &[&icmp]);
        assert_eq!(d.label(), "reached 0.8 ms");
    }

    #[test]
    fn a_pong_rounded_to_nothing_is_under_half_a_millisecond() {
        let pong =
            PairFigure { resolution_ms: Some(1.0), ..pair("client-1", "client-2", Reach::Direct, "tailscale ping", Some(0.0)) };
        assert_eq!(Direction::of("client-1", "client-2", &[&pong]).label(), "direct < 0.5 ms");
    }

    #[test]
    fn a_policy_direction_names_its_refused_probes() {
        let a = pair("client-1", "client-3", Reach::Reached, "TCP 8080", None);
        let b = pair("client-1", "client-3", Reach::Refused, "TCP 8081", None);
        assert_eq!(Direction::of("client-1", "client-3", &[&a, &b]).label(), "reached: TCP 8080; refused: TCP 8081");
        let c = pair("client-2", "client-1", Reach::Refused, "ICMP", None);
        let d = Direction::of("client-2", "client-1", &[&c]);
        assert_eq!((d.class(), d.label()), ("refused", "refused: ICMP".to_string()));
    }

    #[test]
    fn every_client_pair_is_an_edge_and_a_missing_one_is_not_measured() {
        let spec = LabSpec::new("192.168.1.0/24", "10.0.0.0/24").unwrap();
        let pong = pair("client-1", "client-2", Reach::Direct, "tailscale ping", Some(0.4));
        let svg = drawing(&spec, &[&pong], "lab").render();
        let clients = spec.hosts.iter().filter(|h| h.role == Role::Client).count();
        assert_eq!(svg.matches("class=\"pair\"").count(), clients * (clients - 1) / 2, "{svg}");
        assert_eq!(svg.matches("class=\"direction direct\"").count(), 1);
        assert_eq!(svg.matches("class=\"direction not-measured\"").count(), clients * (clients - 1) - 1);
        assert!(svg.contains("client-1 → client-2: direct 0.4 ms"));
        assert!(svg.contains("client-2 → client-1: not measured"));
        assert!(svg.contains("client-1 ↔ client-3: not measured"), "one line where both directions are alike");
        for host in spec.hosts.iter().map(|h| &h.name).chain(spec.lan_hosts.iter().map(|h| &h.name)) {
            assert!(svg.contains(&format!("data-host=\"{host}\"")), "{host} drawn");
        }
        assert!(svg.contains("plain host: no tailscale"), "lan-1 is drawn as the plain host it is");
        assert!(svg.contains(">router<") && svg.contains(">NAT<") && svg.contains("behind the router&#39;s NAT"));
        assert!(svg.contains("subnet A 192.168.1.0/24") && svg.contains("subnet B 10.0.0.0/24"));
    }
}
