//! The replication manager (`pgsluice agent`): probe, decide (pure FSM), act, record.
//!
//! | module | job |
//! |---|---|
//! | [`state`] | what one probe learns about a node; LSNs and roles |
//! | [`fsm`] | the failover state machine, pure: `(state, input) -> (state, actions)` |
//! | [`store`] | the [`store::StateStore`] trait and the local state directory |
//! | [`events`] | events and the `event_command` hook |

pub mod events;
pub mod fsm;
pub mod state;
pub mod store;
