//! Unit tests of every rule of the state machine, without storage or network.

use super::*;
use crate::command::{ErrorCode, Sha1Digest, PIECE_LEN_BYTES};

const T0: u64 = 1_700_000_000_000;
const HOUR_MS: u64 = 3_600_000;

struct Harness {
    s: TrackerState,
    now_ms: u64,
    seq: u64,
}

impl Harness {
    fn new() -> Self {
        Harness { s: TrackerState::default(), now_ms: T0, seq: 0 }
    }

    fn run(&mut self, command: Command) -> Response {
        self.seq += 1;
        self.now_ms += 1;
        self.s.apply(&Request { request_id: Some(format!("r{}", self.seq)), now_ms: self.now_ms, command })
    }

    fn ok(&mut self, command: Command) -> Reply {
        match self.run(command.clone()) {
            Response::Ok(r) => r,
            Response::Refused(r) => panic!("{command:?} refused: {r}"),
        }
    }

    fn refused(&mut self, command: Command) -> ErrorCode {
        match self.run(command.clone()) {
            Response::Ok(r) => panic!("{command:?} accepted: {r:?}"),
            Response::Refused(r) => r.code,
        }
    }

    /// Registers and logs in `user`; the token hash is "tok-<user>".
    fn user(&mut self, user: &str) -> String {
        self.ok(Command::Register { user: user.into(), password_hash: format!("$argon2id$fake${user}") });
        self.login(user)
    }

    /// Registers and logs in `user`, who asks to join `group` and is accepted by its owner (whose
    /// token hash is `owner`); `user`'s token hash.
    fn member(&mut self, owner: &str, group: &str, user: &str) -> String {
        let token_hash = self.user(user);
        self.ok(join(&token_hash, group));
        self.ok(accept(owner, group, user));
        token_hash
    }

    fn login(&mut self, user: &str) -> String {
        self.seq += 1;
        let token_hash = format!("tok-{user}-{}", self.seq);
        self.ok(Command::Login {
            user: user.into(),
            token_hash: token_hash.clone(),
            expires_at_ms: self.now_ms + HOUR_MS,
        });
        token_hash
    }
}

fn meta(name: &str, size: u64, fill: u8) -> FileMeta {
    FileMeta {
        name: name.into(),
        size,
        piece_len: PIECE_LEN_BYTES,
        piece_list_sha1: Sha1Digest([fill ^ 0x55; 20]),
        sha1: Sha1Digest([fill; 20]),
    }
}

fn create(t: &str, g: &str) -> Command {
    Command::CreateGroup { token_hash: t.into(), group: g.into() }
}
fn join(t: &str, g: &str) -> Command {
    Command::JoinGroup { token_hash: t.into(), group: g.into() }
}
fn accept(t: &str, g: &str, u: &str) -> Command {
    Command::AcceptRequest { token_hash: t.into(), group: g.into(), user: u.into() }
}
fn leave(t: &str, g: &str) -> Command {
    Command::LeaveGroup { token_hash: t.into(), group: g.into() }
}
/// A valid peer key (Ed25519 public keys are 32 bytes, written as 64 lowercase hex).
fn key(fill: char) -> String {
    fill.to_string().repeat(64)
}
fn upload(t: &str, g: &str, m: FileMeta) -> Command {
    Command::UploadFile {
        token_hash: t.into(),
        group: g.into(),
        file: m,
        peer_addr: "127.0.0.1:6000".into(),
        peer_key: key('a'),
    }
}
fn remove(t: &str, g: &str, u: &str) -> Command {
    Command::RemoveMember { token_hash: t.into(), group: g.into(), user: u.into() }
}

/// A harness where alice and bob are registered and logged in; their token hashes.
fn alice_and_bob() -> (Harness, String, String) {
    let mut h = Harness::new();
    let a = h.user("alice");
    let b = h.user("bob");
    (h, a, b)
}

/// alice owns dev_team; bob is a member.
fn team() -> (Harness, String, String) {
    let (mut h, a, b) = alice_and_bob();
    h.ok(create(&a, "dev_team"));
    h.ok(join(&b, "dev_team"));
    h.ok(accept(&a, "dev_team", "bob"));
    (h, a, b)
}

#[test]
fn register_is_unique_and_validated() {
    let mut h = Harness::new();
    h.user("alice");
    assert_eq!(h.refused(Command::Register { user: "alice".into(), password_hash: "x".into() }), ErrorCode::UserExists);
    for bad in ["", "a/b", "../x", &"x".repeat(65)] {
        assert_eq!(
            h.refused(Command::Register { user: bad.into(), password_hash: "x".into() }),
            ErrorCode::InvalidName
        );
    }
    assert_eq!(h.s.counts().0, 1);
}

