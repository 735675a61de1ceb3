//! Concurrent closed-loop load: `workers` tasks take the next item from a shared counter, each
//! doing one request at a time, until all items are done or the deadline passes. Records each
//! acknowledged request's latency, and counts failures by error code. A progress thread prints
//! to stderr every two seconds.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sys::{ms, percentile};

/// What the progress thread reads while a phase runs.
#[derive(Default)]
pub struct Live {
    pub label: Mutex<String>,
    pub total: AtomicU64,
    pub done: AtomicU64,
    pub failed: AtomicU64,
    pub started: Mutex<Option<Instant>>,
}

impl Live {
    fn begin(&self, label: &str, total: u64) {
        *self.label.lock().unwrap() = label.to_string();
        self.total.store(total, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        self.failed.store(0, Ordering::Relaxed);
        *self.started.lock().unwrap() = Some(Instant::now());
    }
}

/// The outcome of one phase.
#[derive(Clone, Debug, Default)]
pub struct Phase {
    pub label: String,
    pub workers: usize,
    pub total: u64,
    pub acked: u64,
    pub failed: u64,
    /// Failures by error code, and the first few messages.
    pub errors: BTreeMap<String, u64>,
    pub error_samples: Vec<String>,
    pub wall: Duration,
    /// Latencies of the acknowledged requests, sorted, in ms.
    pub lat_ms: Vec<f64>,
    /// The deadline passed before every item was done.
    pub cut_short: bool,
}

impl Phase {
    pub fn rate(&self) -> f64 {
        self.acked as f64 / self.wall.as_secs_f64().max(1e-9)
    }
    pub fn p(&self, q: f64) -> f64 {
        percentile(&self.lat_ms, q)
    }
    pub fn max(&self) -> f64 {
        self.lat_ms.last().copied().unwrap_or(0.0)
    }
    /// `N in S s (R/s), F failed`: the phase's progress line.
    pub fn summary(&self) -> String {
        format!("{} in {:.1} s ({:.0}/s), {} failed", self.acked, self.wall.as_secs_f64(), self.rate(), self.failed)
    }
    pub fn errors_text(&self) -> String {
        if self.errors.is_empty() {
            return "0".into();
        }
        let by: Vec<String> = self.errors.iter().map(|(k, v)| format!("{v} {k}")).collect();
        format!("{} ({})", self.failed, by.join(", "))
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "label": self.label, "workers": self.workers, "total": self.total, "acked": self.acked,
            "failed": self.failed, "errors": self.errors, "error_samples": self.error_samples,
            "wall_s": self.wall.as_secs_f64(), "per_s": self.rate(), "p50_ms": self.p(0.5),
            "p99_ms": self.p(0.99), "max_ms": self.max(), "cut_short": self.cut_short,
        })
    }
}

/// A failed request: its error code and message.
pub type Failure = (String, String);

/// Runs `total` items with `workers` concurrent tasks; `f(worker, item)` does one request.
pub async fn drive<F, Fut>(live: &Arc<Live>, label: &str, total: u64, workers: usize, deadline: Instant, f: F) -> Phase
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Failure>> + Send + 'static,
{
    live.begin(label, total);
    let f = Arc::new(f);
    let next = Arc::new(AtomicU64::new(0));
    let cut = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new((BTreeMap::<String, u64>::new(), Vec::<String>::new())));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers.max(1) {
        let (f, next, cut, errors, live) = (f.clone(), next.clone(), cut.clone(), errors.clone(), live.clone());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            loop {
                if Instant::now() >= deadline {
                    cut.store(true, Ordering::Relaxed);
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let t = Instant::now();
                match f(w, i).await {
                    Ok(()) => {
                        lat.push(ms(t.elapsed()));
                        live.done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err((code, msg)) => {
                        live.failed.fetch_add(1, Ordering::Relaxed);
                        let mut e = errors.lock().unwrap();
                        *e.0.entry(code).or_default() += 1;
                        if e.1.len() < 5 {
                            e.1.push(format!("item {i}: {msg}"));
                        }
                    }
                }
            }
            lat
        });
    }
    let mut lat_ms = Vec::with_capacity(total as usize);
    while let Some(r) = tasks.join_next().await {
        lat_ms.extend(r.expect("load worker panicked"));
    }
    let wall = started.elapsed();
    lat_ms.sort_by(f64::total_cmp);
    let (errors, error_samples) = std::mem::take(&mut *errors.lock().unwrap());
    let failed = errors.values().sum();
    Phase {
        label: label.to_string(),
        workers,
        total,
        acked: lat_ms.len() as u64,
        failed,
        errors,
        error_samples,
        wall,
        lat_ms,
        cut_short: cut.load(Ordering::Relaxed),
    }
}

/// Prints progress of the running phase to stderr every two seconds, with `extra()` (node
/// figures) appended, until dropped.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub fn start(live: Arc<Live>, extra: impl Fn() -> String + Send + 'static) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut last = (String::new(), 0u64, Instant::now());
            while !s.load(Ordering::Relaxed) {
                for _ in 0..20 {
                    std::thread::sleep(Duration::from_millis(100));
                    if s.load(Ordering::Relaxed) {
                        return;
                    }
                }
                let label = live.label.lock().unwrap().clone();
                let (done, total, failed) = (
                    live.done.load(Ordering::Relaxed),
                    live.total.load(Ordering::Relaxed),
                    live.failed.load(Ordering::Relaxed),
                );
                if label != last.0 {
                    last = (label.clone(), 0, live.started.lock().unwrap().unwrap_or_else(Instant::now));
                }
                let rate = (done.saturating_sub(last.1)) as f64 / last.2.elapsed().as_secs_f64().max(1e-3);
                last = (label.clone(), done, Instant::now());
                eprintln!("  [{label}] {done}/{total} done, {failed} failed, {rate:.0}/s; {}", extra());
            }
        });
        Progress { stop, thread: Some(thread) }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
