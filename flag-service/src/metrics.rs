//! flag-service's metrics: the shared RPC and pool metrics, the flag sessions in force now
//! (read from the database at scrape time, so every replica reports the same number), and
//! where CheckFlags found its answers (the mirror, or the database for late checks).

use crate::api::ACCESS;
use crate::store::Store;
use futures::FutureExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use signins_common::clock::Clock;
use signins_common::metrics::{MetricsEndpoint, PoolCollector, Refresh, RpcMetrics};
use std::sync::Arc;

/// All of flag-service's metrics.
#[derive(Debug)]
pub struct Metrics {
    pub rpc: RpcMetrics,
    pub endpoint: MetricsEndpoint,
    pub checks: CheckCounters,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnsweredFrom {
    answered_from: &'static str,
}

/// CheckFlags checks answered, by where the answer came from.
#[derive(Debug, Clone, Default)]
pub struct CheckCounters(Family<AnsweredFrom, Counter>);

impl CheckCounters {
    pub fn answered_from_mirror(&self, checks: usize) {
        self.count("mirror", checks);
    }

    pub fn answered_from_database(&self, checks: usize) {
        self.count("database", checks);
    }

    fn count(&self, answered_from: &'static str, checks: usize) {
        self.0
            .get_or_create(&AnsweredFrom { answered_from })
            .inc_by(u64::try_from(checks).unwrap_or(u64::MAX));
    }
}

impl Metrics {
    pub fn new(store: &Store, clock: Arc<dyn Clock>) -> Self {
        let mut registry = signins_common::metrics::registry();
        let rpc = RpcMetrics::register(&mut registry, ACCESS.iter().map(|(path, _)| *path));
        PoolCollector::register(&mut registry, store.pool().clone());
        let checks = CheckCounters::default();
        registry.register(
            "flag_checks",
            "CheckFlags checks answered, by source: mirror (in memory, caught up with the database) or database",
            checks.0.clone(),
        );
        let active = Gauge::<i64>::default();
        registry.register(
            "flag_sessions_active",
            "Flag sessions in force now, across tenants",
            active.clone(),
        );
        let store = store.clone();
        let refresh: Refresh = Arc::new(move || {
            let store = store.clone();
            let active = active.clone();
            let now = clock.now();
            async move {
                match store.count_active(now).await {
                    Ok(count) => {
                        active.set(i64::try_from(count).unwrap_or(i64::MAX));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "metrics: cannot count active flag sessions");
                    }
                }
            }
            .boxed()
        });
        Self {
            rpc,
            endpoint: MetricsEndpoint::new(registry, vec![refresh]),
            checks,
        }
    }
}