#[test]
fn login_of_unknown_user_is_bad_credentials() {
    let mut h = Harness::new();
    let c = Command::Login { user: "ghost".into(), token_hash: "t".into(), expires_at_ms: T0 + HOUR_MS };
    assert_eq!(h.refused(c), ErrorCode::BadCredentials);
}

#[test]
fn sessions_expire_and_logout_revokes() {
    let mut h = Harness::new();
    let a = h.user("alice");
    h.ok(create(&a, "g1"));
    h.now_ms += HOUR_MS;
    assert_eq!(h.refused(create(&a, "g2")), ErrorCode::Unauthenticated);
    assert!(h.s.sessions.is_empty(), "expired session is swept");
    let a = h.login("alice");
    h.ok(Command::Logout { token_hash: a.clone() });
    assert_eq!(h.refused(create(&a, "g3")), ErrorCode::Unauthenticated);
    assert_eq!(h.refused(Command::Logout { token_hash: a }), ErrorCode::Unauthenticated);
    assert_eq!(h.refused(create("nonsense", "g4")), ErrorCode::Unauthenticated);
}

#[test]
fn group_ids_are_unique_and_creator_owns() {
    let (mut h, a, b) = alice_and_bob();
    h.ok(create(&a, "dev_team"));
    assert_eq!(h.refused(create(&b, "dev_team")), ErrorCode::GroupExists);
    assert_eq!(h.refused(create(&b, "bad/name")), ErrorCode::InvalidName);
    let g = &h.s.groups["dev_team"];
    assert_eq!(g.owner, "alice");
    assert_eq!(g.members, vec!["alice".to_string()]);
}

#[test]
fn join_requests_are_owner_only() {
    let (mut h, a, b) = alice_and_bob();
    let c = h.user("carol");
    h.ok(create(&a, "g"));
    assert_eq!(h.refused(join(&a, "g")), ErrorCode::AlreadyMember);
    assert_eq!(h.refused(join(&b, "nope")), ErrorCode::NoSuchGroup);
    h.ok(join(&b, "g"));
    assert_eq!(h.ok(join(&b, "g")), Reply::RequestFiled { group: "g".into(), already_pending: true });
    h.ok(join(&c, "g"));
    assert_eq!(h.s.list_requests("alice", "g").unwrap(), vec!["bob", "carol"]);
    assert_eq!(h.s.list_requests("bob", "g").unwrap_err().code, ErrorCode::NotOwner);
    assert_eq!(h.refused(accept(&b, "g", "carol")), ErrorCode::NotOwner);
    assert_eq!(h.refused(accept(&a, "g", "dave")), ErrorCode::NoSuchRequest);
    h.ok(accept(&a, "g", "bob"));
    assert_eq!(h.refused(accept(&a, "g", "bob")), ErrorCode::AlreadyMember);
    assert_eq!(h.s.groups["g"].members, vec!["alice", "bob"]);
    assert_eq!(h.s.list_requests("alice", "g").unwrap(), vec!["carol"]);
}

#[test]
fn owner_leaving_hands_over_to_next_joiner_and_last_leaver_deletes() {
    let (mut h, a, b) = team();
    let c = h.member(&a, "dev_team", "carol");
    h.ok(upload(&a, "dev_team", meta("doc.pdf", 1000, 1)));
    let r = h.ok(leave(&a, "dev_team"));
    assert_eq!(r, Reply::LeftGroup { group: "dev_team".into(), new_owner: Some("bob".into()), group_deleted: false });
    let g = &h.s.groups["dev_team"];
    assert_eq!(g.owner, "bob");
    assert!(g.files["doc.pdf"].sharers.is_empty(), "a leaver stops sharing");
    assert_eq!(h.refused(leave(&a, "dev_team")), ErrorCode::NotMember);
    h.ok(leave(&b, "dev_team"));
    assert_eq!(h.s.groups["dev_team"].owner, "carol");
    let r = h.ok(leave(&c, "dev_team"));
    assert_eq!(r, Reply::LeftGroup { group: "dev_team".into(), new_owner: None, group_deleted: true });
    assert!(h.s.groups.is_empty());
}

#[test]
fn pending_user_can_withdraw_by_leaving() {
    let (mut h, a, b) = alice_and_bob();
    h.ok(create(&a, "g"));
    h.ok(join(&b, "g"));
    h.ok(leave(&b, "g"));
    assert!(h.s.groups["g"].pending.is_empty());
}

