//! P8 — subnet routes. A plain host on subnet B (`lan-1`: no tailscale, nothing but its kernel)
//! is out of client-1's reach: the router forwards nothing from subnet A into B. client-2
//! advertises a route to it; client-1, which accepts routes, reaches it only once an admin has
//! approved the route with headscale's CLI, the packets arriving from client-2 (checked on the
//! wire, not assumed), and no longer once the approval is withdrawn. With client-3 advertising
//! the same route, cutting the primary router's link moves the route to the other within a
//! bound, without flapping while it is away, and what happens when it returns is measured:
//! when its tailscaled stops (its map session ends), and when its link is cut without a word
//! (which only a headscale that probes its HA routers notices: 0.28 and later).
//! Every change is undone by a guard, so the shared lab is left as it was found.

use anyhow::{anyhow, bail, ensure, Context, Result};
use meshlab::guards::Undo;
use meshlab::lab::Lab;
use meshlab::report::Figure;
use meshlab::{budget, fixture, ping, poll, say};
use serial_test::serial;
use std::time::Instant;

/// The client that uses the route, on subnet A.
const USER: &str = "client-1";
/// The subnet routers, on subnet B beside the LAN host.
const ROUTERS: [&str; 2] = ["client-2", "client-3"];
/// The plain host behind them.
const LAN: &str = "lan-1";

/// The LAN host's address and the route to it (a /32: the rest of subnet B stays as it is
/// for every other scenario).
fn lan(lab: &Lab) -> Result<(String, String)> {
    let addr = lab.record.spec.lan_host(LAN)?.addr.to_string();
    Ok((addr.clone(), format!("{addr}/32")))
}

/// `tailscale set FLAGS` on a client, as its user would.
fn set(lab: &Lab, client: &str, flag: &str) -> Result<()> {
    lab.client(client)?.set(&[flag]).with_context(|| client.to_string())
}

/// The setup a subnet router needs: IP forwarding on (tailscale's own advice), the route
/// advertised. Both are undone when the guard goes.
fn advertise<'a>(lab: &'a Lab, router: &'a str, route: &str) -> Result<Undo<'a>> {
    let host = lab.host(router)?;
    host.succeed(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    let undo = Undo::new(&format!("{router} advertising no route, forwarding off"), move || {
        set(lab, router, "--advertise-routes=")?;
        lab.host(router)?.succeed(&["sysctl", "-qw", "net.ipv4.ip_forward=0"]).map(|_| ())
    });
    set(lab, router, &format!("--advertise-routes={route}"))?;
    Ok(undo)
}

/// client-1 accepting the routes peers offer (off by default on Linux), until the guard goes.
fn accept_routes(lab: &Lab) -> Result<Undo<'_>> {
    set(lab, USER, "--accept-routes=true")?;
    Ok(Undo::new(&format!("{USER} accepting no routes"), move || set(lab, USER, "--accept-routes=false")))
}

/// Approvals withdrawn from the routers when the guard goes.
fn unapprove_on_drop(lab: &Lab) -> Undo<'_> {
    Undo::new("no route approved", move || {
        for r in ROUTERS {
            lab.headscale().approve_routes(r, &[])?;
        }
        Ok(())
    })
}

/// headscale lists `route` among `router`'s advertised routes.
fn await_advertised(lab: &Lab, router: &str, route: &str) -> Result<()> {
    poll::until(&format!("headscale listing {router}'s advertised route {route}"), budget::route_propagation(), || {
        let node = lab.headscale().node(router)?;
        ensure!(node.available_routes.iter().any(|r| r == route), "{router} advertises {:?}", node.available_routes);
        Ok(())
    })
}

/// Which router client-1 sees as the primary for `route`; an error unless exactly one.
fn primary_seen(lab: &Lab, route: &str) -> Result<String> {
    let status = lab.client(USER)?.status()?;
    let primaries: Vec<String> = ROUTERS
        .iter()
        .filter(|r| status.peer(r).is_some_and(|p| p.primary_routes.iter().flatten().any(|x| x == route)))
        .map(|r| r.to_string())
        .collect();
    match primaries.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("{USER} sees no primary router for {route}"),
        many => bail!("{USER} sees {} primaries for {route}: {many:?}", many.len()),
    }
}

/// client-1 pings the LAN host, and it answers.
fn reaches_lan(lab: &Lab, addr: &str) -> Result<()> {
    ping::answers(lab.host(USER)?, addr).map_err(|e| anyhow!("{USER} → {LAN} at {addr}: {e:#}"))
}

