//! The agent's side of the poolers' write lease, pure: after pushing a fence, when may it promote?
//!
//! A pooler under an agent sends writes only while its topology was renewed within
//! `topology_lease` (L), measured on its own monotonic clock from the moment it received the
//! renewal. The agent's pushes are serialised (one at a time, see `Ctx::publish`), so every
//! renewal a pooler may still act on was pushed before the fence push started at `f0`, and
//! the agent stopped sending it (answer or timeout, connection dropped) before `f0`.
//!
//! - A pooler that acknowledged the fence (200, or 409: it holds this epoch or a later one)
//!   sends no writes to the old primary any more: nothing to wait for.
//! - A pooler that did not answer may hold a lease renewed just before `f0`. On its clock the
//!   lease ends L after receipt; a clock running slow by a rate error ρ stretches that to
//!   L / (1 − ρ) of real time, and the agent's own clock, running fast by ρ, shows that
//!   real time as L (1 + ρ) / (1 − ρ). So the agent waits [`lease_bound`] after `f0`.
//!
//! Assumptions (docs/failover.md section 3): monotonic clocks on each host whose rates differ
//! from real time by at most [`MAX_CLOCK_RATE_ERROR`]; no synchronised wall clocks; a push the
//! agent gave up on (timeout, connection closed) is not delivered later.

use super::pooler::{Outcome, Reply};
use std::time::Duration;

/// Largest rate error assumed for any host's monotonic clock (1 %: NTP keeps clocks within
/// 0.05 %, an undisciplined quartz drifts about 0.01 %).
pub const MAX_CLOCK_RATE_ERROR: f64 = 0.01;

/// Fixed slack on top of the lease: the pooler checks its lease, then starts a transaction.
pub const LEASE_SLACK: Duration = Duration::from_millis(50);

/// How long after the fence push started every unacknowledged pooler's lease has surely run
/// out (agent's clock): L (1 + ρ) / (1 − ρ) + slack.
pub fn lease_bound(lease: Duration) -> Duration {
    let rho = MAX_CLOCK_RATE_ERROR;
    lease.mul_f64((1.0 + rho) / (1.0 - rho)) + LEASE_SLACK
}

/// Whether a pooler's answer to a fence push proves it holds the fence.
pub fn acknowledged(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Ok | Outcome::Stale)
}

/// What the agent must do before promoting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Promote {
    /// Every pooler acknowledged the fence (or the lease is off): promote now.
    Now,
    /// Wait this long more (from the moment of the decision); these poolers did not answer.
    After(Duration, Vec<String>),
}

/// When the agent may promote: `replies` to the fence push, `elapsed` since the fence push
/// started, `lease` = `agent.topology_lease` (`None` or zero: off, promote at once).
pub fn promote_after(replies: &[Reply], elapsed: Duration, lease: Option<Duration>) -> Promote {
    let Some(lease) = lease.filter(|l| !l.is_zero()) else {
        return Promote::Now;
    };
    let silent: Vec<String> = replies
        .iter()
        .filter(|r| !acknowledged(&r.outcome))
        .map(|r| r.url.clone())
        .collect();
    if silent.is_empty() {
        return Promote::Now;
    }
    Promote::After(lease_bound(lease).saturating_sub(elapsed), silent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(url: &str, outcome: Outcome) -> Reply {
        Reply {
            url: url.into(),
            outcome,
        }
    }

    #[test]
    fn every_pooler_acknowledged_promotes_at_once() {
        let r = [
            reply("http://a", Outcome::Ok),
            reply("http://b", Outcome::Stale),
        ];
        let lease = Some(Duration::from_secs(3));
        assert_eq!(promote_after(&r, Duration::ZERO, lease), Promote::Now);
        assert_eq!(promote_after(&[], Duration::ZERO, lease), Promote::Now);
    }

    #[test]
    fn a_silent_pooler_is_waited_out_past_its_lease() {
        let r = [
            reply("http://a", Outcome::Ok),
            reply("http://b", Outcome::Failed("no answer".into())),
            reply("http://c", Outcome::PauseTimedOut),
        ];
        let lease = Duration::from_secs(3);
        let Promote::After(wait, who) = promote_after(&r, Duration::ZERO, Some(lease)) else {
            panic!("must wait");
        };
        assert_eq!(who, vec!["http://b".to_string(), "http://c".to_string()]);
        // Longer than the lease by the clock-rate margin and the slack, not by much more.
        assert!(wait > lease + LEASE_SLACK, "{wait:?}");
        assert!(wait < lease.mul_f64(1.03) + LEASE_SLACK, "{wait:?}");
        // Time already spent since the fence push counts.
        let Promote::After(rest, _) = promote_after(&r, Duration::from_secs(2), Some(lease)) else {
            panic!("must wait");
        };
        assert_eq!(rest, wait - Duration::from_secs(2));
        let Promote::After(none, _) = promote_after(&r, Duration::from_secs(9), Some(lease)) else {
            panic!("must wait");
        };
        assert_eq!(none, Duration::ZERO);
    }

    #[test]
    fn without_a_lease_nothing_is_waited_for() {
        let r = [reply("http://b", Outcome::Failed("refused".into()))];
        assert_eq!(promote_after(&r, Duration::ZERO, None), Promote::Now);
        assert_eq!(
            promote_after(&r, Duration::ZERO, Some(Duration::ZERO)),
            Promote::Now
        );
    }

    #[test]
    fn the_bound_covers_clocks_running_at_different_rates() {
        let lease = Duration::from_secs(3);
        let bound = lease_bound(lease);
        // Worst case: the pooler's clock is slow by ρ, the agent's fast by ρ.
        let real_expiry = lease.as_secs_f64() / (1.0 - MAX_CLOCK_RATE_ERROR);
        let agent_reads = real_expiry * (1.0 + MAX_CLOCK_RATE_ERROR);
        assert!(
            bound.as_secs_f64() >= agent_reads,
            "{bound:?} < {agent_reads}"
        );
    }
}