#[test]
fn files_are_members_only() {
    let (mut h, _a, _b) = team();
    let e = h.user("eve");
    assert_eq!(h.refused(upload(&e, "dev_team", meta("x", 10, 1))), ErrorCode::NotMember);
    assert_eq!(h.s.list_files("eve", "dev_team").unwrap_err().code, ErrorCode::NotMember);
    assert_eq!(h.s.file("eve", "dev_team", "x").unwrap_err().code, ErrorCode::NotMember);
    assert_eq!(h.refused(upload(&e, "nope", meta("x", 10, 1))), ErrorCode::NoSuchGroup);
    assert_eq!(h.s.counts().2, 0);
}

#[test]
fn same_content_adds_a_sharer_different_content_conflicts() {
    let (mut h, a, b) = team();
    let r = h.ok(upload(&a, "dev_team", meta("doc.pdf", 1_048_576, 7)));
    assert_eq!(r, Reply::FileShared { group: "dev_team".into(), name: "doc.pdf".into(), new_file: true });
    let r = h.ok(upload(&b, "dev_team", meta("doc.pdf", 1_048_576, 7)));
    assert_eq!(r, Reply::FileShared { group: "dev_team".into(), name: "doc.pdf".into(), new_file: false });
    assert_eq!(h.refused(upload(&b, "dev_team", meta("doc.pdf", 1_048_576, 8))), ErrorCode::FileConflict);
    let files = h.s.list_files("bob", "dev_team").unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].active_sharers.len(), 2);
    assert_eq!(FileMeta::piece_count(files[0].meta.size), 2);
    // Same whole-file SHA-1 but another piece list is other content.
    let mut other_list = meta("doc.pdf", 1_048_576, 7);
    other_list.piece_list_sha1 = Sha1Digest([0; 20]);
    assert_eq!(h.refused(upload(&b, "dev_team", other_list)), ErrorCode::FileConflict);
}

#[test]
fn bad_file_metadata_is_refused() {
    let (mut h, a, _b) = team();
    for bad in ["../x", "a/b", "", ".", ".."] {
        assert_eq!(h.refused(upload(&a, "dev_team", meta(bad, 10, 1))), ErrorCode::InvalidName, "{bad:?}");
    }
    let mut m = meta("big", 10, 1);
    m.size = crate::command::MAX_FILE_SIZE_BYTES + 1;
    assert_eq!(h.refused(upload(&a, "dev_team", m)), ErrorCode::FileTooLarge);
    let mut m = meta("odd-pieces", 2 * PIECE_LEN_BYTES, 1);
    m.piece_len = 1024;
    assert_eq!(h.refused(upload(&a, "dev_team", m)), ErrorCode::InvalidRequest);
    let c = Command::UploadFile {
        token_hash: a,
        group: "dev_team".into(),
        file: meta("y", 1, 1),
        peer_addr: "nonsense".into(),
        peer_key: key('a'),
    };
    assert_eq!(h.refused(c), ErrorCode::InvalidRequest);
    assert_eq!(h.s.counts().2, 0);
}

#[test]
fn stop_share_keeps_the_file_listed() {
    let (mut h, a, _b) = team();
    h.ok(upload(&a, "dev_team", meta("doc.pdf", 100, 1)));
    let r = h.ok(Command::StopShare { token_hash: a.clone(), group: "dev_team".into(), name: "doc.pdf".into() });
    assert_eq!(r, Reply::ShareStopped { group: "dev_team".into(), name: "doc.pdf".into(), was_sharing: true });
    let files = h.s.list_files("alice", "dev_team").unwrap();
    assert_eq!(files.len(), 1);
    assert!(files[0].active_sharers.is_empty());
    let c = Command::StopShare { token_hash: a, group: "dev_team".into(), name: "nope".into() };
    assert_eq!(h.refused(c), ErrorCode::NoSuchFile);
}

#[test]
fn logout_pauses_shares_and_login_resumes_them() {
    let (mut h, a, _b) = team();
    h.ok(upload(&a, "dev_team", meta("doc.pdf", 100, 1)));
    assert_eq!(h.s.file("bob", "dev_team", "doc.pdf").unwrap().active_sharers.len(), 1);
    let r = h.ok(Command::Logout { token_hash: a });
    assert_eq!(r, Reply::LoggedOut { user: "alice".into(), paused_shares: 1 });
    assert!(h.s.file("bob", "dev_team", "doc.pdf").unwrap().active_sharers.is_empty());
    let a = h.login("alice");
    let f = h.s.file("bob", "dev_team", "doc.pdf").unwrap();
    assert_eq!(
        f.active_sharers,
        vec![query::SharerView { user: "alice".into(), peer_addr: "127.0.0.1:6000".into(), peer_key: key('a') }]
    );
    let r = h.ok(Command::Announce { token_hash: a, peer_addr: "127.0.0.1:7777".into(), peer_key: key('b') });
    assert_eq!(r, Reply::Announced { user: "alice".into(), shares: 1 });
    let sharer = &h.s.file("bob", "dev_team", "doc.pdf").unwrap().active_sharers[0];
    assert_eq!((sharer.peer_addr.as_str(), sharer.peer_key.as_str()), ("127.0.0.1:7777", key('b').as_str()));
}

