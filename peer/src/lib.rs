//! The peer: a daemon that serves pieces and runs swarm downloads, a CLI that talks to the
//! tracker cluster and to the daemon of its HOME, and an interactive shell.
//!
//! Architecture Invariant: the peer knows the tracker only through `tracker-client` and the
//! piece protocol only through `proto::piece`; it never links the state machine.

pub mod cli;
pub mod control;
pub mod daemon;
pub mod hashing;
pub mod home;
pub mod identity;
pub mod piece_lists;
pub mod progress;
pub mod shell;
pub mod trackers;
