//! cluster.toml: the tracker cluster address book and timings.