#[test]
fn peer_keys_are_validated_and_a_sharer_without_one_is_not_listed() {
    let (mut h, a, b) = team();
    let bad_keys = [String::new() + "x", key('a')[..63].to_string(), key('A'), key('g'), format!("{}0", key('a'))];
    for bad in &bad_keys {
        let c = Command::Announce { token_hash: a.clone(), peer_addr: "127.0.0.1:1".into(), peer_key: bad.clone() };
        assert_eq!(h.refused(c), ErrorCode::InvalidRequest, "{bad:?}");
        let mut up = upload(&a, "dev_team", meta("doc.pdf", 100, 1));
        if let Command::UploadFile { peer_key, .. } = &mut up {
            *peer_key = bad.clone();
        }
        assert_eq!(h.refused(up), ErrorCode::InvalidRequest, "{bad:?}");
    }
    assert_eq!(h.s.counts().2, 0, "no refused upload added a file");
    assert_eq!(h.s.users["alice"].peer_key, None);
    // A key made of every hex digit passes.
    let every = "0123456789abcdef".repeat(4);
    h.ok(Command::Announce { token_hash: a.clone(), peer_addr: "127.0.0.1:1".into(), peer_key: every.clone() });
    assert_eq!(h.s.users["alice"].peer_key.as_deref(), Some(every.as_str()));
    // An entry from before peer keys (empty key) applies as it did then: the address is kept,
    // and the user has no key, so they are not listed as a sharer.
    h.ok(upload(&b, "dev_team", meta("doc.pdf", 100, 1)));
    assert_eq!(h.s.file("alice", "dev_team", "doc.pdf").unwrap().active_sharers.len(), 1);
    h.ok(Command::Announce { token_hash: b, peer_addr: "127.0.0.1:2".into(), peer_key: String::new() });
    assert_eq!(h.s.users["bob"].peer_addr.as_deref(), Some("127.0.0.1:2"));
    assert_eq!(h.s.users["bob"].peer_key, None);
    assert!(h.s.file("alice", "dev_team", "doc.pdf").unwrap().active_sharers.is_empty());
    // The file stays listed; bob counts again once he announces a key.
    assert_eq!(h.s.list_files("alice", "dev_team").unwrap().len(), 1);
}

#[test]
fn old_format_accounts_and_log_entries_still_load() {
    // A user record and log commands as written before peer keys existed.
    let old_user = r#"{"password_hash":"$argon2id$x","sessions":1,"shares_paused":false,"peer_addr":"127.0.0.1:6000"}"#;
    let user: User = serde_json::from_str(old_user).unwrap();
    assert_eq!(user.peer_addr.as_deref(), Some("127.0.0.1:6000"));
    assert_eq!(user.peer_key, None);
    let record = format!(r#"{{"t":"user","name":"alice","user":{old_user}}}"#);
    let mut s = TrackerState::default();
    s.load_record(serde_json::from_str(&record).unwrap()).unwrap();
    assert_eq!(s.users["alice"].peer_key, None);
    let old_announce = r#"{"op":"announce","token_hash":"t","peer_addr":"127.0.0.1:1"}"#;
    let c: Command = serde_json::from_str(old_announce).unwrap();
    assert_eq!(
        c,
        Command::Announce { token_hash: "t".into(), peer_addr: "127.0.0.1:1".into(), peer_key: String::new() }
    );
    let old_upload = r#"{"op":"upload_file","token_hash":"t","group":"g","file":{"name":"a","size":1,"piece_len":524288,
        "piece_list_sha1":"0000000000000000000000000000000000000000","sha1":"0000000000000000000000000000000000000000"},
        "peer_addr":"127.0.0.1:1"}"#;
    let c: Command = serde_json::from_str(old_upload).unwrap();
    assert!(matches!(c, Command::UploadFile { peer_key, .. } if peer_key.is_empty()));
}

