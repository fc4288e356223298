//! Operations a DBA asks for (manual failover, switchover, rejoin, clone): the request, the
//! report, and the dispatcher. The agent runs them between probe rounds when it is up (asked
//! over HTTP); the command line runs them itself, holding the state lock, when it is not.

use super::ctx::Ctx;
use super::store::StateStore;
use super::AgentError;
use crate::topology::Topology;
use serde::{Deserialize, Serialize};

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OpRequest {
    /// Promote a standby while the primary is gone.
    Failover {
        /// The node to promote (default: the best candidate).
        to: Option<String>,
        /// Only explain.
        dry_run: bool,
    },
    /// Planned role swap without client errors.
    Switchover {
        /// The standby to promote.
        to: String,
        /// Only explain.
        dry_run: bool,
    },
    /// Turn a node (typically an old primary) into a standby of the primary.
    Rejoin {
        /// The node.
        node: String,
        /// Only explain.
        dry_run: bool,
    },
    /// Create a new standby with pg_basebackup.
    Clone {
        /// The node to copy.
        from: String,
        /// The configured node to create.
        name: String,
        /// Only explain.
        dry_run: bool,
    },
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Everything done.
    Done,
    /// Dry run: preconditions checked, nothing changed.
    DryRun,
    /// A precondition failed: nothing changed.
    Refused,
    /// Started and failed.
    Failed,
}

impl Outcome {
    /// The documented exit code: 0 done or dry run passed, 1 refused, 2 failed.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Done | Outcome::DryRun => 0,
            Outcome::Refused => 1,
            Outcome::Failed => 2,
        }
    }
}

/// What happened, line by line: every check (`ok`/`NO`) and every step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpReport {
    /// The operation.
    pub op: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Checks and steps, in order.
    pub lines: Vec<String>,
    /// The topology after the operation.
    pub topology: Option<Topology>,
}

impl OpReport {
    /// An empty report for `op`.
    pub fn new(op: &str) -> OpReport {
        OpReport {
            op: op.to_string(),
            outcome: Outcome::Done,
            lines: Vec::new(),
            topology: None,
        }
    }

    /// Records a precondition; returns whether it holds.
    pub fn check(&mut self, ok: bool, what: impl Into<String>) -> bool {
        let mark = if ok { "ok " } else { "NO " };
        self.lines.push(format!("check {mark} {}", what.into()));
        ok
    }

    /// Records a step (or, in a dry run, a step that would be done).
    pub fn step(&mut self, what: impl Into<String>) {
        self.lines.push(format!("step     {}", what.into()));
    }

    /// Ends as refused with a reason.
    pub fn refuse(mut self, why: impl Into<String>) -> OpReport {
        self.lines.push(format!("refused: {}", why.into()));
        self.outcome = Outcome::Refused;
        self
    }

    /// Ends as failed with a reason.
    pub fn fail(mut self, why: impl std::fmt::Display) -> OpReport {
        self.lines.push(format!("failed: {why}"));
        self.outcome = Outcome::Failed;
        self
    }

    /// Whether to go on: false (outcome set) when a check failed or for a dry run.
    pub fn gate(&mut self, passed: bool, dry_run: bool) -> bool {
        if !passed {
            self.lines
                .push("refused: a precondition failed (see above)".into());
            self.outcome = Outcome::Refused;
            return false;
        }
        if dry_run {
            self.outcome = Outcome::DryRun;
            return false;
        }
        true
    }

    /// Folds an error into the report.
    pub fn error(self, e: AgentError) -> OpReport {
        match e {
            AgentError::Refused(why) => self.refuse(why),
            other => self.fail(other),
        }
    }
}

/// Runs one operation.
pub async fn execute<S: StateStore>(ctx: &Ctx<S>, req: &OpRequest) -> OpReport {
    match req {
        OpRequest::Failover { to, dry_run } => {
            super::manual::failover(ctx, to.as_deref(), *dry_run).await
        }
        OpRequest::Switchover { to, dry_run } => super::switchover::run(ctx, to, *dry_run).await,
        OpRequest::Rejoin { node, dry_run } => super::rejoin::rejoin(ctx, node, *dry_run).await,
        OpRequest::Clone {
            from,
            name,
            dry_run,
        } => super::rejoin::clone(ctx, from, name, *dry_run).await,
    }
}
