//! tracker-node's integration tests, one module per file of this folder, built as one test
//! binary (`cargo test --release -p tracker-node --test all [FILTER]`, e.g. `membership::`).
//!
//! One binary rather than one per file: cargo runs test binaries one after another, while the
//! tests of one binary overlap; most of these tests wait (on elections, timeouts, restarts) far
//! more than they compute. testkit's `slots` bounds how many clusters run at once, and a test
//! whose claim needs the machine to itself (no election during a flood, counts in a window)
//! takes `testkit::alone()` first. Building one binary also links the dependencies once
//! instead of once per file.

mod accept_floods;
mod admin_access;
mod api_boundaries;
mod api_contract;
mod data_dir_modes;
mod fuzz_api;
mod login_flood;
mod membership;
mod netns;
mod node_cli;
mod operator_ux;
mod quiet_logs;
mod quotas;
mod raft_cluster;
mod raft_membership;
mod raft_scale;
mod raft_tls;
mod registration;
mod single_node;
mod snapshot_restore;
mod tickets;
