//! A one-line progress bar on stderr, drawn only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::time::Instant;

pub struct Progress {
    label: String,
    total: u64,
    started: Instant,
    enabled: bool,
    last_draw: Option<Instant>,
}

impl Progress {
    pub fn new(label: impl Into<String>, total: u64) -> Self {
        Progress {
            label: label.into(),
            total,
            started: Instant::now(),
            enabled: std::io::stderr().is_terminal(),
            last_draw: None,
        }
    }

    pub fn set(&mut self, done: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self.last_draw.is_some_and(|t| now.duration_since(t).as_millis() < 100) && done < self.total {
            return;
        }
        self.last_draw = Some(now);
        let frac = if self.total == 0 { 1.0 } else { done as f64 / self.total as f64 };
        let width = 30usize;
        let filled = ((frac * width as f64) as usize).min(width);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate_mib = done as f64 / secs / (1024.0 * 1024.0);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{} [{}{}] {:>5.1}% {:>8.1} MiB/s",
            self.label,
            "#".repeat(filled),
            ".".repeat(width - filled),
            frac * 100.0,
            rate_mib
        );
        let _ = err.flush();
    }

    pub fn finish(&mut self) {
        if self.enabled && self.last_draw.is_some() {
            let _ = writeln!(std::io::stderr());
        }
    }
}
