//! Progress of long work on a terminal: a spinner on stderr with what is
//! happening now and the time it has taken. Where stderr is not a terminal
//! (CI, a pipe, a log file) it draws nothing, so only the results remain.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// How often the spinner turns.
const TICK: Duration = Duration::from_millis(120);

/// A spinner showing `message`, drawn only on a terminal.
pub fn spinner(message: impl Into<String>) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(message.into());
    bar.enable_steady_tick(TICK);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_drawn_where_stderr_is_not_a_terminal() {
        // Test runs capture stderr: the spinner must stay out of the way.
        let bar = spinner("reconciling");
        assert!(bar.is_hidden());
        assert_eq!(bar.message(), "reconciling");
        bar.finish_and_clear();
    }
}
