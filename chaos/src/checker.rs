//! Checks a recorded history against the final state of the cluster.
//!
//! - **Durability:** every acknowledged write is in the final state; no refused write is.
//! - **Exactly once:** a retried write applied twice shows as a refusal that only a second
//!   application can cause (`group_exists` for a name created once, `no_such_request` for a
//!   request that was filed and accepted once).
//! - **Linearizability, per key.** The state the workload touches is a set of independent
//!   flags that only ever go from false to true, each set by exactly one write: a group exists,
//!   a user is a member of a group, a file is listed in a group. Every read observes some of
//!   them. For each flag, the sub-history (its write and the reads that observed it) must be
//!   linearizable against a boolean register model. Reads that cannot overlap the write are
//!   checked by their order alone; the write's window is searched exhaustively in the way of
//!   Wing and Gong (try every minimal operation next, memoise dead ends). Checking key by key
//!   is sound for the single-key operations; a read of many keys is checked once per key,
//!   which is necessary but not sufficient for a multi-key snapshot.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::history::{Entry, Op, Outcome};

/// The state read back from the converged cluster at the end of the run.
#[derive(Debug, Default, Clone)]
pub struct FinalState {
    pub groups: HashSet<String>,
    pub members: HashSet<(String, String)>,
    pub files: HashSet<(String, String)>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Verdict {
    pub lost_writes: Vec<String>,
    pub refused_but_applied: Vec<String>,
    pub applied_twice: Vec<String>,
    pub not_linearizable: Vec<String>,
    /// Keys whose write window held too many concurrent reads for the exhaustive search (their
    /// order rules were still checked).
    pub search_skipped: usize,
    pub keys_checked: usize,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.lost_writes.is_empty() && self.refused_but_applied.is_empty() && self.applied_twice.is_empty() && self.not_linearizable.is_empty()
    }
}

/// One write of a flag: its interval and outcome.
#[derive(Clone, Debug)]
pub struct FlagWrite {
    pub invoke_ms: u64,
    pub complete_ms: u64,
    pub outcome: Outcome,
}

/// One read of a flag: its interval and the value seen.
#[derive(Clone, Copy, Debug)]
pub struct FlagRead {
    pub invoke_ms: u64,
    pub complete_ms: u64,
    pub value: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Group(String),
    Member(String, String),
    File(String, String),
}

pub fn check(history: &[Entry], fin: &FinalState) -> Verdict {
    let mut v = Verdict::default();
    let mut writes: BTreeMap<Key, FlagWrite> = BTreeMap::new();
    let mut joined_ok: HashSet<(String, String)> = HashSet::new();
    for e in history {
        let w = FlagWrite { invoke_ms: e.invoke_ms, complete_ms: e.complete_ms, outcome: e.outcome.clone() };
        match &e.op {
            Op::CreateGroup { group } => {
                if e.outcome == Outcome::Fail("group_exists".into()) {
                    v.applied_twice.push(format!("create_group {group}: answered group_exists for a name created once"));
                }
                writes.insert(Key::Group(group.clone()), w);
            }
            Op::Accept { group, user } => {
                if e.outcome == Outcome::Fail("no_such_request".into()) && joined_ok.contains(&(group.clone(), user.clone())) {
                    v.applied_twice.push(format!("accept {user} into {group}: answered no_such_request for a request filed once"));
                }
                writes.insert(Key::Member(group.clone(), user.clone()), w);
            }
            Op::Join { group, user } => {
                if e.outcome == Outcome::Ok {
                    joined_ok.insert((group.clone(), user.clone()));
                }
            }
            Op::Upload { group, file } => {
                writes.insert(Key::File(group.clone(), file.clone()), w);
            }
            Op::StopShare { .. } | Op::ListGroups { .. } | Op::ListFiles { .. } => {}
        }
    }

    // Durability, and refused writes that took effect anyway.
    for (key, w) in &writes {
        let present = match key {
            Key::Group(g) => fin.groups.contains(g),
            Key::Member(g, u) => fin.members.contains(&(g.clone(), u.clone())),
            Key::File(g, f) => fin.files.contains(&(g.clone(), f.clone())),
        };
        match (&w.outcome, present) {
            (Outcome::Ok, false) => v.lost_writes.push(format!("{key:?} acknowledged at {} ms, missing at the end", w.complete_ms)),
            (Outcome::Fail(code), true) => v.refused_but_applied.push(format!("{key:?} refused ({code}) but present at the end")),
            _ => {}
        }
    }

    // Reads, per key.
    let mut reads: HashMap<Key, Vec<FlagRead>> = HashMap::new();
    for e in history.iter().filter(|e| e.outcome == Outcome::Ok) {
        match &e.op {
            Op::ListGroups { user, seen } => {
                let seen: HashMap<&str, bool> = seen.iter().map(|(g, m)| (g.as_str(), *m)).collect();
                for key in writes.keys() {
                    let value = match key {
                        Key::Group(g) => seen.contains_key(g.as_str()),
                        Key::Member(g, u) if u == user => seen.get(g.as_str()).copied().unwrap_or(false),
                        _ => continue,
                    };
                    reads.entry(key.clone()).or_default().push(FlagRead { invoke_ms: e.invoke_ms, complete_ms: e.complete_ms, value });
                }
            }
            Op::ListFiles { group, seen } => {
                for key in writes.keys() {
                    if let Key::File(g, f) = key {
                        if g == group {
                            let value = seen.contains(f);
                            reads.entry(key.clone()).or_default().push(FlagRead { invoke_ms: e.invoke_ms, complete_ms: e.complete_ms, value });
                        }
                    }
                }
            }
            _ => {}
        }
    }
    for (key, w) in &writes {
        v.keys_checked += 1;
        let rs = reads.remove(key).unwrap_or_default();
        match check_flag(w, &rs) {
            FlagCheck::Ok => {}
            FlagCheck::SearchSkipped => v.search_skipped += 1,
            FlagCheck::Violation(why) => v.not_linearizable.push(format!("{key:?}: {why}")),
        }
    }
    v
}

