//! Which of the pooler's workers the running code is on (each worker is a thread with its own
//! current-thread runtime: its own I/O reactor and timers), so that a socket can be kept on
//! the reactor of the thread that uses it.

use std::cell::Cell;

thread_local! {
    static WORKER: Cell<u16> = const { Cell::new(0) };
}

/// The worker running on this thread: 0 for the daemon's main thread and for every thread that
/// is not a worker (tests, blocking pools).
pub fn current() -> u16 {
    WORKER.with(Cell::get)
}

/// Marks this thread as worker `index` (called once, when a worker thread starts).
pub fn enter(index: u16) {
    WORKER.with(|w| w.set(index));
}