#[test]
fn the_owner_removes_a_member_whose_shares_in_the_group_end() {
    let (mut h, a, b) = team();
    let c = h.member(&a, "dev_team", "carol");
    h.ok(create(&b, "other"));
    h.ok(upload(&a, "dev_team", meta("a.txt", 10, 1)));
    h.ok(upload(&b, "dev_team", meta("a.txt", 10, 1)));
    h.ok(upload(&b, "dev_team", meta("b.txt", 10, 2)));
    h.ok(upload(&b, "other", meta("c.txt", 10, 3)));

    // Only the owner; not themself; only members.
    assert_eq!(h.refused(remove(&b, "dev_team", "carol")), ErrorCode::NotOwner);
    assert_eq!(h.refused(remove(&c, "dev_team", "bob")), ErrorCode::NotOwner);
    assert_eq!(h.refused(remove(&a, "dev_team", "alice")), ErrorCode::NotAllowed);
    let dave = h.user("dave");
    h.ok(join(&dave, "dev_team"));
    assert_eq!(h.refused(remove(&a, "dev_team", "dave")), ErrorCode::NotMember, "a pending request is no membership");
    assert_eq!(h.refused(remove(&a, "dev_team", "nobody")), ErrorCode::NotMember);
    assert_eq!(h.refused(remove(&a, "nope", "bob")), ErrorCode::NoSuchGroup);
    assert_eq!(h.refused(remove(&a, "dev_team", "a b")), ErrorCode::InvalidName);
    assert_eq!(h.refused(remove("tok-nobody", "dev_team", "bob")), ErrorCode::Unauthenticated);
    let untouched = h.s.groups["dev_team"].clone();

    let r = h.ok(remove(&a, "dev_team", "bob"));
    assert_eq!(r, Reply::MemberRemoved { group: "dev_team".into(), user: "bob".into(), shares_ended: 2 });
    let g = &h.s.groups["dev_team"];
    assert_eq!(g.members, vec!["alice".to_string(), "carol".to_string()]);
    assert_eq!(g.owner, "alice");
    assert_eq!(g.pending, untouched.pending);
    // Both files stay listed; bob shares neither, alice still shares a.txt.
    let files = h.s.list_files("alice", "dev_team").unwrap();
    assert_eq!(files.len(), 2);
    let sharers = |f: &query::FileView| f.active_sharers.iter().map(|s| s.user.clone()).collect::<Vec<_>>();
    assert_eq!(sharers(&files[0]), vec!["alice".to_string()]);
    assert!(sharers(&files[1]).is_empty());
    // bob no longer reads the group's files nor shares there, and elsewhere nothing changed.
    assert_eq!(h.s.list_files("bob", "dev_team").unwrap_err().code, ErrorCode::NotMember);
    assert_eq!(h.s.file("bob", "dev_team", "a.txt").unwrap_err().code, ErrorCode::NotMember);
    assert_eq!(h.refused(upload(&b, "dev_team", meta("d.txt", 10, 4))), ErrorCode::NotMember);
    assert_eq!(h.s.file("bob", "other", "c.txt").unwrap().active_sharers.len(), 1);
    // Removing him again: not a member. He may ask to join again.
    assert_eq!(h.refused(remove(&a, "dev_team", "bob")), ErrorCode::NotMember);
    h.ok(join(&b, "dev_team"));
    // A retry of the removal (same request id) answers the first outcome.
    let req = Request { request_id: Some("rm".into()), now_ms: h.now_ms, command: remove(&a, "dev_team", "carol") };
    let first = h.s.apply(&req);
    assert_eq!(
        first,
        Response::Ok(Reply::MemberRemoved { group: "dev_team".into(), user: "carol".into(), shares_ended: 0 })
    );
    assert_eq!(h.s.apply(&req), first);
}

#[test]
fn retried_request_id_answers_first_outcome_and_changes_nothing() {
    let (mut h, a, b) = alice_and_bob();
    let req = Request { request_id: Some("same".into()), now_ms: h.now_ms, command: create(&a, "g") };
    assert!(h.s.apply(&req).is_ok());
    // The state changes in between: bob asks to join, alice leaves (the group is deleted).
    h.ok(join(&b, "g"));
    h.ok(leave(&a, "g"));
    assert!(h.s.groups.is_empty(), "the last member left; a pending request is no membership");
    let before = h.s.clone();
    let again = Request { now_ms: h.now_ms + 5, ..req.clone() };
    assert_eq!(h.s.apply(&again), Response::Ok(Reply::GroupCreated { group: "g".into() }));
    assert!(h.s.groups.is_empty(), "a retry must not create the group again");
    assert_eq!(h.s.groups, before.groups);
    // A refused outcome is remembered too.
    let bad = Request { request_id: Some("bad".into()), now_ms: h.now_ms, command: create("nope", "x") };
    let first = h.s.apply(&bad);
    assert!(!first.is_ok());
    assert_eq!(h.s.apply(&bad), first);
}

#[test]
fn the_largest_file_is_one_small_entry() {
    let (mut h, a, _b) = team();
    let m = meta("huge.img", crate::command::MAX_FILE_SIZE_BYTES, 1);
    let c = upload(&a, "dev_team", m);
    assert!(serde_json::to_vec(&c).unwrap().len() < 512, "an upload entry must not grow with the file");
    h.ok(c);
}

