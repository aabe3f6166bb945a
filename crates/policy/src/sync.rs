//! The workspace's one rule for poisoned mutexes: recover the data and go on.
//!
//! A panic while a lock was held (a bug in one request) must not wedge every later request
//! of the gateway. Each holder keeps its state consistent per critical section (a SQLite
//! transaction rolls back on drop; maps are updated whole), so the data behind a poisoned
//! lock is still usable. Every crate locks a `std::sync::Mutex` through [`LockExt`].

use std::sync::{Mutex, MutexGuard, PoisonError};

/// [`Mutex::lock`] that recovers a poisoned lock instead of failing.
pub trait LockExt<T: ?Sized> {
    /// Locks the mutex; if a holder panicked, takes the guard anyway.
    fn lock_or_recover(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> LockExt<T> for Mutex<T> {
    fn lock_or_recover(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_recovered() {
        let m = Mutex::new(1);
        let _ = std::panic::catch_unwind(|| {
            let _g = m.lock().unwrap();
            panic!("a holder panics");
        });
        assert!(m.is_poisoned());
        *m.lock_or_recover() += 1;
        assert_eq!(*m.lock_or_recover(), 2);
    }
}
