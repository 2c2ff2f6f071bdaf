//! The progress bar (indicatif) and phase lines. The bar draws on stderr when it is a terminal
//! and is hidden otherwise; phase lines are printed either way, so a log shows what happened.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

impl Default for Ui {
    fn default() -> Ui {
        Ui::new()
    }
}

#[derive(Clone)]
pub struct Ui {
    bar: ProgressBar,
    /// Whether phase lines are printed (to stderr) when the bar itself is hidden.
    printing: bool,
}

impl Ui {
    /// A bar on stderr (hidden when stderr is not a terminal).
    pub fn new() -> Ui {
        Ui::with_target(ProgressDrawTarget::stderr(), true)
    }

    /// Nothing drawn and nothing printed (library use, tests).
    pub fn hidden() -> Ui {
        Ui::with_target(ProgressDrawTarget::hidden(), false)
    }

    fn with_target(target: ProgressDrawTarget, printing: bool) -> Ui {
        let bar = ProgressBar::with_draw_target(Some(0), target);
        let ui = Ui { bar, printing };
        ui.step("", "starting");
        ui
    }

    /// A step without a count (a spinner and what is being done).
    pub fn step(&self, prefix: &str, what: &str) {
        self.restart();
        self.bar.set_style(
            ProgressStyle::with_template("{prefix:.bold} {spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        self.bar.set_prefix(prefix.to_string());
        self.bar.set_message(what.to_string());
    }

    /// A counted phase (`enrolling 120/1000`).
    pub fn phase(&self, prefix: &str, what: &str, len: u64) {
        self.restart();
        self.bar.set_style(
            ProgressStyle::with_template(
                "{prefix:.bold} {spinner} {msg:<12} [{bar:30.cyan/blue}] {pos}/{len} ({elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        self.bar.set_prefix(prefix.to_string());
        self.bar.set_message(what.to_string());
        self.bar.set_length(len);
        self.bar.set_position(0);
    }

    /// The measured phase: seconds elapsed of `secs`, with live figures in the message.
    pub fn running(&self, prefix: &str, secs: u64) {
        self.restart();
        self.bar.set_style(
            ProgressStyle::with_template(
                "{prefix:.bold} {spinner} [{bar:30.green/blue}] {pos}/{len} s  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        self.bar.set_prefix(prefix.to_string());
        self.bar.set_length(secs);
        self.bar.set_position(0);
        self.bar.set_message("");
    }

    /// A bar finished by an earlier phase draws again.
    fn restart(&self) {
        self.bar.reset();
        self.bar.enable_steady_tick(Duration::from_millis(200));
    }

    pub fn set(&self, pos: u64) {
        self.bar.set_position(pos);
    }

    pub fn message(&self, msg: String) {
        self.bar.set_message(msg);
    }

    /// A line above the bar (printed even when the bar is hidden, unless the Ui is hidden).
    pub fn note(&self, line: &str) {
        if self.printing {
            self.bar.suspend(|| eprintln!("{line}"));
        }
    }

    /// The bar's position now (tests of the tool check it moves).
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