#[test]
fn request_ids_are_scoped_to_principal_and_kind_and_bound_to_content() {
    let (mut h, a, b) = alice_and_bob();
    let at = |command: Command, now_ms: u64| Request { request_id: Some("k1".into()), now_ms, command };
    let now = h.now_ms;
    assert_eq!(h.s.apply(&at(create(&a, "g1"), now)), Response::Ok(Reply::GroupCreated { group: "g1".into() }));
    // Another user's call under the same key is its own request, not alice's answer.
    assert_eq!(h.s.apply(&at(create(&b, "g2"), now + 1)), Response::Ok(Reply::GroupCreated { group: "g2".into() }));
    // Another kind of call by alice under the same key is its own request too.
    assert_eq!(
        h.s.apply(&at(Command::Logout { token_hash: a.clone() }, now + 2)),
        Response::Ok(Reply::LoggedOut { user: "alice".into(), paused_shares: 0 })
    );
    assert!(h.s.authenticate(&a, now + 3).is_err(), "the logout closed the session");
    // Same scope, other content: refused, not remembered, nothing changed.
    let before = h.s.clone();
    let reused = h.s.apply(&at(create(&b, "g3"), now + 4));
    match reused {
        Response::Refused(r) => assert_eq!(r.code, ErrorCode::IdempotencyKeyReused),
        other => panic!("reused key answered {other:?}"),
    }
    assert_eq!(h.s.groups, before.groups);
    assert!(h.s.precheck(&at(create(&b, "g3"), now + 4)).is_err());
    // A true retry still answers the first outcome and passes the leader's precheck.
    assert!(h.s.precheck(&at(create(&b, "g2"), now + 5)).is_ok());
    assert_eq!(h.s.apply(&at(create(&b, "g2"), now + 5)), Response::Ok(Reply::GroupCreated { group: "g2".into() }));
    // A retried login (same user, same token) is a retry even though its expiry is new.
    let tok = format!("{:064x}", 7);
    let login = |exp: u64| Command::Login { user: "bob".into(), token_hash: tok.clone(), expires_at_ms: exp };
    assert!(h.s.apply(&at(login(now + HOUR_MS), now + 6)).is_ok());
    assert_eq!(h.s.precheck(&at(login(now + HOUR_MS + 9), now + 7)), Ok(()));
}

#[test]
fn precheck_refuses_what_apply_would_before_it_reaches_the_log() {
    let (h, a, _b) = team();
    let req = |command: Command| Request { request_id: None, now_ms: h.now_ms, command };
    let forged = format!("{:064x}", 12345);
    let e = h.s.precheck(&req(create(&forged, "x"))).unwrap_err();
    assert_eq!(e.code, ErrorCode::Unauthenticated);
    let e = h.s.precheck(&req(create("not-a-token", "x"))).unwrap_err();
    assert_eq!(e.code, ErrorCode::Unauthenticated);
    // Harness tokens are not hex: precheck refuses their shape, apply knows them.
    assert!(h.s.precheck(&req(create(&a, "x"))).is_err());
    let long = "g".repeat(65);
    let e = h.s.precheck(&req(Command::Register { user: long, password_hash: "h".into() })).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidName);
    let mut m = meta("big", 1, 1);
    m.size = crate::command::MAX_FILE_SIZE_BYTES + 1;
    let up = Command::UploadFile {
        token_hash: forged.clone(),
        group: "dev_team".into(),
        file: m,
        peer_addr: "h:1".into(),
        peer_key: key('a'),
    };
    assert_eq!(h.s.precheck(&req(up)).unwrap_err().code, ErrorCode::FileTooLarge);
    let bad_key = Command::Announce { token_hash: forged.clone(), peer_addr: "h:1".into(), peer_key: "x".into() };
    assert_eq!(h.s.precheck(&req(bad_key)).unwrap_err().code, ErrorCode::InvalidRequest);
    let rm = remove(&forged, "dev_team", &"u".repeat(65));
    assert_eq!(h.s.precheck(&req(rm)).unwrap_err().code, ErrorCode::InvalidName);
}

#[test]
fn dedup_table_is_bounded_in_age_and_count() {
    let mut d = Dedup::default();
    let entry = || Remembered { at_ms: T0, fingerprint: Sha1Digest([0; 20]), response: Response::Ok(Reply::Internal) };
    let key = |i: usize| Command::Logout { token_hash: "t".into() }.dedup_key(&format!("id{i}"));
    for i in 0..(DEDUP_MAX_ENTRIES + 10) {
        d.insert(key(i), entry());
    }
    assert_eq!(d.len(), DEDUP_MAX_ENTRIES);
    assert!(d.get(&key(0)).is_none());
    assert!(d.get(&key(DEDUP_MAX_ENTRIES + 9)).is_some());
    d.expire(T0 + DEDUP_TTL_MS + 1);
    assert!(d.is_empty());
}

