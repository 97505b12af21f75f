//! The pipeline model shared by every toxic: items flow through stages in virtual or real time.
//!
//! # Implementation details
//! Toxiproxy runs each toxic as a goroutine connected by channels. Here a direction of a
//! connection runs one task, and each toxic is a [`Stage`]: a small state machine that accepts
//! items and says which item is ready now, or when the next one will be. A [`Chain`] moves items
//! forward through its stages and tells the link when to wake up next. Because stages only see
//! `now` as an argument, they are unit-tested without sockets or sleeping.

use bytes::Bytes;
use tokio::time::Instant;

use crate::rng::Rng;

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseKind {
    /// A normal close (FIN).
    Fin,
    /// A reset (RST): unsent data is discarded.
    Reset,
}

/// What flows through a direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// Bytes, with the time they were read from the socket.
    Data(Bytes, Instant),
    /// The end of the stream, or a close injected by a toxic.
    Close(CloseKind),
}

impl Item {
    /// Bytes carried (0 for a close).
    pub fn len(&self) -> usize {
        match self {
            Item::Data(b, _) => b.len(),
            Item::Close(_) => 0,
        }
    }

    /// Whether this item carries no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a stage can give now.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// An item to pass on now.
    Ready(Item),
    /// Nothing now; something at this time.
    At(Instant),
    /// Nothing until more input arrives.
    Idle,
}

/// One toxic acting on one direction of one connection.
pub trait Stage: Send {
    /// Accepts an item at `now`.
    fn push(&mut self, item: Item, now: Instant, rng: &mut Rng);
    /// Gives the next item ready at `now`, or says when one will be.
    fn poll(&mut self, now: Instant, rng: &mut Rng) -> Next;
    /// Everything the stage still holds, in order. `removed`: the toxic is being removed (not
    /// just updated), and toxics that close the connection on removal (as Toxiproxy's
    /// `timeout` does) end with a close.
    fn drain(&mut self, removed: bool) -> Vec<Item>;
    /// Bytes held, for backpressure.
    fn buffered(&self) -> usize;
}

/// A FIFO of items each released at its own time, in order (used by most stages).
#[derive(Default)]
pub struct Timed {
    items: std::collections::VecDeque<(Item, Instant)>,
    bytes: usize,
}

impl Timed {
    /// Queues `item` for release at `at` (never before the items ahead of it).
    pub fn push(&mut self, item: Item, at: Instant) {
        self.bytes += item.len();
        self.items.push_back((item, at));
    }

    /// The head, if due.
    pub fn poll(&mut self, now: Instant) -> Next {
        match self.items.front() {
            None => Next::Idle,
            Some((_, at)) if *at > now => Next::At(*at),
            Some(_) => {
                let (item, _) = self.items.pop_front().expect("checked");
                self.bytes -= item.len();
                Next::Ready(item)
            }
        }
    }

    /// Everything queued, in order.
    pub fn drain(&mut self) -> Vec<Item> {
        self.bytes = 0;
        self.items.drain(..).map(|(i, _)| i).collect()
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The release time of the last queued item.
    pub fn last_at(&self) -> Option<Instant> {
        self.items.back().map(|(_, at)| *at)
    }
}

/// The `poll`, `drain` and `buffered` of a stage whose items wait in a `queue: Timed` field
/// and leave at their release time (most toxics: only their `push` differs).
macro_rules! released_from_queue {
    () => {
        fn poll(
            &mut self,
            now: tokio::time::Instant,
            _: &mut $crate::rng::Rng,
        ) -> $crate::proxy::stage::Next {
            self.queue.poll(now)
        }
        fn drain(&mut self, _removed: bool) -> Vec<$crate::proxy::stage::Item> {
            self.queue.drain()
        }
        fn buffered(&self) -> usize {
            self.queue.bytes()
        }
    };
}
pub(crate) use released_from_queue;

/// The stages of one direction, in toxic order, each tagged with its toxic's identity.
#[derive(Default)]
pub struct Chain {
    stages: Vec<(StageKey, Box<dyn Stage>)>,
}

/// Which toxic (and which version of its attributes) a stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StageKey {
    /// The toxic's id, stable for its lifetime.
    pub id: u64,
    /// Bumped when its attributes change.
    pub version: u64,
}

impl Chain {
    /// Whether data passes straight through.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Feeds an item into the first stage.
    pub fn push(&mut self, item: Item, now: Instant, rng: &mut Rng) {
        match self.stages.first_mut() {
            Some((_, stage)) => stage.push(item, now, rng),
            None => unreachable!("an empty chain passes items straight through"),
        }
    }

    /// Moves items as far as they may go at `now`; what leaves the chain goes to `out`.
    /// Returns when to look again.
    pub fn step(&mut self, now: Instant, rng: &mut Rng, out: &mut Vec<Item>) -> Option<Instant> {
        let mut wake: Option<Instant> = None;
        for i in 0..self.stages.len() {
            loop {
                match self.stages[i].1.poll(now, rng) {
                    Next::Ready(item) => match self.stages.get_mut(i + 1) {
                        Some((_, next)) => next.push(item, now, rng),
                        None => out.push(item),
                    },
                    Next::At(at) => {
                        wake = Some(wake.map_or(at, |w| w.min(at)));
                        break;
                    }
                    Next::Idle => break,
                }
            }
        }
        wake
    }

    /// Changes the chain to `wanted` (in order) without losing or reordering data: stages whose
    /// key is unchanged keep their state; a stage that goes away hands what it holds to the next
    /// stage that stays (which holds older data), or to `out` when none does. `make` builds the
    /// stage of a new key; `updated` tells whether a key that goes away was updated (same id)
    /// rather than removed.
    pub fn rebuild(
        &mut self,
        wanted: &[StageKey],
        mut make: impl FnMut(StageKey) -> Box<dyn Stage>,
        now: Instant,
        rng: &mut Rng,
        out: &mut Vec<Item>,
    ) {
        let mut old: Vec<Option<(StageKey, Box<dyn Stage>)>> = std::mem::take(&mut self.stages)
            .into_iter()
            .map(Some)
            .collect();
        // Items of departing stages, waiting for the next staying stage downstream.
        let mut carried: Vec<(usize, Vec<Item>)> = Vec::new();
        for (index, slot) in old.iter_mut().enumerate() {
            let (key, stage) = slot.as_mut().expect("present");
            if !wanted.contains(key) {
                let removed = !wanted.iter().any(|w| w.id == key.id);
                carried.push((index, stage.drain(removed)));
                *slot = None;
            }
        }
        let mut stages: Vec<(StageKey, Box<dyn Stage>)> = Vec::with_capacity(wanted.len());
        let mut old_position: Vec<Option<usize>> = Vec::with_capacity(wanted.len());
        for key in wanted {
            match old
                .iter()
                .position(|s| s.as_ref().is_some_and(|(k, _)| k == key))
            {
                Some(i) => {
                    stages.push(old[i].take().expect("found"));
                    old_position.push(Some(i));
                }
                None => {
                    stages.push((*key, make(*key)));
                    old_position.push(None);
                }
            }
        }
        for (from, items) in carried {
            let target = old_position
                .iter()
                .position(|p| p.is_some_and(|p| p > from));
            match target {
                Some(t) => {
                    for item in items {
                        stages[t].1.push(item, now, rng);
                    }
                }
                None => out.extend(items),
            }
        }
        self.stages = stages;
    }

    /// Bytes held in the chain.
    pub fn buffered(&self) -> usize {
        self.stages.iter().map(|(_, s)| s.buffered()).sum()
    }
}
