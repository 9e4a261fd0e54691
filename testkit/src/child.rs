//! Runs a scenario that may abort the process in a child process.

/// Runs `scenario` in a child process and asserts that the child exited
/// successfully: an abort (a panic while unwinding, say) shows up as a
/// signal and fails the calling test instead of killing the test binary.
///
/// `test` is the calling test's exact name: the child is this test binary,
/// re-run with that name (ignored tests included) and `TESTKIT_CHILD` set,
/// in which case `scenario` runs directly. Not for Miri (no processes).
pub fn in_child(test: &str, scenario: impl FnOnce()) {
    if std::env::var_os("TESTKIT_CHILD").is_some() {
        scenario();
        return;
    }
    let status = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            test,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TESTKIT_CHILD", "1")
        .status()
        .expect("re-run the test binary");
    assert!(
        status.success(),
        "the scenario killed its process ({status}): an abort (a panic while unwinding, a failed allocation)"
    );
}
