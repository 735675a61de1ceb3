//! The argon2 worker pool: password hashing and verification run on a fixed number of
//! low-priority threads behind a short bounded queue. A burst of logins can then neither
//! exhaust memory (each argon2 call takes 19 MiB) nor starve the Raft threads of CPU (the
//! workers run at a lower scheduling priority); a full queue is answered at once with 503
//! (`Busy`: a passing overload, which the throttles never count as a failed attempt).
//! Registrations (`hash`) leave the last `LOGIN_RESERVE_SLOTS` of the pool to logins, so no
//! registration flood, from however many addresses, keeps a user from logging in.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

type Job = Box<dyn FnOnce() + Send>;

/// Slots of the pool (running or queued) that registrations leave to logins.
pub const LOGIN_RESERVE_SLOTS: usize = 1;

/// A fixed pool of argon2 threads with a bounded queue.
pub struct PasswordPool {
    queue: Mutex<SyncSender<Job>>,
    /// Jobs queued or running.
    in_flight: Arc<AtomicUsize>,
    pub workers: usize,
    pub queue_len: usize,
}

/// The pool is busy: the caller answers 503 with `Retry-After: 1` and lets the client retry;
/// no password was checked, so the attempt is no failure of anyone's (`throttle`).
#[derive(Debug)]
pub struct Busy;

impl PasswordPool {
    /// About one worker per core, leaving one core to Raft and the API on small machines.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let workers = cores.saturating_sub(1).max(1);
        PasswordPool::new(workers, 2 * workers)
    }

    pub fn new(workers: usize, queue_len: usize) -> Self {
        let (tx, rx) = sync_channel::<Job>(queue_len);
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    // Raft's heartbeats and the API win the CPU over argon2.
                    crate::sched::background_thread();
                    loop {
                        let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                            Ok(job) => job,
                            Err(_) => return,
                        };
                        job();
                    }
                })
                .expect("spawn an argon2 worker");
        }
        PasswordPool { queue: Mutex::new(tx), in_flight: Arc::new(AtomicUsize::new(0)), workers, queue_len }
    }

    /// Queues `f` for a worker; `Busy` at once when the queue is full.
    pub fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<tokio::sync::oneshot::Receiver<T>, Busy> {
        self.submit_leaving(0, f)
    }

    /// Queues `f` for a worker unless that would leave fewer than `reserve` of the pool's
    /// slots (workers and queue) free; `Busy` at once otherwise.
    fn submit_leaving<T: Send + 'static>(
        &self,
        reserve: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<tokio::sync::oneshot::Receiver<T>, Busy> {
        let slots = self.workers + self.queue_len;
        if self.in_flight.fetch_add(1, Ordering::AcqRel) + reserve >= slots {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(Busy);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let in_flight = self.in_flight.clone();
        let job: Job = Box::new(move || {
            let out = f();
            // The slot is free before the caller hears the answer.
            in_flight.fetch_sub(1, Ordering::AcqRel);
            let _ = tx.send(out);
        });
        match self.queue.lock().unwrap_or_else(|p| p.into_inner()).try_send(job) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.in_flight.fetch_sub(1, Ordering::AcqRel);
                Err(Busy)
            }
        }
    }

    /// Runs `f` on a worker; `Busy` at once when the queue is full.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, Busy> {
        self.submit(f)?.await.map_err(|_| Busy)
    }

    /// An argon2id PHC string of `password` with a fresh salt, for a registration: it leaves
    /// `LOGIN_RESERVE_SLOTS` of the pool to logins.
    pub async fn hash(&self, password: String) -> Result<Result<String, String>, Busy> {
        self.submit_leaving(LOGIN_RESERVE_SLOTS, move || {
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| e.to_string())
        })?
        .await
        .map_err(|_| Busy)
    }

    /// Whether `password` matches `stored`. A missing user costs the same as a wrong
    /// password, so response times do not reveal which user names exist.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, Busy> {
        self.run(move || {
            let dummy;
            let stored = match &stored {
                Some(s) => s.as_str(),
                None => {
                    dummy = Argon2::default()
                        .hash_password(b"dummy", &SaltString::generate(&mut argon2::password_hash::rand_core::OsRng))
                        .map(|h| h.to_string())
                        .unwrap_or_default();
                    &dummy
                }
            };
            let Ok(parsed) = PasswordHash::new(stored) else { return false };
            Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && !stored.is_empty()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gives `pool`'s one worker a job that holds it until the sender is used, and waits until
    /// the worker has taken it. The receiver answers once the job is over.
    fn hold_the_worker(pool: &PasswordPool) -> (tokio::sync::oneshot::Receiver<()>, std::sync::mpsc::Sender<()>) {
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let held = pool
            .submit(move || {
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
            })
            .unwrap();
        started_rx.recv_timeout(std::time::Duration::from_secs(5)).expect("the worker took the first job");
        (held, release_tx)
    }

    #[tokio::test]
    async fn a_full_queue_is_busy_at_once_and_the_pool_recovers() {
        let pool = PasswordPool::new(1, 1);
        // One job holds the worker, one waits in the queue: the third is refused at once.
        let (held, release_tx) = hold_the_worker(&pool);
        let queued = pool.submit(|| 7).expect("one job fits in the queue");
        assert!(pool.submit(|| 0).is_err(), "a third job is refused while one runs and one waits");
        release_tx.send(()).unwrap();
        held.await.unwrap();
        assert_eq!(queued.await.unwrap(), 7);
        assert_eq!(pool.run(|| 9).await.unwrap(), 9, "the pool takes work again");
    }

    #[tokio::test]
    async fn registrations_leave_the_last_slot_to_logins() {
        let pool = PasswordPool::new(1, 2);
        let (held, release_tx) = hold_the_worker(&pool);
        // One of three slots is taken: a registration may take the second, not the third.
        let first = pool.submit_leaving(LOGIN_RESERVE_SLOTS, || 1).expect("a registration fits");
        assert!(pool.submit_leaving(LOGIN_RESERVE_SLOTS, || 2).is_err(), "the last slot is the logins'");
        let login = pool.submit(|| 3).expect("a login takes the last slot");
        assert!(pool.submit(|| 4).is_err(), "then the pool is full for everyone");
        release_tx.send(()).unwrap();
        held.await.unwrap();
        assert_eq!((first.await.unwrap(), login.await.unwrap()), (1, 3));
        // Every slot is free again.
        assert_eq!(pool.in_flight.load(Ordering::Acquire), 0);
        assert!(pool.hash("secret1".into()).await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let pool = PasswordPool::new(1, 2);
        let h = pool.hash("secret1".into()).await.unwrap().unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(pool.verify("secret1".into(), Some(h.clone())).await.unwrap());
        assert!(!pool.verify("wrong".into(), Some(h)).await.unwrap());
        assert!(!pool.verify("x".into(), None).await.unwrap());
    }
}
