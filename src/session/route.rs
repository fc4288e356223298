//! A session's routing glue: classifies the buffered opening frames of a transaction, asks the
//! router, and hands back the pool to check out from (the primary's or a standby's).
//!
//! Only databases with a policy other than `primary`, in transaction or statement mode, carry
//! this state (boxed, so that other sessions pay one pointer).

use super::ctx::SessionCtx;
use crate::backend::Target;
use crate::config::{DatabaseConfig, PoolMode, RoutePolicy};
use crate::pool::Pool;
use crate::router::{classify, Class, ClientRoute, Decision};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Routing state of one session.
pub struct Routed {
    db: Arc<DatabaseConfig>,
    user: String,
    primary: Arc<Pool>,
    state: ClientRoute,
    /// Standby pools this session used, by node name.
    replicas: Vec<(Arc<str>, Arc<Pool>)>,
    class: Class,
    /// The node the current transaction runs on, when a standby.
    pub on_replica: Option<Arc<str>>,
    /// The server died while the client was idle in a transaction: the error its next
    /// batch gets.
    pub broken: Option<String>,
}

/// A read found no usable standby under `replica_fallback = "error"`.
pub const NO_REPLICA: &str = "no standby can serve this read (replica_fallback = error)";

impl Routed {
    /// Routing state for a new session, if its database routes reads at all.
    pub fn new<'a>(
        db: &Arc<DatabaseConfig>,
        user: &str,
        primary: &Arc<Pool>,
        startup: impl Iterator<Item = (&'a str, &'a str)>,
        seed: usize,
    ) -> Option<Box<Self>> {
        if db.routing.policy == RoutePolicy::Primary
            || db.backend != crate::config::Backend::Cluster
            || primary.settings().mode == PoolMode::Session
        {
            return None;
        }
        Some(Box::new(Self {
            db: db.clone(),
            user: user.to_string(),
            primary: primary.clone(),
            state: ClientRoute::from_startup(startup, seed),
            replicas: Vec::new(),
            class: Class::default(),
            on_replica: None,
            broken: None,
        }))
    }

    /// Classifies the first bytes of the next transaction (before they are forwarded).
    pub fn observe(&mut self, first: &[u8]) {
        self.class = classify(first);
    }

    /// The pool for the transaction just observed; `Err` under `replica_fallback = "error"`.
    pub fn choose(&mut self, ctx: &SessionCtx) -> Result<Arc<Pool>, &'static str> {
        let view = ctx.cluster_view();
        let outstanding = |i: usize| {
            let name = &view.nodes[i].name;
            self.replicas
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, p)| p.active())
        };
        let decision = self.state.decide(
            &self.db.routing,
            &self.class,
            &view,
            Instant::now(),
            outstanding,
        );
        self.on_replica = None;
        match decision {
            Decision::Primary => Ok(self.primary.clone()),
            Decision::NoReplica => Err(NO_REPLICA),
            Decision::Replica(i) => {
                let name = view.nodes[i].name.clone();
                let pool = match self.replicas.iter().find(|(n, _)| *n == name) {
                    Some((_, p)) => p.clone(),
                    None => match ctx.pool(&self.db, &self.user, Target::Standby(&name)) {
                        Some(p) => {
                            self.replicas.push((name.clone(), p.clone()));
                            p
                        }
                        None => return Ok(self.primary.clone()),
                    },
                };
                self.on_replica = Some(name);
                Ok(pool)
            }
        }
    }

    /// A check-out from the standby failed: ban it, so that the transaction is routed again
    /// (to another standby or the primary) and the client sees no error.
    pub fn replica_failed(&mut self, ctx: &SessionCtx, why: String) {
        if let Some(name) = self.on_replica.take() {
            let ban = ctx.config().pooler.ban_time.max(Duration::from_millis(100));
            tracing::warn!(node = %name, error = %why, "standby unusable, banned");
            ctx.ban_node(&name, Instant::now() + ban, why);
        }
    }

    /// The transaction ended at a boundary now (read-your-writes fence of a write).
    pub fn ended(&mut self) {
        self.state.ended(&self.db.routing, Instant::now());
    }

    /// Query and Sync frames of the batch just observed.
    pub fn ends(&self) -> usize {
        self.class.ends
    }
}
