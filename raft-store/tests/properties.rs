//! Property test: random command sequences keep the state machine's invariants (the per-user
//! quota counts among them: equal to a recount after every command), apply deterministically,
//! and survive a snapshot round trip unchanged.

use proptest::prelude::*;
use raft_store::command::{FileMeta, Sha1Digest, PIECE_LEN_BYTES};
use raft_store::{Command, Request, Response, TrackerState};

const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
const GROUPS: [&str; 3] = ["g1", "g2", "bad/name"];
const FILES: [&str; 3] = ["a.txt", "b.bin", "../x"];

#[derive(Clone, Debug)]
enum Op {
    Register(usize),
    Login(usize),
    Logout(usize),
    Create(usize, usize),
    Join(usize, usize),
    Leave(usize, usize),
    Accept(usize, usize, usize),
    Upload(usize, usize, usize, u8),
    StopShare(usize, usize, usize),
    /// (owner?, group, member): the caller removes a member.
    Remove(usize, usize, usize),
    Tick(u64),
    /// Replays the request id of an earlier op.
    Retry(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let u = 0..USERS.len();
    let g = 0..GROUPS.len();
    let f = 0..FILES.len();
    prop_oneof![
        u.clone().prop_map(Op::Register),
        u.clone().prop_map(Op::Login),
        u.clone().prop_map(Op::Logout),
        (u.clone(), g.clone()).prop_map(|(a, b)| Op::Create(a, b)),
        (u.clone(), g.clone()).prop_map(|(a, b)| Op::Join(a, b)),
        (u.clone(), g.clone()).prop_map(|(a, b)| Op::Leave(a, b)),
        (u.clone(), g.clone(), u.clone()).prop_map(|(a, b, c)| Op::Accept(a, b, c)),
        (u.clone(), g.clone(), f.clone(), 0u8..2).prop_map(|(a, b, c, d)| Op::Upload(a, b, c, d)),
        (u.clone(), g.clone(), f.clone()).prop_map(|(a, b, c)| Op::StopShare(a, b, c)),
        (u.clone(), g.clone(), u.clone()).prop_map(|(a, b, c)| Op::Remove(a, b, c)),
        (0u64..3_000_000).prop_map(Op::Tick),
        (0usize..200).prop_map(Op::Retry),
    ]
}

fn meta(name: &str, content: u8) -> FileMeta {
    let size = PIECE_LEN_BYTES + 10 + content as u64;
    FileMeta {
        name: name.to_string(),
        size,
        piece_len: PIECE_LEN_BYTES,
        piece_list_sha1: Sha1Digest([content ^ 0x5a; 20]),
        sha1: Sha1Digest([content.wrapping_add(100); 20]),
    }
}

/// Turns ops into log requests, as a proposing node would (tokens: one current per user).
fn requests(ops: &[Op]) -> Vec<Request> {
    let mut now_ms = 1_700_000_000_000u64;
    let mut out: Vec<Request> = Vec::new();
    let mut session = [0u64; USERS.len()];
    let tok = |session: &[u64], u: usize| format!("tok-{}-{}", USERS[u], session[u]);
    for (i, o) in ops.iter().enumerate() {
        now_ms += 1;
        let command = match o {
            Op::Register(u) => Command::Register { user: USERS[*u].into(), password_hash: "$argon2id$h".into() },
            Op::Login(u) => {
                session[*u] += 1;
                Command::Login {
                    user: USERS[*u].into(),
                    token_hash: tok(&session, *u),
                    expires_at_ms: now_ms + 3_600_000,
                }
            }
            Op::Logout(u) => Command::Logout { token_hash: tok(&session, *u) },
            Op::Create(u, g) => Command::CreateGroup { token_hash: tok(&session, *u), group: GROUPS[*g].into() },
            Op::Join(u, g) => Command::JoinGroup { token_hash: tok(&session, *u), group: GROUPS[*g].into() },
            Op::Leave(u, g) => Command::LeaveGroup { token_hash: tok(&session, *u), group: GROUPS[*g].into() },
            Op::Accept(u, g, j) => Command::AcceptRequest {
                token_hash: tok(&session, *u),
                group: GROUPS[*g].into(),
                user: USERS[*j].into(),
            },
            Op::Upload(u, g, f, c) => Command::UploadFile {
                token_hash: tok(&session, *u),
                group: GROUPS[*g].into(),
                file: meta(FILES[*f], *c),
                peer_addr: format!("127.0.0.1:{}", 6000 + u),
                peer_key: format!("{:064x}", u + 1),
            },
            Op::Remove(u, g, m) => Command::RemoveMember {
                token_hash: tok(&session, *u),
                group: GROUPS[*g].into(),
                user: USERS[*m].into(),
            },
            Op::StopShare(u, g, f) => {
                Command::StopShare { token_hash: tok(&session, *u), group: GROUPS[*g].into(), name: FILES[*f].into() }
            }
            Op::Tick(ms) => {
                now_ms += ms;
                continue;
            }
            Op::Retry(k) => {
                if out.is_empty() {
                    continue;
                }
                let earlier = out[k % out.len()].clone();
                out.push(Request { now_ms, ..earlier });
                continue;
            }
        };
        out.push(Request { request_id: Some(format!("req-{i}")), now_ms, command });
    }
    out
}

fn check_invariants(s: &TrackerState) -> Result<(), TestCaseError> {
    for (name, g) in s.groups() {
        prop_assert!(!g.members.is_empty(), "group {name} has no members");
        prop_assert!(g.members.contains(&g.owner), "owner of {name} not a member");
        prop_assert!(raft_store::names::validate_id("group", name).is_ok());
        let mut seen = std::collections::BTreeSet::new();
        for m in &g.members {
            prop_assert!(seen.insert(m), "{m} twice in {name}");
            prop_assert!(s.users().contains_key(m));
        }
        for p in &g.pending {
            prop_assert!(!g.members.contains(p), "pending request of member {p} in {name}");
        }
        for (fname, f) in &g.files {
            prop_assert!(raft_store::names::validate_file_name(fname).is_ok());
            prop_assert_eq!(&f.meta.name, fname);
            for sharer in &f.sharers {
                prop_assert!(g.members.contains(sharer), "sharer {} of {} is not a member of {}", sharer, fname, name);
            }
        }
    }
    // The per-user counts the leader's quota check reads equal a recount from the groups.
    prop_assert_eq!(s.all_user_counts(), &s.recount(), "kept quota counts against a recount");
    for (u, account) in s.users() {
        let open = s.sessions().values().filter(|x| &x.user == u).count() as u64;
        prop_assert_eq!(open, account.sessions, "session count of {}", u);
        prop_assert_eq!(account.shares_paused, open == 0, "pause flag of {}", u);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_invariants(ops in proptest::collection::vec(op(), 1..120)) {
        // A prologue that puts everyone in a group, so that the random part exercises the
        // interesting rules (uploads, leaves, hand-overs) rather than mostly refusals.
        let mut all = vec![];
        for u in 0..USERS.len() {
            all.push(Op::Register(u));
            all.push(Op::Login(u));
        }
        all.push(Op::Create(0, 0));
        for u in 1..3 {
            all.push(Op::Join(u, 0));
            all.push(Op::Accept(0, 0, u));
        }
        all.extend(ops);
        let reqs = requests(&all);
        let mut s = TrackerState::default();
        let mut first: std::collections::BTreeMap<String, (u64, Response)> = Default::default();
        for r in &reqs {
            let out = s.apply(r);
            let id = r.request_id.clone().unwrap();
            match first.get(&id) {
                // Within the table's TTL, a retry answers the first outcome (and so changed nothing).
                Some((at_ms, prev)) if r.now_ms <= at_ms + raft_store::state::DEDUP_TTL_MS => {
                    prop_assert_eq!(prev, &out, "a retried id must answer its first outcome");
                }
                _ => {
                    first.insert(id, (r.now_ms, out));
                }
            }
            check_invariants(&s)?;
        }
        // Determinism: a second replica applying the same log reaches the same state.
        let mut replica = TrackerState::default();
        for r in &reqs {
            replica.apply(r);
        }
        prop_assert_eq!(&replica, &s);
        // Snapshot -> install: the record stream rebuilds the same state.
        let mut installed = TrackerState::default();
        for rec in s.records() {
            let line = serde_json::to_string(&rec).unwrap();
            installed.load_record(serde_json::from_str(&line).unwrap()).unwrap();
        }
        prop_assert_eq!(installed.digest(), s.digest());
        prop_assert_eq!(installed, s);
    }
}
