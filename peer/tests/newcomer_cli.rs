//! The paper cuts a newcomer meets (issue 36), as the CLI shows them: a second join request.

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
