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
//! | [`election`] | vetoes, candidate order, synchronous-mode rules (pure) |
//! | [`sql`] | connecting to nodes, text queries, quoting |
//! | [`probe`] | one round trip per node per round: role, LSNs, receiver, slots, lag |
//! | [`pooler`] | the poolers' control endpoints: publish topology, pause, resume |
//! | [`heartbeat`] | pushes one at a time; renewal of the poolers' write lease |
//! | [`fence`] | when the fence holds on every pooler: acknowledged or lease run out (pure) |
//! | [`local`] | pg_ctl, pg_rewind, pg_basebackup and config files on this host |
//! | [`store`] | the [`store::StateStore`] trait and the local state directory |
//! | [`store_etcd`] | the state in etcd, for several agents |
//! | [`lease`] | leader election among agents: etcd lease, fencing revision, membership |
//! | [`events`] | events and the `event_command` hook |
//! | [`metrics`] | Prometheus metrics |
//! | [`ctx`] | what every action needs: config, store, poolers, metrics, record, publish |
//! | [`actions`] | the failover sequence, resumable step by step |
//! | [`recover`] | finish or roll back an action left in flight |
//! | [`http`] | `/metrics`, `/status`, `/probe`, `/ops` on `agent.listen` |
//! | [`run`] | the agent loop |
//! | [`client`] | calling the agent's HTTP endpoint (command line, tests) |
//! | [`ops`] | DBA operations: request, report, dispatch |
//! | [`manual`] | manual failover |
//! | [`switchover`] | planned switchover, paused poolers |
//! | [`rejoin`] | rejoin (pg_rewind or clone) and clone |
//! | [`hotset`] | the primary's hot set (pg_buffercache), warmth and missing blocks (pure) |
//! | [`prewarm`] | loading blocks on a node with pg_prewarm, coalesced and paced |
//! | [`warmth`] | warm failover: the warming loop, catch-up on promotion, switchover wait |

pub mod actions;
pub mod client;
pub mod ctx;
pub mod election;
pub mod events;
pub mod fence;
pub mod fsm;
pub mod heartbeat;
pub mod hotset;
pub mod http;
pub mod lease;
pub mod local;
pub mod manual;
pub mod metrics;
pub mod ops;
pub mod pooler;
pub mod prewarm;
pub mod probe;
pub mod recover;
pub mod rejoin;
pub mod run;
pub mod sql;
pub mod state;
pub mod store;
pub mod store_etcd;
pub mod switchover;
pub mod warmth;

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
