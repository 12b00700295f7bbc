//! Progress of a live run: a bar on a terminal, a plain line every few seconds otherwise.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::record::{Outcome, RequestRecord};

/// Running totals of one limiter run, updated as records arrive: the final outcomes
/// (which partition the requests done) and, apart, the requests that saw a 429.
#[derive(Debug, Default)]
pub struct Counters {
    done: AtomicU64,
    ok: AtomicU64,
    saw_429: AtomicU64,
    failed_throttled: AtomicU64,
    errors: AtomicU64,
    dropped: AtomicU64,
}

impl Counters {
    /// Counts one finished request.
    pub fn add(&self, r: &RequestRecord) {
        self.done.fetch_add(1, Ordering::Relaxed);
        let n = match r.outcome {
            Outcome::Ok => &self.ok,
            Outcome::Throttled => &self.failed_throttled,
            Outcome::Error => &self.errors,
            Outcome::Dropped => &self.dropped,
        };
        n.fetch_add(1, Ordering::Relaxed);
        if r.attempts.iter().any(|a| a.throttled()) {
            self.saw_429.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `"N done: ok, failed after 429s, errors, dropped (saw 429)"`; the four outcomes
    /// add up to the requests done.
    pub fn line(&self) -> String {
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        format!(
            "{} done: {} ok, {} failed after 429s, {} errors, {} dropped ({} saw a 429)",
            get(&self.done),
            get(&self.ok),
            get(&self.failed_throttled),
            get(&self.errors),
            get(&self.dropped),
            get(&self.saw_429),
        )
    }
}

/// Shows a run's progress until [`finish`](Progress::finish)ed.
#[derive(Debug)]
pub struct Progress {
    counters: Arc<Counters>,
    ticker: Option<tokio::task::JoinHandle<()>>,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts showing progress of limiter `name` over `duration` (nothing when `enabled` is
    /// false). Must be called inside a tokio runtime.
    pub fn new(enabled: bool, name: &str, duration: Duration) -> Self {
        let counters = Arc::new(Counters::default());
        if !enabled {
            return Self {
                counters,
                ticker: None,
                bar: None,
            };
        }
        let secs = duration.as_secs().max(1);
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(secs);
            let style = ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len}s {msg}")
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(name.to_owned());
            bar
        });
        let (c, b, label) = (counters.clone(), bar.clone(), name.to_owned());
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            for elapsed in 1u64.. {
                tick.tick().await;
                match &b {
                    Some(bar) => {
                        bar.set_position(elapsed.min(secs));
                        bar.set_message(c.line());
                    }
                    None if elapsed % 5 == 0 => eprintln!("{label}: {elapsed}s: {}", c.line()),
                    None => {}
                }
            }
        });
        Self {
            counters,
            ticker: Some(ticker),
            bar,
        }
    }

    /// The counters to update as records arrive.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Stops the display.
    pub fn finish(&self) {
        if let Some(t) = &self.ticker {
            t.abort();
        }
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
