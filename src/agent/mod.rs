//! The replication manager (`pgsluice agent`): probe, decide (pure FSM), act, record.
//!
//! | module | job |
//! |---|---|
//! | [`state`] | what one probe learns about a node; LSNs and roles |
//! | [`fsm`] | the failover state machine, pure: `(state, input) -> (state, actions)` |
//! | [`sql`] | connecting to nodes, text queries, quoting |
//! | [`probe`] | one round trip per node per round: role, LSNs, receiver, slots, lag |
//! | [`pooler`] | the poolers' control endpoints: publish topology, pause, resume |
//! | [`store`] | the [`store::StateStore`] trait and the local state directory |
//! | [`events`] | events and the `event_command` hook |

pub mod events;
pub mod fsm;
pub mod pooler;
pub mod probe;
pub mod sql;
pub mod state;
pub mod store;
