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
//! - [`poll`], [`budget`], [`exec`], [`process`]: waiting, time limits, commands, services.

pub mod progress;

pub mod backend;
pub mod budget;
pub mod combos;
pub mod dns;
pub mod exec;
pub mod fanout;
pub mod fixture;
pub mod guards;
pub mod headscale;
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
pub mod tailscale;
pub mod tools;
pub mod upgrade;
pub mod userconfig;
pub mod version;
pub mod web;

pub use fixture::lab;
