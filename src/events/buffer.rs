//! The event buffer: entries waiting to be sent, and what they hold, counted in entries
//! and in bytes so the pipeline can bound both.
//!
//! A request's shared part (its context, parsed and once serialized) is charged once per
//! *run* — a maximal stretch of consecutive entries of that request — because that is how
//! long the memory stays: it is freed only when the last entry pointing at it goes.
//! Entries are only ever added or removed at the ends of a queue, so runs are tracked
//! by looking at the neighbour at that end. A request split into two runs is charged
//! twice: an over-count, never an under-count.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use super::record::Entry;

/// Totals over every entry held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Totals {
    /// Estimated memory held by the entries and the request parts they share.
    pub(super) bytes: usize,
    /// Estimated size of their records on the wire.
    pub(super) wire_bytes: usize,
    /// Evaluations they account for.
    pub(super) events: u64,
}

/// Two queues, oldest first: `ready` (kept after a failed send, and summaries already
/// made) is older than anything in `events` (recorded since the last flush began).
#[derive(Debug, Default)]
pub(super) struct Buffer {
    ready: VecDeque<Entry>,
    events: VecDeque<Entry>,
    totals: Totals,
}

fn same_request(a: Option<&Entry>, b: &Entry) -> bool {
    match (a.and_then(Entry::request), b.request()) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

fn cost(entry: &Entry, starts_run: bool) -> Totals {
    let shared = if starts_run { entry.request().map_or(0, |r| r.bytes) } else { 0 };
    Totals { bytes: entry.bytes() + shared, wire_bytes: entry.wire_bytes(), events: entry.events() }
}

impl Totals {
    fn add(&mut self, c: Totals) {
        self.bytes += c.bytes;
        self.wire_bytes += c.wire_bytes;
        self.events += c.events;
    }

    fn sub(&mut self, c: Totals) {
        self.bytes = self.bytes.saturating_sub(c.bytes);
        self.wire_bytes = self.wire_bytes.saturating_sub(c.wire_bytes);
        self.events = self.events.saturating_sub(c.events);
    }
}

fn push_back(queue: &mut VecDeque<Entry>, totals: &mut Totals, entry: Entry) {
    totals.add(cost(&entry, !same_request(queue.back(), &entry)));
    queue.push_back(entry);
}

fn push_front(queue: &mut VecDeque<Entry>, totals: &mut Totals, entry: Entry) {
    totals.add(cost(&entry, !same_request(queue.front(), &entry)));
    queue.push_front(entry);
}

fn pop_front(queue: &mut VecDeque<Entry>, totals: &mut Totals) -> Option<Entry> {
    let entry = queue.pop_front()?;
    totals.sub(cost(&entry, !same_request(queue.front(), &entry)));
    Some(entry)
}

impl Buffer {
    /// Entries held.
    pub(super) fn len(&self) -> usize {
        self.ready.len() + self.events.len()
    }

    /// What the entries hold.
    pub(super) fn totals(&self) -> Totals {
        self.totals
    }

    /// When the oldest evaluation held was recorded.
    pub(super) fn oldest(&self) -> Option<SystemTime> {
        self.ready.front().or(self.events.front()).map(Entry::since)
    }

    /// Adds a newly recorded evaluation.
    pub(super) fn push_event(&mut self, entry: Entry) {
        push_back(&mut self.events, &mut self.totals, entry);
    }

    /// Adds an entry that is ready to send behind the others ready (a summary, or an
    /// event already summarised).
    pub(super) fn push_ready(&mut self, entry: Entry) {
        push_back(&mut self.ready, &mut self.totals, entry);
    }

    /// Puts an entry back in front of everything: it is the oldest.
    pub(super) fn push_front(&mut self, entry: Entry) {
        push_front(&mut self.ready, &mut self.totals, entry);
    }

    /// Takes the oldest entry.
    pub(super) fn pop_front(&mut self) -> Option<Entry> {
        match self.ready.is_empty() {
            false => pop_front(&mut self.ready, &mut self.totals),
            true => pop_front(&mut self.events, &mut self.totals),
        }
    }

    /// Takes every evaluation recorded since the last flush began (to summarise them).
    pub(super) fn take_events(&mut self) -> VecDeque<Entry> {
        let events = std::mem::take(&mut self.events);
        let mut taken = Totals::default();
        let mut previous: Option<&Entry> = None;
        for entry in &events {
            // Runs are counted from their first entry, as they were charged.
            taken.add(cost(entry, !same_request(previous, entry)));
            previous = Some(entry);
        }
        self.totals.sub(taken);
        events
    }

    /// Drops the oldest entries until at most `max_entries` and `max_bytes` are held;
    /// returns the dropped entries' evaluations and how many entries went.
    pub(super) fn trim(&mut self, max_entries: usize, max_bytes: usize) -> (u64, usize) {
        let (mut events, mut entries) = (0, 0);
        while self.len() > max_entries || (self.totals.bytes > max_bytes && self.len() > 0) {
            if let Some(entry) = self.pop_front() {
                events += entry.events();
                entries += 1;
            }
        }
        (events, entries)
    }
}
