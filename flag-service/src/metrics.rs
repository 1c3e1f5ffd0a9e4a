//! flag-service's metrics: the shared RPC and pool metrics, and the flag sessions in force now
//! (read from the database at scrape time, so every replica reports the same number).

use crate::api::ACCESS;
use crate::store::Store;
use futures::FutureExt;
use prometheus_client::metrics::gauge::Gauge;
use signins_common::clock::Clock;
use signins_common::metrics::{MetricsEndpoint, PoolCollector, Refresh, RpcMetrics};
use std::sync::Arc;

/// All of flag-service's metrics.
#[derive(Debug)]
pub struct Metrics {
    pub rpc: RpcMetrics,
    pub endpoint: MetricsEndpoint,
}

impl Metrics {
    pub fn new(store: &Store, clock: Arc<dyn Clock>) -> Self {
        let mut registry = signins_common::metrics::registry();
        let rpc = RpcMetrics::register(&mut registry, ACCESS.iter().map(|(path, _)| *path));
        PoolCollector::register(&mut registry, store.pool().clone());
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
        }
    }
}
