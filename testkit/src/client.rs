//! Tests that drive the async tracker client (the code the peer uses) against a cluster.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

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

/// A steady write load: `write(runtime, i)` for i = 0, 1, 2, ..., one call after another on a
/// thread and runtime of its own, until [`SteadyWrites::stop`] (or the drop).
pub struct SteadyWrites {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SteadyWrites {
    pub fn start(mut write: impl FnMut(&tokio::runtime::Runtime, u64) + Send + 'static) -> SteadyWrites {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let rt = runtime();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    write(&rt, i);
                    i += 1;
                }
            })
        };
        SteadyWrites { stop, thread: Some(thread) }
    }

    /// Stops after the write under way; panics if a write panicked.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("a steady write panicked");
        }
    }
}

impl Drop for SteadyWrites {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
