//! The pooler's named statements prepared on one server connection, bounded by
//! `max_prepared_statements` with least-recently-used eviction.
//!
//! Statements are known by the id the session layer's registry gives them (the server-side
//! name is derived from it). The set describes what the server *will* hold once it has
//! processed everything sent so far: an injected Parse is `Pending` until its ParseComplete
//! comes back, and a statement whose state the pooler cannot be sure of (a Close or Parse that
//! the server may have skipped after an error) is `Doubt`: using it again costs a Close before
//! the Parse, which is correct whatever the server holds.

use std::collections::HashMap;

/// What the server holds under one statement id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Prepared and confirmed.
    Ready,
    /// Parse sent in sync segment `seg` (see [`ServerStatements::segment`]), not confirmed yet.
    Pending { seg: u64 },
    /// May or may not exist (a Close in flight, or a skipped Parse).
    Doubt,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    used: u64,
    state: State,
    /// Changes at every Parse or Close sent, so late answers do not touch a newer state.
    gen: u32,
}

/// Statements prepared by the pooler on one server connection.
#[derive(Debug, Default)]
pub struct ServerStatements {
    slots: HashMap<u64, Slot>,
    /// Slots in `Ready` or `Pending` state (what counts against the limit).
    live: usize,
    tick: u64,
    /// Sync messages sent on this connection: a server skipping after an error stops skipping at
    /// the next Sync, so a Parse sent in an earlier segment may have been skipped.
    pub segment: u64,
    /// A client ran SQL-level `PREPARE` on this connection during its transaction.
    pub sql_prepared: bool,
    /// The client ran `DISCARD ALL` (or `RESET ALL`): the session's settings are back to the
    /// server's defaults, whatever the pooler had applied.
    pub settings_reset: bool,
}

/// What [`ServerStatements::prepare`] decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Prepare {
    /// Send a Close of the statement before its Parse (the server may still hold it).
    pub close_first: bool,
    /// Statements to evict (Close) first.
    pub evict: Vec<u64>,
    /// Generation to hand back with the answer.
    pub gen: u32,
}

impl ServerStatements {
    /// Statements counting against the limit.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether nothing is prepared.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Forgets everything (the server ran `DISCARD ALL` / `DEALLOCATE ALL`, or was reset).
    pub fn clear(&mut self) {
        self.slots.clear();
        self.live = 0;
        self.sql_prepared = false;
    }

    /// Forgets everything when `sql` (a reset query the pooler ran) deallocates everything.
    pub fn after_reset(&mut self, sql: &str) {
        let upper = sql.to_ascii_uppercase();
        if upper.contains("DISCARD ALL") || upper.contains("DEALLOCATE ALL") {
            self.clear();
        }
    }

    /// Whether `id` can be bound now without a Parse; marks it used.
    #[inline]
    pub fn touch(&mut self, id: u64) -> bool {
        let seg = self.segment;
        self.tick = self.tick.wrapping_add(1);
        match self.slots.get_mut(&id) {
            Some(s) if s.state == State::Ready || s.state == (State::Pending { seg }) => {
                s.used = self.tick;
                true
            }
            _ => false,
        }
    }

    /// Records a Parse of `id` about to be sent, evicting down to `max` statements.
    pub fn prepare(&mut self, id: u64, max: usize) -> Prepare {
        let mut out = Prepare::default();
        let prior = self.slots.get(&id).copied();
        if let Some(p) = prior {
            out.close_first = true;
            if p.state != State::Doubt {
                self.live = self.live.saturating_sub(1);
            }
        }
        while self.live + 1 > max.max(1) {
            let Some(victim) = self.lru_victim(id) else {
                break;
            };
            out.evict.push(victim);
            if let Some(s) = self.slots.get_mut(&victim) {
                s.state = State::Doubt;
                s.gen = s.gen.wrapping_add(1);
            }
            self.live = self.live.saturating_sub(1);
        }
        self.tick = self.tick.wrapping_add(1);
        let gen = prior.map_or(0, |p| p.gen.wrapping_add(1));
        self.slots.insert(
            id,
            Slot {
                used: self.tick,
                state: State::Pending { seg: self.segment },
                gen,
            },
        );
        self.live += 1;
        out.gen = gen;
        out
    }

    fn lru_victim(&self, keep: u64) -> Option<u64> {
        self.slots
            .iter()
            .filter(|(id, s)| **id != keep && s.state != State::Doubt)
            .min_by_key(|(_, s)| s.used)
            .map(|(id, _)| *id)
    }

    /// Generation of the Close just sent for an evicted `id`.
    pub fn closing_gen(&self, id: u64) -> u32 {
        self.slots.get(&id).map_or(0, |s| s.gen)
    }

    /// The server confirmed the Parse of generation `gen`.
    pub fn parsed(&mut self, id: u64, gen: u32) {
        if let Some(s) = self.slots.get_mut(&id) {
            if s.gen == gen && matches!(s.state, State::Pending { .. }) {
                s.state = State::Ready;
            }
        }
    }

    /// The Parse of generation `gen` failed or was skipped: the server may not hold `id`.
    pub fn parse_lost(&mut self, id: u64, gen: u32) {
        if let Some(s) = self.slots.get_mut(&id) {
            if s.gen == gen && matches!(s.state, State::Pending { .. }) {
                s.state = State::Doubt;
                self.live = self.live.saturating_sub(1);
            }
        }
    }

    /// The server confirmed the Close of generation `gen`: `id` is gone.
    pub fn closed(&mut self, id: u64, gen: u32) {
        if self
            .slots
            .get(&id)
            .is_some_and(|s| s.gen == gen && s.state == State::Doubt)
        {
            self.slots.remove(&id);
        }
    }

    /// State of `id`, for tests and the console.
    pub fn state(&self, id: u64) -> Option<State> {
        self.slots.get(&id).map(|s| s.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_least_recent() {
        let mut s = ServerStatements::default();
        for id in 1..=3 {
            let p = s.prepare(id, 3);
            assert!(p.evict.is_empty() && !p.close_first);
            s.parsed(id, p.gen);
        }
        assert!(s.touch(1));
        let p = s.prepare(4, 3);
        assert_eq!(p.evict, vec![2]);
        assert_eq!(s.len(), 3);
        assert_eq!(s.state(2), Some(State::Doubt));
        s.closed(2, s.closing_gen(2));
        assert_eq!(s.state(2), None);
        assert!(s.touch(4));
    }

    #[test]
    fn pending_is_usable_only_in_its_segment() {
        let mut s = ServerStatements::default();
        let p = s.prepare(7, 10);
        assert!(s.touch(7));
        s.segment += 1;
        assert!(!s.touch(7));
        s.parsed(7, p.gen);
        assert!(s.touch(7));
    }

    #[test]
    fn lost_parse_means_close_first() {
        let mut s = ServerStatements::default();
        let p = s.prepare(7, 10);
        s.parse_lost(7, p.gen);
        assert_eq!(s.len(), 0);
        assert!(!s.touch(7));
        let again = s.prepare(7, 10);
        assert!(again.close_first);
        // A late answer to the first Parse does not touch the second.
        s.parsed(7, p.gen);
        assert_eq!(s.state(7), Some(State::Pending { seg: 0 }));
        s.parsed(7, again.gen);
        assert_eq!(s.state(7), Some(State::Ready));
    }

    #[test]
    fn clear_forgets() {
        let mut s = ServerStatements::default();
        s.prepare(1, 10);
        s.sql_prepared = true;
        s.clear();
        assert!(s.is_empty() && !s.sql_prepared);
    }
}