#[test]
fn records_round_trip_to_the_same_state() {
    let (mut h, a, _b) = team();
    h.ok(upload(&a, "dev_team", meta("doc.pdf", 3 * PIECE_LEN_BYTES + 1, 3)));
    let mut copy = TrackerState::default();
    for r in h.s.records() {
        let line = serde_json::to_string(&r).unwrap();
        copy.load_record(serde_json::from_str(&line).unwrap()).unwrap();
    }
    assert_eq!(copy, h.s);
    assert_eq!(copy.digest(), h.s.digest());
}

/// The records of a state, as a snapshot file holds them.
fn lines(s: &TrackerState) -> Vec<String> {
    s.records().map(|r| serde_json::to_string(&r).unwrap()).collect()
}

/// A snapshot serialises a clone taken under a short lock while applying goes on. The state's
/// maps are persistent (shared nodes): every kind of later write must leave the clone as it was.
#[test]
fn a_clone_keeps_the_state_as_of_the_clone_while_writes_go_on() {
    let (mut h, a, b) = team();
    let c = h.user("carol");
    for g in 0..40 {
        h.ok(create(&a, &format!("g{g:02}")));
        for f in 0..20 {
            h.ok(upload(&a, &format!("g{g:02}"), meta(&format!("f{f:02}.bin"), 1000 + f, f as u8)));
        }
    }
    h.ok(upload(&a, "dev_team", meta("doc.pdf", 100, 1)));
    h.ok(upload(&b, "dev_team", meta("doc.pdf", 100, 1)));
    h.ok(join(&c, "dev_team"));
    let snap = h.s.clone();
    let (snap_lines, snap_digest) = (lines(&snap), snap.digest());

    // Every kind of write, in groups and files the clone holds and in new ones.
    for g in 0..40 {
        h.ok(upload(&b, "dev_team", meta(&format!("new{g:02}.bin"), 10, 9)));
        h.ok(Command::StopShare { token_hash: a.clone(), group: format!("g{g:02}"), name: "f03.bin".into() });
    }
    h.ok(join(&b, "g07"));
    h.ok(accept(&a, "g07", "bob"));
    h.ok(upload(&b, "g07", meta("f05.bin", 1005, 5)));
    h.ok(remove(&a, "g07", "bob"));
    h.ok(accept(&a, "dev_team", "carol"));
    h.ok(leave(&b, "dev_team"));
    h.ok(leave(&a, "g39"));
    h.login("carol");
    h.ok(Command::Logout { token_hash: c.clone() });
    h.ok(Command::Announce { token_hash: a.clone(), peer_addr: "127.0.0.1:7000".into(), peer_key: key('b') });
    h.ok(Command::Register { user: "dave".into(), password_hash: "$argon2id$fake$dave".into() });
    h.now_ms += 2 * HOUR_MS; // every session expires on the next apply; the request ids too
    h.now_ms += DEDUP_TTL_MS;
    h.refused(Command::Logout { token_hash: a.clone() });
    assert!(h.s.sessions.is_empty() && h.s.dedup.len() == 1);

    assert_eq!(lines(&snap), snap_lines, "the clone changed under later writes");
    assert_eq!(snap.digest(), snap_digest);
    assert_ne!(h.s.digest(), snap_digest);
    assert_eq!(snap.groups["g07"].members, vec!["alice".to_string()]);
    assert_eq!(snap.groups["g03"].files["f03.bin"].sharers.iter().collect::<Vec<_>>(), ["alice"]);
    assert!(snap.groups.contains_key("g39") && !h.s.groups.contains_key("g39"));
    // And the clone rebuilt from its records is the clone.
    let mut rebuilt = TrackerState::default();
    for line in &snap_lines {
        rebuilt.load_record(serde_json::from_str(line).unwrap()).unwrap();
    }
    assert_eq!(rebuilt, snap);
}

/// A request as the leader would check it before proposing (a fresh request id).
fn growth_of(h: &Harness, command: Command) -> Option<Growth> {
    h.s.growth(&Request { request_id: Some("probe".into()), now_ms: h.now_ms + 1, command })
}

