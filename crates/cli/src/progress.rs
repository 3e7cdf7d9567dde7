//! Progress on stderr as the command line shows it.
//!
//! On a terminal: a spinner for the current step and one bar per transfer
//! (package downloads, registry pulls and pushes), drawn by indicatif, and
//! the lines of finished steps above them. Otherwise: one plain line per
//! step ([`Meter::lines`]). Quiet: nothing.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use nodeimg_fetch::progress::{Bar, Meter, Progress};

/// For stderr: nothing when `quiet`, bars on a terminal, lines otherwise.
pub fn stderr(quiet: bool) -> Meter {
    if quiet {
        return Meter::quiet();
    }
    if !std::io::stderr().is_terminal() {
        return Meter::lines();
    }
    Meter::new(Terminal::new())
}

/// A spinner and bars on the terminal.
struct Terminal {
    multi: MultiProgress,
    spinner: ProgressBar,
}

impl Terminal {
    fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let spinner = multi.add(ProgressBar::new_spinner());
        spinner.enable_steady_tick(Duration::from_millis(100));
        Terminal { multi, spinner }
    }
}

impl Progress for Terminal {
    fn kind(&self) -> &'static str {
        "terminal"
    }

    fn step(&self, message: &str) {
        self.spinner.set_message(message.to_string());
    }

    fn status(&self, message: &str) {
        self.spinner.set_message(message.to_string());
    }

    fn done(&self, message: &str) {
        // Printing fails only when the terminal is gone.
        let _ = self.multi.println(format!("nodeimg: {message}"));
    }

    fn suspend(&self, f: &mut dyn FnMut()) {
        self.multi.suspend(f);
    }

    fn bar(&self, what: &str, size: u64) -> Box<dyn Bar> {
        let pb = self.multi.add(ProgressBar::new(size));
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:36!} [{bar:30}] {decimal_bytes:>9}/{decimal_total_bytes:<9} {decimal_bytes_per_sec}",
        ) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(what.to_string());
        Box::new(TerminalBar(pb))
    }

    fn finish(&self) {
        self.spinner.finish_and_clear();
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // The last handle is gone: nothing is left drawn.
        self.spinner.finish_and_clear();
    }
}

/// One transfer's bar; cleared when dropped (done or failed: the error
/// says the rest).
struct TerminalBar(ProgressBar);

impl Bar for TerminalBar {
    fn set_position(&self, n: u64) {
        self.0.set_position(n);
    }
}

impl Drop for TerminalBar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hidden_terminal_meter_takes_every_call() {
        assert!(stderr(true).is_quiet());
        let m = Meter::new(Terminal {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
            spinner: ProgressBar::hidden(),
        });
        assert_eq!(format!("{m:?}"), "Meter(terminal)");
        let mut d = m.download("demo 1.0", 10);
        d.received(10);
        d.finish();
        let bar = m.bar("push 0123", 3);
        bar.set_position(3);
        assert_eq!(m.suspend(|| 1), 1);
        m.finish();
    }
}
