//! Progress on stderr for the steps of a build, the package downloads and
//! the registry transfers.
//!
//! A [`Meter`] is a cheap handle over a [`Progress`]: what every crate
//! tells, whoever shows it. Here: [`Meter::quiet`] (nothing) and
//! [`Meter::lines`] (one plain line per step, written when the step is
//! done: `nodeimg: fetched containerd 1.6.20 (30.1 MB)`, so logs and
//! captured stderr stay readable). The command line adds bars on a
//! terminal. stdout is never written to.

use std::fmt;
use std::sync::Arc;

/// Where progress is shown. Implementations write to stderr only.
pub trait Progress: Send + Sync {
    /// A name for `Debug` (`quiet`, `lines`, `terminal`).
    fn kind(&self) -> &'static str;

    /// True when nothing is shown.
    fn is_quiet(&self) -> bool {
        false
    }

    /// A step starts: a spinner's message, or a line `nodeimg: <message>`.
    fn step(&self, message: &str);

    /// What is going on, for a spinner only: no line is written without
    /// a terminal (the steps' own lines follow).
    fn status(&self, message: &str);

    /// A finished step worth keeping on screen: a line either way.
    fn done(&self, message: &str);

    /// Run `f` (which writes to stderr) with the bars out of the way.
    fn suspend(&self, f: &mut dyn FnMut());

    /// A transfer of `size` bytes starts; `what` names it. The bar it
    /// returns is cleared when dropped.
    fn bar(&self, what: &str, size: u64) -> Box<dyn Bar>;

    /// Clear what is on the terminal (the end of the command).
    fn finish(&self);
}

/// The bar of one transfer; cleared when dropped.
pub trait Bar: Send + Sync {
    /// `n` bytes transferred so far.
    fn set_position(&self, n: u64);
}

/// A bar that shows nothing.
struct NoBar;

impl Bar for NoBar {
    fn set_position(&self, _: u64) {}
}

/// Says nothing.
struct Quiet;

impl Progress for Quiet {
    fn kind(&self) -> &'static str {
        "quiet"
    }
    fn is_quiet(&self) -> bool {
        true
    }
    fn step(&self, _: &str) {}
    fn status(&self, _: &str) {}
    fn done(&self, _: &str) {}
    fn suspend(&self, f: &mut dyn FnMut()) {
        f();
    }
    fn bar(&self, _: &str, _: u64) -> Box<dyn Bar> {
        Box::new(NoBar)
    }
    fn finish(&self) {}
}

/// One line per step on stderr, whatever stderr is.
struct Lines;

impl Progress for Lines {
    fn kind(&self) -> &'static str {
        "lines"
    }
    fn step(&self, message: &str) {
        eprintln!("nodeimg: {message}");
    }
    fn status(&self, _: &str) {}
    fn done(&self, message: &str) {
        eprintln!("nodeimg: {message}");
    }
    fn suspend(&self, f: &mut dyn FnMut()) {
        f();
    }
    fn bar(&self, _: &str, _: u64) -> Box<dyn Bar> {
        Box::new(NoBar)
    }
    fn finish(&self) {}
}

/// Where progress goes; cheap to clone (clones share the terminal).
#[derive(Clone)]
pub struct Meter {
    shown: Arc<dyn Progress>,
}

impl fmt::Debug for Meter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Meter({})", self.shown.kind())
    }
}

impl Default for Meter {
    fn default() -> Self {
        Meter::quiet()
    }
}

impl Meter {
    /// Progress shown by `shown`.
    pub fn new(shown: impl Progress + 'static) -> Self {
        Meter {
            shown: Arc::new(shown),
        }
    }

    /// Says nothing.
    pub fn quiet() -> Self {
        Meter::new(Quiet)
    }

    /// One line per step on stderr, whatever stderr is.
    pub fn lines() -> Self {
        Meter::new(Lines)
    }

    /// True when nothing is shown.
    pub fn is_quiet(&self) -> bool {
        self.shown.is_quiet()
    }

    /// A step starts: the spinner's message, or a line `nodeimg: <message>`.
    pub fn step(&self, message: &str) {
        self.shown.step(message);
    }

    /// What is going on, for the spinner only: no line is written without
    /// a terminal (the steps' own lines follow).
    pub fn status(&self, message: &str) {
        self.shown.status(message);
    }

    /// A finished step worth keeping on screen: a line either way.
    pub fn done(&self, message: &str) {
        self.shown.done(message);
    }

    /// Run `f` (which writes to stderr) with the bars out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        let mut f = Some(f);
        let mut out = None;
        self.shown.suspend(&mut || {
            if let Some(f) = f.take() {
                out = Some(f());
            }
        });
        match (out, f) {
            (Some(r), _) => r,
            // A `Progress` that did not run it: run it here.
            (None, Some(f)) => f(),
            (None, None) => unreachable!("a closure taken is run and its result kept"),
        }
    }

    /// The bar of a transfer of `size` bytes (`what` names it), without a
    /// line of its own; cleared when the last clone is dropped.
    pub fn bar(&self, what: &str, size: u64) -> Transfer {
        Transfer {
            bar: Arc::from(self.shown.bar(what, size)),
        }
    }

    /// A download of `size` bytes starts; `what` names it
    /// (`containerd 1.6.20`).
    pub fn download(&self, what: &str, size: u64) -> Download {
        Download {
            meter: self.clone(),
            what: what.to_string(),
            size,
            received: 0,
            bar: Some(self.shown.bar(what, size)),
        }
    }

    /// Clear the terminal's bars (the end of the command).
    pub fn finish(&self) {
        self.shown.finish();
    }
}

/// The bar of one transfer; see [`Meter::bar`]. Clones share the bar.
#[derive(Clone)]
pub struct Transfer {
    bar: Arc<dyn Bar>,
}

impl Transfer {
    /// `n` bytes transferred so far.
    pub fn set_position(&self, n: u64) {
        self.bar.set_position(n);
    }
}

/// One download in progress; see [`Meter::download`].
pub struct Download {
    meter: Meter,
    what: String,
    size: u64,
    received: u64,
    bar: Option<Box<dyn Bar>>,
}

impl Download {
    /// `n` bytes received so far.
    pub fn received(&mut self, n: u64) {
        self.received = n;
        if let Some(bar) = &self.bar {
            bar.set_position(n);
        }
    }

    /// The file is there and verified: `fetched NAME (SIZE)` when it was
    /// downloaded, `verified NAME from the cache (SIZE)` when the cache
    /// already held it.
    pub fn finish(mut self) {
        // The bar is cleared before the line is written.
        drop(self.bar.take());
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
        assert_eq!(m.suspend(|| 7), 7);
        m.bar("push 0123", 3).set_position(3);
    }
}
