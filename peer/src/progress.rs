//! A one-line progress bar on stderr, drawn only when stderr is a terminal, and the sliding
//! rate meter behind it (also the daemon's `rate_bytes_per_s`).
//!
//! A download's bar shows bytes done / total, the rate over the last few seconds, the time
//! left and the sharers connected; once every piece is verified it says `verifying` (the file
//! being moved into place) instead of sitting at 100%, and `paused` while paused. Its last
//! frame (`render_done`) is 100% with the average rate and the time taken: no ETA, no sharers.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// The window a rate is measured over.
pub const RATE_WINDOW: Duration = Duration::from_secs(5);

/// Bytes per second over the last `window`: samples of a growing byte count, the oldest kept
/// being the last one at or before the window's start.
#[derive(Clone, Debug)]
pub struct RateMeter {
    window: Duration,
    samples: VecDeque<(Instant, u64)>,
}

impl RateMeter {
    pub fn new(window: Duration) -> Self {
        RateMeter { window, samples: VecDeque::new() }
    }

    /// Records that `bytes` were done at `at` (samples come in time order).
    pub fn push(&mut self, at: Instant, bytes: u64) {
        if let Some(start) = at.checked_sub(self.window) {
            while self.samples.len() >= 2 && self.samples[1].0 <= start {
                self.samples.pop_front();
            }
        }
        self.samples.push_back((at, bytes));
    }

    /// Forgets every sample (a download that starts again).
    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// Bytes per second from the oldest sample kept to `bytes_now` at `now`; 0 without a
    /// sample at least 100 ms old.
    pub fn rate(&self, now: Instant, bytes_now: u64) -> u64 {
        let Some(&(t0, b0)) = self.samples.front() else { return 0 };
        let dt = now.saturating_duration_since(t0).as_secs_f64();
        if dt < 0.1 {
            return 0;
        }
        (bytes_now.saturating_sub(b0) as f64 / dt) as u64
    }
}

/// What a download is doing, for the bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Fetching pieces (or hashing, for an upload).
    Running,
    /// Every piece verified: the file is being moved into place.
    Verifying,
    Paused,
}

/// `1.5 MiB`, `512 KiB`, `12 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Seconds as `m:ss`, or `h:mm:ss` from an hour on.
pub fn clock(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// Time left at `rate` bytes/s, or `None` when nothing is moving.
pub fn eta_secs(done: u64, total: u64, rate: u64) -> Option<u64> {
    (rate > 0).then(|| total.saturating_sub(done).div_ceil(rate))
}

/// A duration as a person reads it: `4.2 s` under a minute, then `m:ss` (`h:mm:ss`).
pub fn took(elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        clock(elapsed.as_secs())
    }
}

/// Bytes per second of `bytes` moved in `elapsed` (0 for no time at all).
pub fn average_rate(bytes: u64, elapsed: Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        0
    } else {
        (bytes as f64 / secs) as u64
    }
}

/// Percent done, 100 for an empty total.
pub fn percent(done: u64, total: u64) -> f64 {
    if total == 0 {
        100.0
    } else {
        (done.min(total) as f64 * 100.0) / total as f64
    }
}

/// The bar's head: label, bar, percent and bytes.
fn head(label: &str, done: u64, total: u64) -> String {
    const WIDTH: usize = 24;
    let frac = percent(done, total) / 100.0;
    let filled = ((frac * WIDTH as f64) as usize).min(WIDTH);
    format!(
        "{label} [{}{}] {:>5.1}%  {} / {}",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled),
        frac * 100.0,
        human_bytes(done.min(total)),
        human_bytes(total)
    )
}

/// One frame of the bar (without the leading `\r`). `peers` is the sharers connected, in
/// show-downloads' word.
pub fn render(label: &str, done: u64, total: u64, rate: u64, peers: Option<usize>, phase: Phase) -> String {
    let mut line = head(label, done, total);
    match phase {
        Phase::Verifying => line.push_str("  verifying the whole file"),
        Phase::Paused => line.push_str("  paused"),
        Phase::Running => {
            line.push_str(&format!("  {}/s", human_bytes(rate)));
            match eta_secs(done, total, rate) {
                Some(s) => line.push_str(&format!("  ETA {}", clock(s))),
                None => line.push_str("  ETA -:--"),
            }
            if let Some(p) = peers {
                line.push_str(&format!("  {p} sharer{}", if p == 1 { "" } else { "s" }));
            }
        }
    }
    line
}

/// The last frame of a finished download: 100%, the average rate and the time it took.
pub fn render_done(label: &str, total: u64, avg_rate: u64, elapsed: Duration) -> String {
    format!("{}  avg {}/s  in {}", head(label, total, total), human_bytes(avg_rate), took(elapsed))
}

pub struct Progress {
    label: String,
    total: u64,
    enabled: bool,
    last_draw: Option<Instant>,
    last_phase: Phase,
    meter: RateMeter,
}

