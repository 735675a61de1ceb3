//! The chaos suite in CI: a seeded 60 s run against a real 3-node cluster, with leader kills,
//! pauses, partitions and at least one kill-all (every node SIGKILLed, then restarted); the
//! checker must find no lost write, no double application, no linearizability violation, no
//! term with two leaders, no panicked client and a converged cluster, and must have searched
//! every write window (none skipped as too large).
//!
//! That the same checker fails the deliberately broken build is shown by `broken_build.rs`.

use chaos::faults::FaultKind;

/// Write windows the checker may leave unsearched in this run (over `MAX_SEARCH_OPS` calls).
/// At most 2 of the run's ~14 000 keys. A window over 128 operations needs a write held for
/// about a second under full load, and a write left pending through a kill-all does that (seen
/// here: 1 window in one run of eight). Such a window still has its order rules checked; only
/// the exhaustive search is skipped. More than 2 would mean the claim covers noticeably less
/// than the report says.
const MAX_SKIPPED_WINDOWS: usize = 2;

#[test]
fn a_seeded_minute_of_faults_loses_nothing_and_stays_linearizable() {
    let report = chaos::run(chaos::Config::suite(20261124, 60)).expect("the chaos run starts");
    let md = report.markdown();
    println!("{md}");
    assert!(report.faults.values().sum::<u64>() >= 20, "enough faults were injected: {md}");
    assert!(report.faults.get(&FaultKind::KillAll).copied().unwrap_or(0) >= 1, "a kill-all was injected: {md}");
    assert!(report.ops.values().map(|c| c[0]).sum::<u64>() > 1_000, "the workload made progress: {md}");
    assert!(report.verdict.search_skipped <= MAX_SKIPPED_WINDOWS, "write windows left unsearched: {md}");
    assert!(report.client_panics.is_empty(), "{md}");
    assert!(report.ok(), "{md}");
}
