//! Tests that drive the async tracker client (the code the peer uses) against a cluster.

use tracker_client::TrackerClient;

/// A small multi-threaded tokio runtime for tests that drive the async tracker client.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Registers `user` (password `<user>-password`) and returns a client logged in as them.
pub async fn logged_in(client: &TrackerClient, user: &str) -> TrackerClient {
    let pw = format!("{user}-password");
    client.register(user, &pw).await.unwrap_or_else(|e| panic!("register {user}: {e}"));
    let s = client.login(user, &pw).await.unwrap_or_else(|e| panic!("login {user}: {e}"));
    client.with_token(Some(s.token))
}

/// The group names `client` sees, sorted.
pub async fn group_names(client: &TrackerClient) -> Vec<String> {
    let mut g: Vec<String> = client.list_groups().await.expect("list groups").into_iter().map(|r| r.group).collect();
    g.sort();
    g
}
