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
    /// Flags the workload wrote more than once. The model needs exactly one write per flag, so
    /// this is a fault of the harness, not of the cluster; the run fails so that it is fixed
    /// rather than misread (the first write is the one checked).
    pub written_twice: Vec<String>,
    /// Keys whose write window held too many concurrent reads for the exhaustive search (their
    /// order rules were still checked).
    pub search_skipped: usize,
    pub keys_checked: usize,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.lost_writes.is_empty()
            && self.refused_but_applied.is_empty()
            && self.applied_twice.is_empty()
            && self.not_linearizable.is_empty()
            && self.written_twice.is_empty()
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
    let writes = collect_writes(history, &mut v);
    check_final_state(&writes, fin, &mut v);
    check_reads(history, &writes, &mut v);
    v
}

/// Every flag write of the history, by key; findings about the writes themselves go into `v`.
fn collect_writes(history: &[Entry], v: &mut Verdict) -> BTreeMap<Key, FlagWrite> {
    let mut writes: BTreeMap<Key, FlagWrite> = BTreeMap::new();
    let mut joined_ok: HashSet<(String, String)> = HashSet::new();
    let mut write = |v: &mut Verdict, key: Key, w: FlagWrite| match writes.entry(key) {
        std::collections::btree_map::Entry::Vacant(slot) => {
            slot.insert(w);
        }
        std::collections::btree_map::Entry::Occupied(first) => v.written_twice.push(format!(
            "{:?} written at {} ms ({:?}) and again at {} ms ({:?}): the workload must write a flag once",
            first.key(),
            first.get().invoke_ms,
            first.get().outcome,
            w.invoke_ms,
            w.outcome
        )),
    };
    for e in history {
        let w = FlagWrite { invoke_ms: e.invoke_ms, complete_ms: e.complete_ms, outcome: e.outcome.clone() };
        match &e.op {
            Op::CreateGroup { group } => {
                if e.outcome == Outcome::Fail("group_exists".into()) {
                    v.applied_twice
                        .push(format!("create_group {group}: answered group_exists for a name created once"));
                }
                write(v, Key::Group(group.clone()), w);
            }
            Op::Accept { group, user } => {
                if e.outcome == Outcome::Fail("no_such_request".into())
                    && joined_ok.contains(&(group.clone(), user.clone()))
                {
                    v.applied_twice
                        .push(format!("accept {user} into {group}: answered no_such_request for a request filed once"));
                }
                write(v, Key::Member(group.clone(), user.clone()), w);
            }
            Op::Join { group, user } => {
                if e.outcome == Outcome::Ok {
                    joined_ok.insert((group.clone(), user.clone()));
                }
            }
            Op::Upload { group, file } => {
                write(v, Key::File(group.clone(), file.clone()), w);
            }
            Op::StopShare { .. } | Op::ListGroups { .. } | Op::ListFiles { .. } => {}
        }
    }
    writes
}

/// Durability, and refused writes that took effect anyway.
fn check_final_state(writes: &BTreeMap<Key, FlagWrite>, fin: &FinalState, v: &mut Verdict) {
    for (key, w) in writes {
        let present = match key {
            Key::Group(g) => fin.groups.contains(g),
            Key::Member(g, u) => fin.members.contains(&(g.clone(), u.clone())),
            Key::File(g, f) => fin.files.contains(&(g.clone(), f.clone())),
        };
        match (&w.outcome, present) {
            (Outcome::Ok, false) => {
                v.lost_writes.push(format!("{key:?} acknowledged at {} ms, missing at the end", w.complete_ms))
            }
            (Outcome::Fail(code), true) => {
                v.refused_but_applied.push(format!("{key:?} refused ({code}) but present at the end"))
            }
            _ => {}
        }
    }
}

