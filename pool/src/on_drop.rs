//! [`OnDrop`]: the one drop guard of the crate.
//!
//! Every step that holds something across an await (a connection taken for validation, an
//! attempt counted as in flight, a waiter counted as waiting, a single-flight trial) wraps it
//! in an `OnDrop`, so a future dropped at that await undoes the step. The step's normal end
//! calls [`OnDrop::disarm`] and takes the value back.

use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};

/// Runs `undo(value)` when dropped, unless [`disarm`](OnDrop::disarm)ed first.
pub(crate) struct OnDrop<T, F: FnOnce(T)> {
    value: ManuallyDrop<T>,
    undo: ManuallyDrop<F>,
}

impl<T, F: FnOnce(T)> OnDrop<T, F> {
    /// Guards `value`: dropping the guard hands it to `undo`.
    pub(crate) fn new(value: T, undo: F) -> Self {
        Self {
            value: ManuallyDrop::new(value),
            undo: ManuallyDrop::new(undo),
        }
    }

    /// Ends the guard without running `undo`, and gives the value back.
    pub(crate) fn disarm(self) -> T {
        let mut this = ManuallyDrop::new(self);
        // Safety: `this` is never dropped, so each field is taken out exactly once here and
        // never touched again.
        unsafe {
            ManuallyDrop::drop(&mut this.undo);
            ManuallyDrop::take(&mut this.value)
        }
    }
}

/// A guard over nothing but the undo step.
pub(crate) fn on_drop<F: FnOnce()>(undo: F) -> OnDrop<(), impl FnOnce(())> {
    OnDrop::new((), move |()| undo())
}

impl<T, F: FnOnce(T)> Deref for OnDrop<T, F> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T, F: FnOnce(T)> DerefMut for OnDrop<T, F> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T, F: FnOnce(T)> Drop for OnDrop<T, F> {
    fn drop(&mut self) {
        // Safety: `drop` runs once, and `disarm` (the only other place that takes the fields)
        // forgets the guard, so `drop` never runs after it.
        let (value, undo) = unsafe {
            (
                ManuallyDrop::take(&mut self.value),
                ManuallyDrop::take(&mut self.undo),
            )
        };
        undo(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn undoes_on_drop_and_not_after_disarm() {
        let undone = Cell::new(0);
        {
            let _g = OnDrop::new(5, |v| undone.set(undone.get() + v));
        }
        assert_eq!(undone.get(), 5);
        let g = OnDrop::new(7, |v| undone.set(undone.get() + v));
        assert_eq!(*g, 7);
        assert_eq!(g.disarm(), 7);
        assert_eq!(undone.get(), 5);
        {
            let _g = on_drop(|| undone.set(0));
        }
        assert_eq!(undone.get(), 0);
    }

    #[test]
    fn a_disarmed_guard_still_drops_its_closure_captures() {
        let captured = std::rc::Rc::new(());
        let c = std::rc::Rc::clone(&captured);
        let g = OnDrop::new((), move |()| drop(c));
        g.disarm();
        assert_eq!(std::rc::Rc::strong_count(&captured), 1);
    }
}
