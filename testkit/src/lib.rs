//! Test and benchmark harness: a real tracker cluster (tracker-node processes) and real peers
//! (peer daemons and CLI invocations) on 127.0.0.1, ports chosen at run time, temporary HOMEs.
//! Waits on conditions, never fixed sleeps; every process started here is killed by PID on drop.
//!
//! Used by the integration tests of `tracker-node` and `peer`, and by `bench`. This file only
//! declares the modules and re-exports what the tests call, so that `use testkit::*` reaches it:
//!
//! - `ports`: run-time loopback ports, reserved across test processes;
//! - `bins`: the workspace binaries the tests run, built once per test run when stale;
//! - `http`: calls to a node's API through reqwest (plain, or HTTPS with the cluster CA);
//! - `layout`: a test cluster's options and cluster file; `cluster`: its nodes as processes,
//!   `inproc`: its nodes in this process, both asked what they report through `view`'s
//!   `ClusterView`;
//! - `peer`: a peer's HOME, daemon and CLI; `peer_steps`: the setups and download steps peer
//!   tests share; `files`: seeded test files; `wait`: bounded waits;
//! - `client`: the async tracker client in tests; `process`: children signalled by PID;
//! - `flood`, `fuzz`, `netns`: connection floods, the mutation fuzzer, hosts of their own;
//! - `slots`: how many clusters a test binary runs at once, and tests that run alone.

pub mod flood;
pub mod fuzz;
pub mod inproc;
pub mod netns;
pub mod ports;
pub mod slots;

mod bins;
mod client;
mod cluster;
mod files;
mod http;
mod layout;
mod peer;
mod peer_steps;
mod process;
mod view;
mod wait;

pub use bins::{peer_bin, tracker_node, workspace_bin};
pub use client::{group_names, logged_in, runtime, SteadyWrites};
pub use cluster::Cluster;
pub use files::{file_sha1, random_file, walk};
pub use http::{
    call_following_redirects, http, http_as, http_get_json, http_with_timeout, https_with_timeout, is_loopback,
    node_get_json, HttpResponse, TlsAs,
};
pub use layout::ClusterOptions;
pub use peer::{Peer, Run};
pub use peer_steps::{slow_team, team, team_with};
pub use ports::free_port;
pub use slots::alone;
pub use view::{ClusterView, StableView};
pub use wait::wait_until;