#[derive(Debug, PartialEq, Eq)]
pub enum FlagCheck {
    Ok,
    SearchSkipped,
    Violation(String),
}

/// Largest number of operations in one write window searched exhaustively.
pub const MAX_SEARCH_OPS: usize = 128;

/// One flag: its single write and every read of it.
pub fn check_flag(w: &FlagWrite, reads: &[FlagRead]) -> FlagCheck {
    let mut reads = reads.to_vec();
    reads.sort_by_key(|r| (r.invoke_ms, r.complete_ms));
    // A refused write never happened: nobody may see it.
    if let Outcome::Fail(code) = &w.outcome {
        if let Some(r) = reads.iter().find(|r| r.value) {
            return FlagCheck::Violation(format!("a read at {}–{} ms saw a write that was refused ({code})", r.invoke_ms, r.complete_ms));
        }
        return FlagCheck::Ok;
    }
    // Nothing can be seen before the write was invoked.
    if let Some(r) = reads.iter().find(|r| r.value && r.complete_ms < w.invoke_ms) {
        return FlagCheck::Violation(format!("a read at {}–{} ms saw the write invoked at {} ms", r.invoke_ms, r.complete_ms, w.invoke_ms));
    }
    // Once some read has seen it, every read that starts later sees it.
    if let Some(first_true) = reads.iter().filter(|r| r.value).map(|r| r.complete_ms).min() {
        if let Some(r) = reads.iter().find(|r| !r.value && r.invoke_ms > first_true) {
            return FlagCheck::Violation(format!(
                "a read at {}–{} ms did not see what a read completed at {first_true} ms had seen",
                r.invoke_ms, r.complete_ms
            ));
        }
    }
    if w.outcome != Outcome::Ok {
        // Unknown: it may have happened at any time after its invocation, or never; the rules
        // above are all a monotonic flag allows.
        return FlagCheck::Ok;
    }
    // Acknowledged: every read that starts after the acknowledgement sees it.
    if let Some(r) = reads.iter().find(|r| !r.value && r.invoke_ms > w.complete_ms) {
        return FlagCheck::Violation(format!(
            "a read at {}–{} ms missed the write acknowledged at {} ms (stale read or lost write)",
            r.invoke_ms, r.complete_ms, w.complete_ms
        ));
    }
    // The write's window: search for a linearization of the write and the reads overlapping it.
    let window: Vec<Call> = std::iter::once(Call { invoke_ms: w.invoke_ms, complete_ms: w.complete_ms, read: None })
        .chain(
            reads
                .iter()
                .filter(|r| r.complete_ms >= w.invoke_ms && r.invoke_ms <= w.complete_ms)
                .map(|r| Call { invoke_ms: r.invoke_ms, complete_ms: r.complete_ms, read: Some(r.value) }),
        )
        .collect();
    if window.len() > MAX_SEARCH_OPS {
        return FlagCheck::SearchSkipped;
    }
    if linearizable(&window) {
        FlagCheck::Ok
    } else {
        FlagCheck::Violation(format!("no order of the write ({}–{} ms) and the {} reads overlapping it explains what they saw", w.invoke_ms, w.complete_ms, window.len() - 1))
    }
}

/// An operation on a boolean register that starts false: a write of `true` (`read: None`) or a
/// read that saw a value.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub invoke_ms: u64,
    pub complete_ms: u64,
    pub read: Option<bool>,
}

