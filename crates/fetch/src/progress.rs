//! Progress on stderr for the steps of a build and the package downloads.
//!
//! On a terminal: a spinner for the current step and one bar per download,
//! drawn by indicatif. Otherwise: one plain line per step
//! (`nodeimg: fetched containerd 1.6.20 (30.1 MB)`), written when the step
//! is done, so logs and captured stderr stay readable. Quiet: nothing.
//! stdout is never written to.

use std::fmt;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress goes; cheap to clone (clones share the terminal).
#[derive(Clone)]
pub struct Meter {
    mode: Arc<Mode>,
}

enum Mode {
    Quiet,
    Lines,
    Terminal {
        multi: MultiProgress,
        spinner: ProgressBar,
    },
}

impl fmt::Debug for Meter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = match *self.mode {
            Mode::Quiet => "quiet",
            Mode::Lines => "lines",
            Mode::Terminal { .. } => "terminal",
        };
        write!(f, "Meter({m})")
    }
}

impl Default for Meter {
    fn default() -> Self {
        Meter::quiet()
    }
}

impl Meter {
    /// Says nothing.
    pub fn quiet() -> Self {
        Meter {
            mode: Arc::new(Mode::Quiet),
        }
    }

    /// One line per step on stderr, whatever stderr is.
    pub fn lines() -> Self {
        Meter {
            mode: Arc::new(Mode::Lines),
        }
    }

    /// For stderr: nothing when `quiet`, bars on a terminal, lines otherwise.
    pub fn stderr(quiet: bool) -> Self {
        if quiet {
            return Meter::quiet();
        }
        if !std::io::stderr().is_terminal() {
            return Meter::lines();
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let spinner = multi.add(ProgressBar::new_spinner());
        spinner.enable_steady_tick(Duration::from_millis(100));
        Meter {
            mode: Arc::new(Mode::Terminal { multi, spinner }),
        }
    }

    /// True when nothing is shown.
    pub fn is_quiet(&self) -> bool {
        matches!(*self.mode, Mode::Quiet)
    }

    /// A step starts: the spinner's message, or a line `nodeimg: <message>`.
    pub fn step(&self, message: &str) {
        match &*self.mode {
            Mode::Quiet => {}
            Mode::Lines => eprintln!("nodeimg: {message}"),
            Mode::Terminal { spinner, .. } => spinner.set_message(message.to_string()),
        }
    }

    /// What is going on, for the spinner only: no line is written without
    /// a terminal (the steps' own lines follow).
    pub fn status(&self, message: &str) {
        if let Mode::Terminal { spinner, .. } = &*self.mode {
            spinner.set_message(message.to_string());
        }
    }

    /// A finished step worth keeping on screen: a line either way.
    pub fn done(&self, message: &str) {
        match &*self.mode {
            Mode::Quiet => {}
            Mode::Lines => eprintln!("nodeimg: {message}"),
            Mode::Terminal { multi, .. } => {
                // Printing fails only when the terminal is gone.
                let _ = multi.println(format!("nodeimg: {message}"));
            }
        }
    }

    /// Run `f` (which writes to stderr) with the bars out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &*self.mode {
            Mode::Terminal { multi, .. } => multi.suspend(f),
            _ => f(),
        }
    }

    /// A download of `size` bytes starts; `what` names it
    /// (`containerd 1.6.20`).
    pub fn download(&self, what: &str, size: u64) -> Download {
        let bar = match &*self.mode {
            Mode::Terminal { multi, .. } => {
                let pb = multi.add(ProgressBar::new(size));
                if let Ok(style) = ProgressStyle::with_template(
                    "{msg:36!} [{bar:30}] {decimal_bytes:>9}/{decimal_total_bytes:<9} {decimal_bytes_per_sec}",
                ) {
                    pb.set_style(style.progress_chars("=> "));
                }
                pb.set_message(what.to_string());
                Some(pb)
            }
            _ => None,
        };
        Download {
            meter: self.clone(),
            what: what.to_string(),
            size,
            received: 0,
            bar,
        }
    }

    /// Clear the terminal's bars (the end of the command).
    pub fn finish(&self) {
        if let Mode::Terminal { spinner, .. } = &*self.mode {
            spinner.finish_and_clear();
        }
    }
}

/// One download in progress; see [`Meter::download`].
pub struct Download {
    meter: Meter,
    what: String,
    size: u64,
    received: u64,
    bar: Option<ProgressBar>,
}

impl Download {
    /// `n` bytes received so far.
    pub fn received(&mut self, n: u64) {
        self.received = n;
        if let Some(pb) = &self.bar {
            pb.set_position(n);
        }
    }

    /// The file is there and verified: `fetched NAME (SIZE)` when it was
    /// downloaded, `verified NAME from the cache (SIZE)` when the cache
    /// already held it.
    pub fn finish(mut self) {
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
        let how = if self.received > 0 || self.size == 0 {
            format!("fetched {} ({})", self.what, human_size(self.size))
        } else {
            format!(
                "verified {} in the cache ({})",
                self.what,
                human_size(self.size)
            )
        };
        self.meter.done(&how);
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        // A failed download clears its bar; the error says the rest.
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
    }
}

/// A size in decimal units with one decimal: `512 B`, `1.2 kB`, `30.1 MB`.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{n} B");
    }
    // Tenths of the unit, in integers: no float rounding surprises.
    let mut unit = 0;
    let mut scale: u64 = 1000;
    while unit + 1 < UNITS.len() && n >= scale.saturating_mul(1000) - scale / 20 {
        unit += 1;
        scale = scale.saturating_mul(1000);
    }
    let tenths = (u128::from(n) * 10 + u128::from(scale) / 2) / u128::from(scale);
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1000), "1.0 kB");
        assert_eq!(human_size(1234), "1.2 kB");
        assert_eq!(human_size(30_100_000), "30.1 MB");
        assert_eq!(human_size(999_949), "999.9 kB");
        assert_eq!(human_size(999_950), "1.0 MB");
        assert_eq!(human_size(2_500_000_000), "2.5 GB");
        assert_eq!(human_size(u64::MAX), "18446744.1 TB");
    }

    #[test]
    fn quiet_meter_counts_silently() {
        let m = Meter::quiet();
        assert!(m.is_quiet());
        let mut d = m.download("demo 1.0", 10);
        d.received(10);
        d.finish();
        assert_eq!(format!("{m:?}"), "Meter(quiet)");
        assert!(!Meter::lines().is_quiet());
    }
}
