//! Named crash points for the crash-safety tests: when the environment
//! variable `TUMORXAI_FAILPOINT` names a point, the process aborts there —
//! no destructors, no buffered writes flushed, as a SIGKILL or a power cut
//! would leave it. Unset (every real deployment), a point costs one
//! environment lookup on paths that run once per upgrade step.

/// The variable naming the point to crash at.
pub const FAILPOINT_ENV: &str = "TUMORXAI_FAILPOINT";

/// Aborts the process if `name` is the configured point.
pub fn hit(name: &str) {
    if std::env::var(FAILPOINT_ENV).is_ok_and(|v| v == name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}