/// The echo requests the LAN host received during three pings from client-1, as the router's
/// bridge saw them: every one must come from `router`'s own address (the subnet router
/// translates the tailnet's source to its own), and none from client-1's.
fn requests_come_from(lab: &Lab, addr: &str, router: &str) -> Result<usize> {
    let capture = lab.underlay().capture(&format!("icmp and dst host {addr}"))?;
    let pinged = ping::ping(lab.host(USER)?, addr, 3);
    let captured = capture.stop()?;
    pinged?;
    let from = lab.record.spec.host(router)?.addr.to_string();
    let requests: Vec<&String> = captured.packets.iter().filter(|l| l.contains("ICMP echo request")).collect();
    ensure!(!requests.is_empty(), "no echo request to {addr} crossed the router's bridge (capture {})", captured.path.display());
    let strangers: Vec<&&String> = requests.iter().filter(|l| !l.contains(&format!(" {from} > {addr}"))).collect();
    ensure!(
        strangers.is_empty(),
        "echo requests reached {LAN} from elsewhere than {router} ({from}):\n  {}",
        strangers.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  ")
    );
    Ok(requests.len())
}

#[test]
#[serial]
fn a_lan_host_is_reached_through_the_subnet_router_only_while_its_route_is_approved() -> Result<()> {
    let lab = fixture::lab();
    let (addr, route) = lan(lab)?;
    let router = ROUTERS[0];
    // Out of reach to begin with: nothing is forwarded from subnet A into B.
    ensure!(reaches_lan(lab, &addr).is_err(), "{USER} reaches {LAN} at {addr} with no route: the lab is not what it should be");
    let _unapprove = unapprove_on_drop(lab);
    let _advertised = advertise(lab, router, &route)?;
    let _accepting = accept_routes(lab)?;
    await_advertised(lab, router, &route)?;
    let node = lab.headscale().node(router)?;
    ensure!(
        node.approved_routes.is_empty(),
        "{router}'s route is approved before anyone approved it: {:?}",
        node.approved_routes
    );
    // Advertised, accepted, not approved: still out of reach, as long as an approval would take.
    let unapproved = poll::holds(
        &format!("{USER} not reaching {LAN} while the route is unapproved"),
        budget::route_watch(),
        budget::hold_interval(),
        || match reaches_lan(lab, &addr) {
            Ok(()) => bail!("{USER} reached {LAN} through a route nobody approved"),
            Err(_) => Ok(()),
        },
    )?;
    say!("{USER} did not reach {LAN} in {unapproved} tries over {:?} while the route was unapproved", budget::route_watch());

    let approved = Instant::now();
    lab.headscale().approve_routes(router, std::slice::from_ref(&route))?;
    poll::until(&format!("{USER} reaching {LAN} through {router}"), budget::route_propagation(), || reaches_lan(lab, &addr))?;
    Figure::new("P8-route-propagated", "an approved subnet route carrying traffic", approved.elapsed().as_secs_f64(), "s")
        .record();
    ensure!(primary_seen(lab, &route)? == router, "{USER} sees another primary for {route} than {router}");
    let node = lab.headscale().node(router)?;
    ensure!(node.subnet_routes.contains(&route), "headscale does not list {route} among {router}'s served routes: {node:?}");
    let requests = requests_come_from(lab, &addr, router)?;
    say!("{requests} echo requests reached {LAN}, every one from {router}'s own address");

    let withdrawn = Instant::now();
    lab.headscale().approve_routes(router, &[])?;
    poll::until(&format!("{USER} no longer reaching {LAN}"), budget::route_propagation(), || match reaches_lan(lab, &addr) {
        Ok(()) => bail!("{USER} still reaches {LAN}"),
        Err(_) => Ok(()),
    })?;
    Figure::new(
        "P8-route-withdrawn",
        "a withdrawn subnet route no longer carrying traffic",
        withdrawn.elapsed().as_secs_f64(),
        "s",
    )
    .record();
    Ok(())
}

/// Both routers advertising the route, both approved, client-1 accepting and reaching the LAN
/// host through the one headscale made primary; every piece undone when it goes.
struct TwoRouters<'a> {
    primary: String,
    backup: String,
    _guards: Vec<Undo<'a>>,
}

fn two_routers<'a>(lab: &'a Lab, addr: &str, route: &str) -> Result<TwoRouters<'a>> {
    let mut guards = vec![unapprove_on_drop(lab)];
    for r in ROUTERS {
        guards.push(advertise(lab, r, route)?);
    }
    guards.push(accept_routes(lab)?);
    for r in ROUTERS {
        await_advertised(lab, r, route)?;
        lab.headscale().approve_routes(r, &[route.to_string()])?;
    }
    let primary = poll::until(&format!("{USER} reaching {LAN} through one primary"), budget::route_propagation(), || {
        reaches_lan(lab, addr)?;
        primary_seen(lab, route)
    })?;
    let backup = ROUTERS.into_iter().find(|r| *r != primary).expect("two routers").to_string();
    say!("{primary} is the primary for {route}, {backup} the standby");
    Ok(TwoRouters { primary, backup, _guards: guards })
}

/// The route carried by `to` for client-1: its primary, and the LAN host reached.
fn await_moved(lab: &Lab, addr: &str, route: &str, to: &str) -> Result<()> {
    poll::until(&format!("{route} moving to {to} and carrying traffic"), budget::route_failover(), || {
        let now = primary_seen(lab, route)?;
        ensure!(now == to, "{USER} still sees {now} as the primary");
        reaches_lan(lab, addr)
    })
}

