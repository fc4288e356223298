//! Where a transaction runs: the primary or which standby (policy, health, lag, bans and the
//! client's read-your-writes fence). Sans-IO: the session hands in the classified opening
//! frames, the node view discovery published, and the time; the router answers.

pub mod classify;
mod view;

pub use classify::{classify, Class, SessionChange, Target};
pub use view::{lag_time, ClusterView, NodeRole, NodeState};

use crate::config::{ReplicaChoice, RoutePolicy, Routing};
use crate::lsn::Lsn;
use std::time::Instant;

/// The router's answer for one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Primary,
    /// Index into [`ClusterView::nodes`].
    Replica(usize),
    /// A read with no usable standby under `replica_fallback = "error"`.
    NoReplica,
}

/// The read-your-writes fence of one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Fence {
    #[default]
    None,
    /// The client committed a write at or before this instant; waits for a primary LSN read
    /// by a poll that started after it.
    Pending(Instant),
    /// Standbys must have replayed this far.
    Lsn(Lsn),
}

/// The routing state of one client session.
#[derive(Debug, Clone, Default)]
pub struct ClientRoute {
    /// The session declared itself read-only (startup or SET).
    pub read_only_session: bool,
    /// `pgsluice.route` set at startup or with SET.
    pub override_target: Option<Target>,
    fence: Fence,
    /// The last transaction ran on the primary and was not read-only.
    wrote: bool,
    rr: usize,
}

impl ClientRoute {
    /// The state implied by startup parameters (`target_session_attrs`, `pgsluice.route`,
    /// `default_transaction_read_only`).
    pub fn from_startup<'a>(params: impl Iterator<Item = (&'a str, &'a str)>, seed: usize) -> Self {
        let mut s = Self {
            rr: seed,
            ..Self::default()
        };
        for (k, v) in params {
            match k {
                "target_session_attrs" => {
                    s.read_only_session |= matches!(v, "read-only" | "prefer-standby" | "standby");
                }
                "pgsluice.route" => s.override_target = classify::route_value(v),
                "default_transaction_read_only" => {
                    s.read_only_session |= matches!(v, "on" | "true" | "1" | "yes");
                }
                _ => {}
            }
        }
        s
    }

    /// The transaction just routed ended at `at` (its ReadyForQuery arrived): if it wrote,
    /// the read-your-writes fence waits for a primary LSN polled after that instant.
    pub fn ended(&mut self, cfg: &Routing, at: Instant) {
        if std::mem::take(&mut self.wrote) && cfg.read_your_writes {
            self.fence = Fence::Pending(at);
        }
    }

    /// Routes the transaction whose opening frames are classified as `class`.
    ///
    /// `outstanding(i)` is the number of transactions running on node `i` for this pool
    /// (least-outstanding choice).
    pub fn decide(
        &mut self,
        cfg: &Routing,
        class: &Class,
        view: &ClusterView,
        now: Instant,
        outstanding: impl Fn(usize) -> usize,
    ) -> Decision {
        if std::mem::take(&mut self.wrote) && cfg.read_your_writes {
            self.fence = Fence::Pending(now);
        }
        match class.session {
            Some(SessionChange::ReadOnly(on)) => self.read_only_session = on,
            Some(SessionChange::Route(t)) => self.override_target = t,
            None => {}
        }
        let wants_replica = match class.forced.or(self.override_target) {
            Some(Target::Primary) => false,
            Some(Target::Replica) => true,
            None => {
                class.begins_read_only
                    || (self.read_only_session && class.session.is_none())
                    || (cfg.policy == RoutePolicy::Auto && class.read_only)
            }
        };
        if cfg.policy == RoutePolicy::Primary || !wants_replica {
            let read = class.read_only || class.begins_read_only || self.read_only_session;
            self.wrote = !read;
            return Decision::Primary;
        }
        let min_lsn = match self.fence {
            Fence::None => Lsn::ZERO,
            Fence::Lsn(l) => l,
            Fence::Pending(t) => match view.primary_lsn {
                Some((lsn, polled)) if polled > t => {
                    self.fence = Fence::Lsn(lsn);
                    lsn
                }
                _ => return Decision::Primary,
            },
        };
        let usable = |i: &usize| view.usable_replica(*i, cfg, now);
        let candidates: Vec<usize> = (0..view.nodes.len())
            .filter(usable)
            .filter(|i| view.nodes[*i].lsn >= min_lsn)
            .collect();
        if candidates.is_empty() {
            let fenced_out = min_lsn > Lsn::ZERO && (0..view.nodes.len()).any(|i| usable(&i));
            return if fenced_out || cfg.replica_fallback {
                Decision::Primary
            } else {
                Decision::NoReplica
            };
        }
        // The fence stays: a standby that is down now may come back behind it.
        self.rr = self.rr.wrapping_add(1);
        Decision::Replica(pick(
            cfg.replica_choice,
            &candidates,
            view,
            self.rr,
            outstanding,
        ))
    }
}

/// One of `candidates` (not empty) by the configured choice.
fn pick(
    choice: ReplicaChoice,
    candidates: &[usize],
    view: &ClusterView,
    rr: usize,
    outstanding: impl Fn(usize) -> usize,
) -> usize {
    let n = candidates.len();
    match choice {
        ReplicaChoice::RoundRobin => candidates[rr % n],
        ReplicaChoice::LeastOutstanding => {
            // Ties rotate, so that an idle pooler still spreads its reads.
            let start = rr % n;
            (0..n)
                .map(|k| candidates[(start + k) % n])
                .min_by_key(|i| outstanding(*i))
                .unwrap_or(candidates[0])
        }
        ReplicaChoice::Weighted => {
            let total: usize = candidates
                .iter()
                .map(|i| view.nodes[*i].weight as usize)
                .sum();
            if total == 0 {
                return candidates[rr % n];
            }
            // A multiplicative hash spreads consecutive decisions over the weights.
            let mut at = rr.wrapping_mul(2_654_435_761) % total;
            for i in candidates {
                let w = view.nodes[*i].weight as usize;
                if at < w {
                    return *i;
                }
                at -= w;
            }
            candidates[0]
        }
    }
}

#[cfg(test)]
#[path = "router_test.rs"]
mod tests;
