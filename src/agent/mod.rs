//! The replication manager (`pgsluice agent`): probe, decide (pure FSM), act, record.
//!
//! ```text
//! probe loop ──> Round ──> fsm::step (pure) ──> actions (fence, promote, repoint, publish)
//!                                          └──> events (store, hook, log) and metrics
//! ```
//!
//! | module | job |
//! |---|---|
//! | [`state`] | what one probe learns about a node; LSNs and roles |
//! | [`fsm`] | the failover state machine, pure: `(state, input) -> (state, actions)` |
//! | [`sql`] | connecting to nodes, text queries, quoting |
//! | [`probe`] | one round trip per node per round: role, LSNs, receiver, slots, lag |
//! | [`pooler`] | the poolers' control endpoints: publish topology, pause, resume |
//! | [`local`] | pg_ctl, pg_rewind, pg_basebackup and config files on this host |
//! | [`store`] | the [`store::StateStore`] trait and the local state directory |
//! | [`events`] | events and the `event_command` hook |
//! | [`metrics`] | Prometheus metrics |
//! | [`ctx`] | what every action needs: config, store, poolers, metrics, record, publish |
//! | [`actions`] | the failover sequence, resumable step by step |

pub mod actions;
pub mod ctx;
pub mod events;
pub mod fsm;
pub mod local;
pub mod metrics;
pub mod pooler;
pub mod probe;
pub mod sql;
pub mod state;
pub mod store;

/// Why an agent operation did not happen or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A precondition failed: nothing was changed.
    #[error("refused: {0}")]
    Refused(String),
    /// It started and failed.
    #[error("failed: {0}")]
    Failed(String),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// A SQL statement failed.
    #[error(transparent)]
    Sql(#[from] sql::SqlError),
    /// A local program failed.
    #[error(transparent)]
    Local(#[from] local::LocalError),
}
