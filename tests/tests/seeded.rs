//! libtorch's random generator is global to the process, and the tests of
//! this binary run in parallel: two seeded model initialisations at once
//! interleave their draws and get other weights than their seed promises
//! (seen as a flaky self-test margin). Seeded initialisations take this
//! lock.

use std::sync::Mutex;

static TCH_RNG: Mutex<()> = Mutex::new(());

/// Runs `init` with libtorch seeded by `seed` and no other seeded
/// initialisation running.
pub fn seeded<T>(seed: i64, init: impl FnOnce() -> T) -> T {
    // A panicking holder poisons the lock; the generator is re-seeded anyway.
    let _guard = TCH_RNG.lock().unwrap_or_else(|p| p.into_inner());
    tch::manual_seed(seed);
    init()
}
