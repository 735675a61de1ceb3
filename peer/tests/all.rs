//! The peer crate's integration tests, one module per file of this folder, built as one test
//! binary (`cargo test --release -p peer --test all [FILTER]`, e.g. `liveness::`).
//!
//! One binary rather than one per file: cargo runs test binaries one after another, while the
//! tests of one binary overlap; most of these tests wait (on elections, liveness periods,
//! timeouts) far more than they compute. testkit's `slots` bounds how many clusters run at
//! once, and a test whose claim needs the machine to itself takes `testkit::alone()` first.
//! Building one binary also links the dependencies once instead of once per file.

mod raw;

mod accept_floods;
mod chaos_swarm;
mod cli_reference;
mod contract;
mod downloads_ux;
mod failures;
mod liveness;
mod local_safety;
mod manage;
mod netns;
mod newcomer_cli;
mod peer_security;
mod piece_list;
mod piece_server;
mod refusals;
mod sessions;
mod shell_script;
mod shell_tty;
mod stale_rights;
mod status;
mod swarm;
mod workflow;
