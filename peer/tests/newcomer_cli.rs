//! The paper cuts a newcomer meets (issue 36), as the CLI shows them: a second join request,
//! `list-files` while a request is pending, a mistyped command's tips.

use testkit::*;

/// The CLI without --json: what a person reads.
fn human(p: &Peer, args: &[&str]) -> Run {
    let mut cmd = p.command();
    cmd.args(args);
    Run::of(cmd, "")
}

/// `owner` owns groups named next to each other, and `joiner` is logged in: the lookup of one
/// group's row must land on that group, not a neighbour.
fn owner_and_joiner(cluster: &Cluster) -> (Peer, Peer) {
    let alice = Peer::new(cluster, "alice");
    alice.register_and_login("alice");
    for g in ["dev_tea", "dev_team", "dev_team-", "dev_teamz"] {
        alice.ok(&["create-group", g]);
    }
    let bob = Peer::new(cluster, "bob");
    bob.register_and_login("bob");
    (alice, bob)
}

#[test]
fn a_second_join_says_the_request_is_already_pending() {
    let cluster = Cluster::start(3);
    let (alice, bob) = owner_and_joiner(&cluster);
    let first = human(&bob, &["join-group", "dev_team"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.stdout.trim(), "asked to join dev_team; its owner must accept");
    let again = human(&bob, &["join-group", "dev_team"]);
    assert_eq!(again.code, 0, "not an error (docs/CONTRACT.md): {}", again.stderr);
    assert_eq!(again.stdout.trim(), "your request to join dev_team is already pending; its owner must accept it");
    let v = bob.ok(&["join-group", "dev_team"]);
    assert_eq!((v["ok"].as_bool(), v["already_pending"].as_bool()), (Some(true), Some(true)), "{v}");
    assert_eq!(alice.ok(&["list-requests", "dev_team"]), serde_json::json!([{"user": "bob"}]), "one request");
}

#[test]
fn list_files_while_the_join_request_is_pending_says_so() {
    let cluster = Cluster::start(3);
    let (alice, bob) = owner_and_joiner(&cluster);
    bob.ok(&["join-group", "dev_team"]);
    // Pending: the refusal says so, and who decides.
    let message = bob.run(&["list-files", "dev_team"]).refused("not_member");
    assert!(
        message.contains("your request to join dev_team is pending until its owner (alice) accepts it"),
        "{message}"
    );
    let r = human(&bob, &["list-files", "dev_team"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("error: ") && r.stderr.contains("is pending until its owner"), "{}", r.stderr);
    // No request (in a neighbour group, nor at all): the plain refusal.
    for g in ["dev_team-", "dev_tea", "dev_teamz"] {
        let message = bob.run(&["list-files", g]).refused("not_member");
        assert!(!message.contains("pending"), "{g}: {message}");
    }
    let carol = Peer::new(&cluster, "carol");
    carol.register_and_login("carol");
    assert!(!carol.run(&["list-files", "dev_team"]).refused("not_member").contains("pending"));
    // Accepted: a member lists the files.
    alice.ok(&["accept-request", "dev_team", "bob"]);
    assert_eq!(bob.ok(&["list-files", "dev_team"]), serde_json::json!([]));
}

/// A mistyped command: the closest command first, in the spelling typed, each once and few;
/// the snake_case aliases stay accepted.
#[test]
fn a_mistyped_command_gets_the_closest_command_first_in_its_spelling() {
    let peer = |args: &[&str]| {
        let mut cmd = std::process::Command::new(peer_bin());
        cmd.args(args).env_remove("PEER_HOME").env("PEER_TRACKERS", "127.0.0.1:9");
        Run::of(cmd, "")
    };
    let tips = |r: &Run| -> Vec<String> {
        assert_eq!(r.code, 2, "{}", r.stderr);
        let line = r.stderr.lines().find(|l| l.contains("tip:")).unwrap_or_else(|| panic!("no tip: {}", r.stderr));
        line.split('\'').skip(1).step_by(2).map(str::to_string).collect()
    };
    let t = tips(&peer(&["list-group"]));
    assert_eq!(t.first().map(String::as_str), Some("list-groups"), "{t:?}");
    assert!(t.len() <= 3 && t.iter().all(|w| !w.contains('_')), "{t:?}");
    let t = tips(&peer(&["list_group"]));
    assert_eq!(t.first().map(String::as_str), Some("list_groups"), "{t:?}");
    assert!(t.iter().all(|w| !w.contains('-')), "{t:?}");
    let t = tips(&peer(&["--json", "join-grop", "g"]));
    assert_eq!(t.first().map(String::as_str), Some("join-group"), "{t:?}");
    // The aliases still run their command (here: no session, so `unauthenticated`).
    let home = tempfile::tempdir().unwrap();
    let r = peer(&["--home", home.path().to_str().unwrap(), "--json", "list_groups"]);
    assert_eq!((r.code, r.error_code().as_str()), (1, "unauthenticated"), "{}", r.stderr);
}
