//! The replication manager (`pgsluice agent`): probe, decide (pure FSM), act, record.
//!
//! | module | job |
//! |---|---|
//! | [`state`] | what one probe learns about a node; LSNs and roles |
//! | [`fsm`] | the failover state machine, pure: `(state, input) -> (state, actions)` |

pub mod fsm;
pub mod state;
