//! Headless Chromium (Debian's `chromium`) for the tests of what people see
//! in a browser: the DOM a page renders to, and screenshots. Chromium
//! missing is a failure that says how to install it, never a skip.

use std::path::PathBuf;
use std::process::Command;

/// `$CHROMIUM`, else Debian's `/usr/bin/chromium`; panics saying how to
/// install it when it is missing.
pub fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.is_file(),
        "headless Chromium is needed at {} (or set $CHROMIUM): install it with `apt-get install -y chromium`",
        path.display()
    );
    path
}

/// Runs Chromium headless on `url` (`file://…` or `http://…`) with `args`,
/// in a fresh profile, and returns what it printed (with `--dump-dom`, the
/// DOM after the page's scripts ran).
pub fn headless(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("a profile dir");
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        output.status.success(),
        "chromium failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// The DOM Chromium renders `url` to.
pub fn dom(url: &str) -> String {
    headless(url, &["--dump-dom"])
}
