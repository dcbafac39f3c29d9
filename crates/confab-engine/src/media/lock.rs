//! The media hub's locks, with its rule checked: a thread holds at most one hub lock at a time
//! (so no lock order exists to get wrong), and a panic while holding one does not poison the
//! hub. In debug builds (every test) taking a second hub lock while holding one panics.

use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard};

thread_local! {
    static HELD: Cell<Option<&'static str>> = const { Cell::new(None) };
}

pub struct Lock<T> {
    name: &'static str,
    inner: Mutex<T>,
}

pub struct Guard<'a, T> {
    guard: MutexGuard<'a, T>,
}

impl<T> Lock<T> {
    pub fn new(name: &'static str, value: T) -> Self {
        Lock {
            name,
            inner: Mutex::new(value),
        }
    }

    pub fn lock(&self) -> Guard<'_, T> {
        if cfg!(debug_assertions) {
            HELD.with(|h| {
                if let Some(other) = h.get() {
                    panic!(
                        "media hub: took the `{}` lock while holding `{other}` (one at a time)",
                        self.name
                    );
                }
                h.set(Some(self.name));
            });
        }
        Guard {
            guard: self.inner.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        if cfg!(debug_assertions) {
            HELD.with(|h| h.set(None));
        }
    }
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lock_at_a_time() {
        let a = Lock::new("a", 1);
        let b = Lock::new("b", 2);
        {
            let x = a.lock();
            assert_eq!(*x, 1);
        }
        let y = b.lock();
        assert_eq!(*y, 2);
        drop(y);
        let nested = std::panic::catch_unwind(|| {
            let _x = a.lock();
            let _y = b.lock();
        });
        assert!(nested.is_err(), "a second lock while holding one panics");
        // The thread-local state is clean again after the panic unwound the guard.
        let _z = b.lock();
    }
}