/// Wing & Gong's search: repeatedly linearize one *minimal* pending call (one that no other
/// pending call finished before), checking it against the register; backtrack on a mismatch,
/// and remember (set of done calls, register value) pairs already found to be dead ends.
pub fn linearizable(calls: &[Call]) -> bool {
    assert!(calls.len() <= MAX_SEARCH_OPS, "search is bounded to {MAX_SEARCH_OPS} calls");
    let full: u128 = if calls.len() == 128 { u128::MAX } else { (1u128 << calls.len()) - 1 };
    let mut dead: HashSet<(u128, bool)> = HashSet::new();
    let mut stack: Vec<(u128, bool)> = vec![(0, false)];
    while let Some((done, value)) = stack.pop() {
        if done == full {
            return true;
        }
        if !dead.insert((done, value)) {
            continue;
        }
        let pending = || (0..calls.len()).filter(move |i| done & (1u128 << i) == 0);
        let earliest_completion = pending().map(|i| calls[i].complete_ms).min().unwrap_or(u64::MAX);
        for i in pending().filter(|&i| calls[i].invoke_ms <= earliest_completion) {
            let next = match calls[i].read {
                None => true,
                Some(seen) if seen == value => value,
                Some(_) => continue,
            };
            stack.push((done | (1u128 << i), next));
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(invoke_ms: u64, complete_ms: u64, outcome: Outcome) -> FlagWrite {
        FlagWrite { invoke_ms, complete_ms, outcome }
    }
    fn r(invoke_ms: u64, complete_ms: u64, value: bool) -> FlagRead {
        FlagRead { invoke_ms, complete_ms, value }
    }

    #[test]
    fn a_linearizable_history_passes() {
        let reads = [r(0, 5, false), r(12, 14, false), r(13, 30, true), r(16, 18, true), r(40, 41, true)];
        assert_eq!(check_flag(&w(10, 20, Outcome::Ok), &reads), FlagCheck::Ok);
        // Concurrent reads may disagree while the write is in flight, in a consistent order.
        assert!(linearizable(&[
            Call { invoke_ms: 0, complete_ms: 10, read: None },
            Call { invoke_ms: 1, complete_ms: 9, read: Some(false) },
            Call { invoke_ms: 2, complete_ms: 8, read: Some(true) },
        ]));
    }

    #[test]
    fn a_stale_read_after_the_acknowledgement_fails() {
        let reads = [r(25, 26, false)];
        assert!(matches!(check_flag(&w(10, 20, Outcome::Ok), &reads), FlagCheck::Violation(_)));
    }

    #[test]
    fn a_value_that_comes_and_goes_fails() {
        let reads = [r(11, 12, true), r(13, 14, false)];
        assert!(matches!(check_flag(&w(10, 20, Outcome::Ok), &reads), FlagCheck::Violation(_)));
        // The same with the write unknown: still not allowed.
        assert!(matches!(check_flag(&w(10, 20, Outcome::Unknown("timeout".into())), &reads), FlagCheck::Violation(_)));
    }

    #[test]
    fn seeing_a_refused_or_future_write_fails() {
        assert!(matches!(check_flag(&w(10, 20, Outcome::Fail("x".into())), &[r(30, 31, true)]), FlagCheck::Violation(_)));
        assert!(matches!(check_flag(&w(10, 20, Outcome::Ok), &[r(1, 2, true)]), FlagCheck::Violation(_)));
    }

    #[test]
    fn the_search_finds_impossible_orders_inside_the_window() {
        // Within the window: a read that saw true finished before another read that saw false
        // began. The order rules catch it; the search must agree on its own.
        let calls = [
            Call { invoke_ms: 0, complete_ms: 100, read: None },
            Call { invoke_ms: 10, complete_ms: 20, read: Some(true) },
            Call { invoke_ms: 30, complete_ms: 40, read: Some(false) },
        ];
        assert!(!linearizable(&calls));
        // Reordered in time, it is fine.
        let calls = [
            Call { invoke_ms: 0, complete_ms: 100, read: None },
            Call { invoke_ms: 10, complete_ms: 20, read: Some(false) },
            Call { invoke_ms: 30, complete_ms: 40, read: Some(true) },
        ];
        assert!(linearizable(&calls));
    }

    #[test]
    fn lost_and_duplicate_writes_are_reported() {
        let history = vec![
            Entry { client: 0, op: Op::CreateGroup { group: "a".into() }, invoke_ms: 0, complete_ms: 5, outcome: Outcome::Ok },
            Entry { client: 0, op: Op::CreateGroup { group: "b".into() }, invoke_ms: 6, complete_ms: 9, outcome: Outcome::Fail("group_exists".into()) },
            Entry {
                client: 1,
                op: Op::ListGroups { user: "u".into(), seen: vec![("a".into(), false)] },
                invoke_ms: 10,
                complete_ms: 11,
                outcome: Outcome::Ok,
            },
        ];
        let fin = FinalState::default();
        let v = check(&history, &fin);
        assert_eq!(v.lost_writes.len(), 1, "{v:?}");
        assert_eq!(v.applied_twice.len(), 1, "{v:?}");
        assert!(!v.ok());
        let fin = FinalState { groups: ["a".to_string()].into(), ..Default::default() };
        let v = check(&history[..1], &fin);
        assert!(v.ok(), "{v:?}");
    }
}