/// Reads, per key, against each write's interval.
fn check_reads(history: &[Entry], writes: &BTreeMap<Key, FlagWrite>, v: &mut Verdict) {
    // Reads, per key. A list-groups read is stored as its difference from what the
    // acknowledged writes predict, so a flag's value in a read is: seen if listed as extra,
    // unseen if listed as missing, otherwise "acknowledged before the read began".
    let lg: Vec<(&Entry, ListGroupsDiff)> = history
        .iter()
        .filter(|e| e.outcome == Outcome::Ok)
        .filter_map(|e| match &e.op {
            Op::ListGroups { user, extra, missing, member_extra, member_missing } => {
                Some((e, ListGroupsDiff { user, extra, missing, member_extra, member_missing }))
            }
            _ => None,
        })
        .collect();
    let index = ReadIndex::new(&lg);
    let mut file_reads: HashMap<&str, Vec<(&Entry, &Vec<String>)>> = HashMap::new();
    for e in history.iter().filter(|e| e.outcome == Outcome::Ok) {
        if let Op::ListFiles { group, seen } = &e.op {
            file_reads.entry(group.as_str()).or_default().push((e, seen));
        }
    }
    for (key, w) in writes {
        v.keys_checked += 1;
        let acked_before = |invoke_ms: u64| w.outcome == Outcome::Ok && w.complete_ms < invoke_ms;
        let (rs, never_seen_after) = match key {
            Key::Group(g) => index.relevant(w, None, g, acked_before),
            Key::Member(g, u) => index.relevant(w, Some(u), g, acked_before),
            Key::File(g, f) => {
                let rs = file_reads
                    .get(g.as_str())
                    .map(|list| {
                        list.iter()
                            .map(|(e, seen)| FlagRead {
                                invoke_ms: e.invoke_ms,
                                complete_ms: e.complete_ms,
                                value: seen.contains(f),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (rs, None)
            }
        };
        if let Some(why) = never_seen_after {
            v.not_linearizable.push(format!("{key:?}: {why}"));
            continue;
        }
        match check_flag(w, &rs) {
            FlagCheck::Ok => {}
            FlagCheck::SearchSkipped => v.search_skipped += 1,
            FlagCheck::Violation(why) => v.not_linearizable.push(format!("{key:?}: {why}")),
        }
    }
}

struct ListGroupsDiff<'a> {
    user: &'a String,
    extra: &'a Vec<String>,
    missing: &'a Vec<String>,
    member_extra: &'a Vec<String>,
    member_missing: &'a Vec<String>,
}

/// The list-groups reads, indexed so that a key's relevant reads are found without scanning
/// every read for every key.
struct ReadIndex<'a> {
    /// All reads, and each user's, sorted by invocation.
    all: Vec<(u64, u64, usize)>,
    by_user: HashMap<&'a str, Vec<(u64, u64, usize)>>,
    /// Reads listing a group as extra / missing; (group, user) for memberships.
    extra: HashMap<&'a str, Vec<usize>>,
    missing: HashMap<&'a str, Vec<usize>>,
    member_extra: HashMap<(&'a str, &'a str), Vec<usize>>,
    member_missing: HashMap<(&'a str, &'a str), Vec<usize>>,
    reads: Vec<(u64, u64)>,
    /// The longest read, to bound the search for reads overlapping a window.
    longest_ms: u64,
}

impl<'a> ReadIndex<'a> {
    fn new(lg: &[(&'a Entry, ListGroupsDiff<'a>)]) -> Self {
        let mut ix = ReadIndex {
            all: Vec::new(),
            by_user: HashMap::new(),
            extra: HashMap::new(),
            missing: HashMap::new(),
            member_extra: HashMap::new(),
            member_missing: HashMap::new(),
            reads: Vec::new(),
            longest_ms: 0,
        };
        for (i, (e, d)) in lg.iter().enumerate() {
            ix.reads.push((e.invoke_ms, e.complete_ms));
            ix.longest_ms = ix.longest_ms.max(e.complete_ms - e.invoke_ms);
            ix.all.push((e.invoke_ms, e.complete_ms, i));
            ix.by_user.entry(d.user.as_str()).or_default().push((e.invoke_ms, e.complete_ms, i));
            for g in d.extra.iter() {
                ix.extra.entry(g.as_str()).or_default().push(i);
            }
            for g in d.missing.iter() {
                ix.missing.entry(g.as_str()).or_default().push(i);
            }
            for g in d.member_extra.iter() {
                ix.member_extra.entry((g.as_str(), d.user.as_str())).or_default().push(i);
            }
            for g in d.member_missing.iter() {
                ix.member_missing.entry((g.as_str(), d.user.as_str())).or_default().push(i);
            }
        }
        ix.all.sort();
        for v in ix.by_user.values_mut() {
            v.sort();
        }
        ix
    }

    /// The reads that matter for one flag (group existence, or `user`'s membership): those that
    /// listed it as extra or missing, and those overlapping the write's window. Also checks the
    /// one rule that needs all reads: once seen, never unseen (for a write that was never
    /// acknowledged every sighting is "extra", so a later read without it is a violation).
    fn relevant(
        &self,
        w: &FlagWrite,
        user: Option<&String>,
        group: &str,
        acked_before: impl Fn(u64) -> bool,
    ) -> (Vec<FlagRead>, Option<String>) {
        let empty = Vec::new();
        let no_reads: Vec<(u64, u64, usize)> = Vec::new();
        let (pool, extra, missing) = match user {
            None => (&self.all, self.extra.get(group).unwrap_or(&empty), self.missing.get(group).unwrap_or(&empty)),
            Some(u) => (
                self.by_user.get(u.as_str()).unwrap_or(&no_reads),
                self.member_extra.get(&(group, u.as_str())).unwrap_or(&empty),
                self.member_missing.get(&(group, u.as_str())).unwrap_or(&empty),
            ),
        };
        let pool: &Vec<(u64, u64, usize)> = pool;
        let value = |i: usize| {
            if extra.contains(&i) {
                true
            } else if missing.contains(&i) {
                false
            } else {
                acked_before(self.reads[i].0)
            }
        };
        let mut picked: Vec<usize> = extra.iter().chain(missing.iter()).copied().collect();
        if w.outcome == Outcome::Ok {
            let from = w.invoke_ms.saturating_sub(self.longest_ms);
            let start = pool.partition_point(|r| r.0 < from);
            picked.extend(
                pool[start..].iter().take_while(|r| r.0 <= w.complete_ms).filter(|r| r.1 >= w.invoke_ms).map(|r| r.2),
            );
        } else if let Some(first_true) = extra.iter().map(|&i| self.reads[i].1).min() {
            let later = pool.len() - pool.partition_point(|r| r.0 <= first_true);
            let later_seen = extra.iter().filter(|&&i| self.reads[i].0 > first_true).count();
            if later_seen < later {
                return (Vec::new(), Some(format!("seen by a read completed at {first_true} ms, then unseen by a later read (the write was never acknowledged)")));
            }
        }
        picked.sort_unstable();
        picked.dedup();
        (
            picked
                .into_iter()
                .map(|i| FlagRead { invoke_ms: self.reads[i].0, complete_ms: self.reads[i].1, value: value(i) })
                .collect(),
            None,
        )
    }
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
            return FlagCheck::Violation(format!(
                "a read at {}–{} ms saw a write that was refused ({code})",
                r.invoke_ms, r.complete_ms
            ));
        }
        return FlagCheck::Ok;
    }
    // Nothing can be seen before the write was invoked.
    if let Some(r) = reads.iter().find(|r| r.value && r.complete_ms < w.invoke_ms) {
        return FlagCheck::Violation(format!(
            "a read at {}–{} ms saw the write invoked at {} ms",
            r.invoke_ms, r.complete_ms, w.invoke_ms
        ));
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
        .chain(reads.iter().filter(|r| r.complete_ms >= w.invoke_ms && r.invoke_ms <= w.complete_ms).map(|r| Call {
            invoke_ms: r.invoke_ms,
            complete_ms: r.complete_ms,
            read: Some(r.value),
        }))
        .collect();
    if window.len() > MAX_SEARCH_OPS {
        return FlagCheck::SearchSkipped;
    }
    if linearizable(&window) {
        FlagCheck::Ok
    } else {
        FlagCheck::Violation(format!(
            "no order of the write ({}–{} ms) and the {} reads overlapping it explains what they saw",
            w.invoke_ms,
            w.complete_ms,
            window.len() - 1
        ))
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
        assert!(matches!(
            check_flag(&w(10, 20, Outcome::Fail("x".into())), &[r(30, 31, true)]),
            FlagCheck::Violation(_)
        ));
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
            Entry {
                client: 0,
                op: Op::CreateGroup { group: "a".into() },
                invoke_ms: 0,
                complete_ms: 5,
                outcome: Outcome::Ok,
            },
            Entry {
                client: 0,
                op: Op::CreateGroup { group: "b".into() },
                invoke_ms: 6,
                complete_ms: 9,
                outcome: Outcome::Fail("group_exists".into()),
            },
            Entry {
                client: 1,
                op: Op::ListGroups {
                    user: "u".into(),
                    extra: vec![],
                    missing: vec![],
                    member_extra: vec![],
                    member_missing: vec![],
                },
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

    /// The history of the chaos failure of 2026-12-03 (CI on 16792da): an accept acknowledged,
    /// then a second accept of the same user into the same group, refused `already_member`.
    /// That is the cluster answering correctly; the second accept was the workload's doing. It
    /// is reported as the harness's fault, not as a refused write that took effect.
    #[test]
    fn a_flag_written_twice_is_the_workloads_fault_not_a_refused_write_that_took_effect() {
        let accept = |invoke_ms, complete_ms, outcome| Entry {
            client: 0,
            op: Op::Accept { group: "g0x28".into(), user: "u1".into() },
            invoke_ms,
            complete_ms,
            outcome,
        };
        let history = vec![accept(100, 140, Outcome::Ok), accept(900, 930, Outcome::Fail("already_member".into()))];
        let fin = FinalState { members: [("g0x28".to_string(), "u1".to_string())].into(), ..Default::default() };
        let v = check(&history, &fin);
        assert!(v.refused_but_applied.is_empty(), "{v:?}");
        assert!(v.lost_writes.is_empty(), "{v:?}");
        assert_eq!(v.written_twice.len(), 1, "{v:?}");
        assert!(v.written_twice[0].contains("g0x28"), "{v:?}");
        assert!(!v.ok());
        assert!(check(&history[..1], &fin).ok());
    }

    fn list(invoke_ms: u64, complete_ms: u64, extra: &[&str], missing: &[&str]) -> Entry {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        Entry {
            client: 1,
            op: Op::ListGroups {
                user: "u1".into(),
                extra: s(extra),
                missing: s(missing),
                member_extra: vec![],
                member_missing: vec![],
            },
            invoke_ms,
            complete_ms,
            outcome: Outcome::Ok,
        }
    }

    #[test]
    fn a_window_too_large_to_search_is_counted_not_hidden() {
        // An acknowledged create whose 2 s window overlaps 200 reads by the same client, which
        // saw the group from the 101st on: consistent, but more than MAX_SEARCH_OPS calls.
        let mut h = vec![Entry {
            client: 0,
            op: Op::CreateGroup { group: "a".into() },
            invoke_ms: 0,
            complete_ms: 2_000,
            outcome: Outcome::Ok,
        }];
        for i in 0..200u64 {
            h.push(list(i * 10 + 1, i * 10 + 5, if i >= 100 { &["a"] } else { &[] }, &[]));
        }
        let fin = FinalState { groups: ["a".to_string()].into(), ..Default::default() };
        let v = check(&h, &fin);
        assert_eq!((v.keys_checked, v.search_skipped), (1, 1), "{v:?}");
        assert!(v.ok(), "a skip is reported apart from violations: {v:?}");
        // The order rules still run on a skipped window: a read that loses the flag again fails.
        h.push(list(1_500, 1_501, &[], &[]));
        let v = check(&h, &fin);
        assert_eq!(v.not_linearizable.len(), 1, "{v:?}");
        // At the limit, the window is searched.
        let reads: Vec<FlagRead> = (0..MAX_SEARCH_OPS as u64 - 1).map(|i| r(i * 10 + 1, i * 10 + 5, i >= 60)).collect();
        assert_eq!(check_flag(&w(0, 2_000, Outcome::Ok), &reads), FlagCheck::Ok);
    }

    #[test]
    fn reads_stored_as_differences_are_checked() {
        let create = |outcome| Entry {
            client: 0,
            op: Op::CreateGroup { group: "a".into() },
            invoke_ms: 10,
            complete_ms: 20,
            outcome,
        };
        let fin = FinalState { groups: ["a".to_string()].into(), ..Default::default() };
        // Seen during its window and after: fine.
        let h = vec![create(Outcome::Ok), list(0, 5, &[], &[]), list(15, 16, &["a"], &[]), list(30, 31, &[], &[])];
        assert!(check(&h, &fin).ok(), "{:?}", check(&h, &fin));
        // Missing after the acknowledgement: a stale read.
        let h = vec![create(Outcome::Ok), list(30, 31, &[], &["a"])];
        assert_eq!(check(&h, &fin).not_linearizable.len(), 1);
        // Seen before it was invoked.
        let h = vec![create(Outcome::Ok), list(0, 5, &["a"], &[])];
        assert_eq!(check(&h, &fin).not_linearizable.len(), 1);
        // Never acknowledged: seen once, then a later read without it.
        let h = vec![create(Outcome::Unknown("timeout".into())), list(30, 31, &["a"], &[]), list(40, 41, &[], &[])];
        assert_eq!(check(&h, &fin).not_linearizable.len(), 1, "{:?}", check(&h, &fin));
        let h = vec![create(Outcome::Unknown("timeout".into())), list(30, 31, &["a"], &[]), list(40, 41, &["a"], &[])];
        assert!(check(&h, &fin).ok());
    }
}
