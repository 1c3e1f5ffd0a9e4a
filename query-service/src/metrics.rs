//! query-service's metrics: the shared RPC and pool metrics, and the sign-in log's own —
//! sign-ins recorded (new, and retried duplicates), flagged sign-ins, and the sign-ins waiting
//! for a flag check (read from the database at scrape time).

use crate::api::ACCESS;
use crate::store::{Store, Stored};
use futures::FutureExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use signins_common::metrics::{MetricsEndpoint, PoolCollector, Refresh, RpcMetrics};
use std::sync::Arc;

/// Counters the sign-in log moves.
#[derive(Debug, Clone, Default)]
pub struct LogMetrics {
    recorded: Counter,
    duplicates: Counter,
    flagged: Counter,
}

impl LogMetrics {
    /// A batch was stored: `stored` new rows, `duplicates` already there.
    pub fn recorded(&self, stored: Stored, duplicates: u64) {
        self.recorded.inc_by(stored.rows);
        self.duplicates.inc_by(duplicates);
        self.flagged.inc_by(stored.flagged);
    }

    /// Pending sign-ins got their flag.
    pub fn resolved(&self, stored: Stored) {
        self.flagged.inc_by(stored.flagged);
    }
}

/// All of query-service's metrics.
#[derive(Debug)]
pub struct Metrics {
    pub rpc: RpcMetrics,
    pub log: LogMetrics,
    pub endpoint: MetricsEndpoint,
}

impl Metrics {
    pub fn new(store: &Store) -> Self {
        let mut registry = signins_common::metrics::registry();
        let rpc = RpcMetrics::register(&mut registry, ACCESS.iter().map(|(path, _)| *path));
        PoolCollector::register(&mut registry, store.pool().clone());
        let log = LogMetrics::default();
        registry.register(
            "sign_ins_recorded",
            "Sign-in events stored (retried duplicates not included)",
            log.recorded.clone(),
        );
        registry.register(
            "sign_ins_duplicates",
            "Sign-in events received again and not stored twice",
            log.duplicates.clone(),
        );
        registry.register(
            "sign_ins_flagged",
            "Stored sign-in events found flagged for review, at recording or by the re-check",
            log.flagged.clone(),
        );
        let pending = Gauge::<i64>::default();
        registry.register(
            "flag_checks_pending",
            "Sign-in events waiting for flag-service to say whether they were flagged",
            pending.clone(),
        );
        let store = store.clone();
        let refresh: Refresh = Arc::new(move || {
            let store = store.clone();
            let pending = pending.clone();
            async move {
                match store.count_pending_flag_checks().await {
                    Ok(count) => {
                        pending.set(i64::try_from(count).unwrap_or(i64::MAX));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "metrics: cannot count pending flag checks")
                    }
                }
            }
            .boxed()
        });
        Self {
            rpc,
            log,
            endpoint: MetricsEndpoint::new(registry, vec![refresh]),
        }
    }
}