impl Progress {
    pub fn new(label: impl Into<String>, total: u64) -> Self {
        Progress {
            label: label.into(),
            total,
            enabled: std::io::stderr().is_terminal(),
            last_draw: None,
            last_phase: Phase::Running,
            meter: RateMeter::new(RATE_WINDOW),
        }
    }

    /// `done` bytes; the rate is measured here.
    pub fn set(&mut self, done: u64) {
        let now = Instant::now();
        self.meter.push(now, done);
        let rate = self.meter.rate(now, done);
        self.update(done, rate, None, Phase::Running);
    }

    /// `done` bytes at `rate` bytes/s (measured elsewhere), with `peers` connected.
    pub fn update(&mut self, done: u64, rate: u64, peers: Option<usize>, phase: Phase) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let recent = self.last_draw.is_some_and(|t| now.duration_since(t) < Duration::from_millis(100));
        if recent && phase == self.last_phase && done < self.total {
            return;
        }
        self.last_draw = Some(now);
        self.last_phase = phase;
        let line = render(&self.label, done, self.total, rate, peers, phase);
        let mut err = std::io::stderr().lock();
        // `\x1b[K` clears what a longer previous frame left.
        let _ = write!(err, "\r{line}\x1b[K");
        let _ = err.flush();
    }

    /// Draws the last frame of a finished download (`render_done`) and ends the line.
    pub fn complete(&mut self, avg_rate: u64, elapsed: Duration) {
        if !self.enabled {
            return;
        }
        let line = render_done(&self.label, self.total, avg_rate, elapsed);
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "\r{line}\x1b[K");
        let _ = err.flush();
        self.last_draw = None;
    }

    pub fn finish(&mut self) {
        if self.enabled && self.last_draw.is_some() {
            let _ = writeln!(std::io::stderr());
            self.last_draw = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_measured_over_the_last_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut m = RateMeter::new(Duration::from_secs(5));
        assert_eq!(m.rate(t0, 0), 0, "no sample, no rate");
        m.push(at(0), 0);
        assert_eq!(m.rate(at(50), 1000), 0, "too soon to tell");
        assert_eq!(m.rate(at(1000), 1000), 1000);
        // 1 MB/s for 10 s, then stalled for 3 s: the rate is that of the last 5 s or so.
        for s in 1..=10 {
            m.push(at(s * 1000), s * 1_000_000);
        }
        for s in 11..=13 {
            m.push(at(s * 1000), 10_000_000);
        }
        let r = m.rate(at(13_000), 10_000_000);
        assert_eq!(r, 2_000_000 / 5, "2 MB in the last 5 s: {r}");
        assert!(m.samples.len() <= 7, "old samples are dropped: {}", m.samples.len());
        m.clear();
        assert_eq!(m.rate(at(14_000), 10_000_000), 0);
    }

    #[test]
    fn bytes_clock_eta_and_percent() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(512 * 1024), "512.0 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(clock(7), "0:07");
        assert_eq!(clock(3 * 3600 + 62), "3:01:02");
        assert_eq!(eta_secs(0, 100, 0), None);
        assert_eq!(eta_secs(50, 100, 20), Some(3));
        assert_eq!(percent(5, 0), 100.0);
        assert_eq!(percent(50, 200), 25.0);
    }

    #[test]
    fn a_frame_says_what_is_going_on() {
        let mib = 1024 * 1024;
        let f = render("x.bin", 4 * mib, 8 * mib, mib, Some(2), Phase::Running);
        assert!(f.contains(" 50.0%") && f.contains("4.0 MiB / 8.0 MiB"), "{f}");
        assert!(f.contains("1.0 MiB/s") && f.contains("ETA 0:04") && f.contains("2 sharers"), "{f}");
        assert!(!f.contains("peer"), "one word for one thing, as show-downloads says: {f}");
        let f = render("x.bin", 8 * mib, 8 * mib, 0, Some(0), Phase::Verifying);
        assert!(f.contains("verifying") && !f.contains("ETA"), "not an idle 100%: {f}");
        let f = render("x.bin", mib, 8 * mib, 0, None, Phase::Paused);
        assert!(f.contains("paused") && !f.contains("ETA"), "{f}");
    }

    #[test]
    fn the_last_frame_is_100_percent_at_the_average_rate() {
        let mib = 1024 * 1024;
        let f = render_done("x.bin", 8 * mib, 2 * mib, Duration::from_millis(4200));
        assert!(f.contains("100.0%") && f.contains("8.0 MiB / 8.0 MiB"), "{f}");
        assert!(f.contains("avg 2.0 MiB/s") && f.contains("in 4.2 s"), "{f}");
        assert!(!f.contains("ETA") && !f.contains("sharer") && !f.contains("peer"), "nothing of a running bar: {f}");
        assert_eq!(took(Duration::from_secs(75)), "1:15");
        assert_eq!(average_rate(10 * mib, Duration::from_secs(4)), 10 * mib / 4);
        assert_eq!(average_rate(10, Duration::ZERO), 0);
    }
}