/// `router` back in the mesh (online for headscale, reached by client-1), then the route
/// watched for a while: the primaries client-1 saw, in order.
fn primaries_once_back(lab: &Lab, addr: &str, route: &str, router: &str) -> Result<Vec<String>> {
    poll::until(&format!("{router} back in the mesh"), budget::converge(), || {
        ensure!(lab.headscale().node(router)?.online, "headscale lists {router} offline");
        lab.reaches(USER, router)
    })?;
    let mut seen: Vec<String> = Vec::new();
    poll::holds(
        &format!("{route} carrying traffic once {router} is back"),
        budget::route_settle(),
        budget::hold_interval(),
        || {
            let now = primary_seen(lab, route)?;
            if seen.last() != Some(&now) {
                seen.push(now);
            }
            reaches_lan(lab, addr)
        },
    )?;
    say!("primaries seen after {router} came back, in order: {seen:?}");
    Ok(seen)
}

#[test]
#[serial]
fn a_route_of_two_routers_moves_to_the_standby_when_the_primarys_tailscaled_stops() -> Result<()> {
    let lab = fixture::lab();
    let (addr, route) = lan(lab)?;
    let ha = two_routers(lab, &addr, &route)?;
    let router = lab.client(&ha.primary)?;
    router.host.stop_service(meshlab::tailscale::SERVICE)?;
    let restart = Undo::new(&format!("{}'s tailscaled", ha.primary), || {
        router.start_daemon()?;
        router.await_daemon()
    });
    let stopped = Instant::now();
    await_moved(lab, &addr, &route, &ha.backup)?;
    let moved = stopped.elapsed().as_secs_f64();
    Figure::new("P8-route-failover-stopped", "a subnet route moved on once its primary's tailscaled stopped", moved, "s")
        .record();
    requests_come_from(lab, &addr, &ha.backup)?;
    restart.done();
    router.start_daemon()?;
    router.await_daemon()?;
    let seen = primaries_once_back(lab, &addr, &route, &ha.primary)?;
    ensure!(
        seen == [ha.backup.clone()],
        "once {} was back the route went {seen:?}; headscale keeps it with {} until that one fails (no failback)",
        ha.primary,
        ha.backup
    );
    lab.await_mesh(budget::converge())
}

#[test]
#[serial]
fn a_primary_router_cut_off_silently_loses_its_route_where_headscale_probes_its_routers() -> Result<()> {
    let lab = fixture::lab();
    let (addr, route) = lan(lab)?;
    let release = lab.record.tools.versions.headscale_release()?;
    let ha = two_routers(lab, &addr, &route)?;
    lab.underlay().set_link(&ha.primary, false)?;
    let relink = Undo::new(&format!("{}'s link", ha.primary), || lab.underlay().set_link(&ha.primary, true));
    let cut = Instant::now();
    if release.ha_probe {
        await_moved(lab, &addr, &route, &ha.backup)?;
        let moved = cut.elapsed().as_secs_f64();
        Figure::new("P8-route-failover-cut", "a subnet route moved on once its primary's link was cut", moved, "s").record();
        requests_come_from(lab, &addr, &ha.backup)?;
        poll::holds(
            &format!("{} staying the primary while {} is away", ha.backup, ha.primary),
            budget::route_watch(),
            budget::hold_interval(),
            || {
                let now = primary_seen(lab, &route)?;
                ensure!(now == ha.backup, "the route went back to {now} while its link was down");
                reaches_lan(lab, &addr)
            },
        )?;
    } else {
        // As it is: headscale before 0.28 moves a route only when its primary's map session
        // ends, and a silent cut leaves the session open; the LAN is out of reach meanwhile.
        poll::holds(
            &format!("{} keeping the route while cut off", ha.primary),
            budget::route_failover(),
            budget::hold_interval(),
            || {
                let now = primary_seen(lab, &route)?;
                ensure!(now == ha.primary, "the route moved to {now}: this headscale does notice a silent cut");
                match reaches_lan(lab, &addr) {
                    Ok(()) => bail!("{USER} reached {LAN} through a primary that is cut off"),
                    Err(_) => Ok(()),
                }
            },
        )?;
        say!(
            "headscale {} does not probe its HA routers: the route stayed with the cut-off {} for {:?}, {LAN} out of reach",
            lab.record.tools.versions.headscale,
            ha.primary,
            budget::route_failover()
        );
    }
    relink.done();
    lab.underlay().set_link(&ha.primary, true)?;
    let seen = primaries_once_back(lab, &addr, &route, &ha.primary)?;
    let expected = if release.ha_probe { &ha.backup } else { &ha.primary };
    ensure!(seen == [expected.clone()], "once {} was back the route went {seen:?}, not staying with {expected}", ha.primary);
    lab.await_mesh(budget::converge())
}
