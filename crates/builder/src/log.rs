//! The log of one build: every step's title and the tail of what it printed.

use std::fmt::Write as _;

use toolsmith_runtime::Outcome;

use crate::pipeline::{BuildFailure, FailureKind};

/// A build's log, written as it goes.
#[derive(Debug, Default)]
pub(crate) struct Log(pub(crate) String);

impl Log {
    /// Starts a step.
    pub(crate) fn step(&mut self, title: &str) {
        let _ = writeln!(self.0, "==> {title}");
    }

    /// Adds a line.
    pub(crate) fn line(&mut self, text: &str) {
        let _ = writeln!(self.0, "{text}");
    }

    /// Adds the tail of what a sandboxed command printed, and how long it took.
    pub(crate) fn outcome(&mut self, outcome: &Outcome) {
        let text = outcome.tail(16_000);
        if !text.is_empty() {
            self.0.push_str(&text);
            if !text.ends_with('\n') {
                self.0.push('\n');
            }
        }
        let _ = writeln!(
            self.0,
            "({:.1}s{})",
            outcome.duration.as_secs_f64(),
            if outcome.timed_out { ", timed out" } else { "" }
        );
    }

    /// Ends the log with a failure.
    pub(crate) fn fail(self, kind: FailureKind, message: impl Into<String>) -> BuildFailure {
        let message = message.into();
        let mut log = self.0;
        let _ = writeln!(log, "build failed: {message}");
        BuildFailure { kind, message, log }
    }
}