#[test]
fn counts_follow_ownership_and_records_and_growth_says_what_a_request_would_add() {
    let (mut h, a, b) = team();
    assert_eq!(h.s.user_counts("alice"), UserCounts { groups_owned: 1, items_uploaded: 0 });
    assert_eq!(h.s.user_counts("bob"), UserCounts::default());

    // A new group counts for its creator; an existing name adds nothing (apply answers group_exists).
    let g = growth_of(&h, create(&b, "bobs")).unwrap();
    assert_eq!((g.user.as_str(), g.kind, g.held), ("bob", QuotaKind::GroupsOwned, 0));
    assert_eq!(growth_of(&h, create(&b, "dev_team")), None);
    assert_eq!(growth_of(&h, create("tok-nobody", "x")), None, "no session: precheck refuses it");
    h.ok(create(&b, "bobs"));
    assert_eq!(growth_of(&h, create(&b, "bobs2")).unwrap().held, 1);

    // A new record counts for its uploader; one more sharer of the same content adds nothing.
    let g = growth_of(&h, upload(&b, "dev_team", meta("doc.pdf", 1000, 1))).unwrap();
    assert_eq!((g.user.as_str(), g.kind, g.held), ("bob", QuotaKind::ItemsUploaded, 0));
    h.ok(upload(&b, "dev_team", meta("doc.pdf", 1000, 1)));
    assert_eq!(growth_of(&h, upload(&a, "dev_team", meta("doc.pdf", 1000, 1))), None);
    h.ok(upload(&a, "dev_team", meta("doc.pdf", 1000, 1)));
    assert_eq!(h.s.user_counts("alice").items_uploaded, 0, "a second sharer creates no record");
    assert_eq!(growth_of(&h, upload(&b, "nowhere", meta("x", 1, 1))), None, "apply refuses it");
    assert_eq!(h.s.user_counts("bob"), UserCounts { groups_owned: 1, items_uploaded: 1 });

    // Stop-share leaves the record listed, so it still counts.
    h.ok(Command::StopShare { token_hash: b.clone(), group: "dev_team".into(), name: "doc.pdf".into() });
    assert_eq!(h.s.user_counts("bob").items_uploaded, 1);

    // The owner leaving hands the group and its count to bob.
    h.ok(leave(&a, "dev_team"));
    assert_eq!(h.s.user_counts("alice"), UserCounts::default());
    assert_eq!(h.s.user_counts("bob"), UserCounts { groups_owned: 2, items_uploaded: 1 });
    // The last member leaving deletes the group and its records.
    h.ok(leave(&b, "dev_team"));
    assert_eq!(h.s.user_counts("bob"), UserCounts { groups_owned: 1, items_uploaded: 0 });
    assert_eq!(h.s.all_user_counts(), &h.s.recount());

    // A retry of a remembered request adds nothing: it answers its first outcome.
    let retried = Request { request_id: Some("r-retry".into()), now_ms: h.now_ms + 1, command: create(&b, "again") };
    assert!(h.s.growth(&retried).is_some());
    assert!(h.s.apply(&retried).is_ok());
    assert_eq!(h.s.growth(&Request { now_ms: h.now_ms + 2, ..retried }), None);
}

#[test]
fn counts_are_rebuilt_from_a_snapshots_records() {
    let (mut h, a, b) = team();
    h.ok(upload(&b, "dev_team", meta("one", 10, 1)));
    h.ok(upload(&a, "dev_team", meta("two", 10, 2)));
    h.ok(create(&b, "solo"));
    let mut rebuilt = TrackerState::default();
    for line in lines(&h.s) {
        rebuilt.load_record(serde_json::from_str(&line).unwrap()).unwrap();
    }
    assert_eq!(rebuilt.all_user_counts(), h.s.all_user_counts());
    assert_eq!(rebuilt.user_counts("bob"), UserCounts { groups_owned: 1, items_uploaded: 1 });
    assert_eq!(rebuilt.user_counts("alice"), UserCounts { groups_owned: 1, items_uploaded: 1 });
    assert_eq!(rebuilt, h.s);
}

#[test]
fn group_pages_cover_every_group_once_in_name_order() {
    let mut h = Harness::new();
    let a = h.user("alice");
    let names: Vec<String> = (0..23).map(|i| format!("g{i:02}")).collect();
    for n in names.iter().rev() {
        h.ok(create(&a, n));
    }
    for limit in [1, 5, 22, 23, 100] {
        let (mut seen, mut after) = (Vec::new(), None::<String>);
        loop {
            let (page, more) = h.s.list_groups_page("alice", after.as_deref(), limit);
            assert!(page.len() <= limit && (!more || page.len() == limit), "limit {limit}");
            seen.extend(page.iter().map(|g| g.group.clone()));
            if !more {
                break;
            }
            after = page.last().map(|g| g.group.clone());
        }
        assert_eq!(seen, names, "limit {limit}");
    }
    // A cursor that names no group starts after where it would be.
    let (page, more) = h.s.list_groups_page("alice", Some("g10x"), 2);
    assert_eq!(page.iter().map(|g| g.group.as_str()).collect::<Vec<_>>(), ["g11", "g12"]);
    assert!(more);
    assert_eq!(h.s.list_groups_page("alice", Some("z"), 5), (vec![], false));
}
