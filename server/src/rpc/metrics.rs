//! What the tRPC endpoint counts: calls of queries and mutations by procedure, kind and
//! HTTP status, and how long they took.
//!
//! The procedure label is a path of the registry (a `&'static str`, so it cannot be built
//! from a request), or `unknown` for a path the registry does not have: whatever a client
//! sends, the label takes at most one value per procedure plus one. The status is the
//! answer's HTTP status (`304` when the client held the answer already); a call inside a
//! batch counts with its own envelope's status.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::registry::Registry as Procedures;

/// Latency buckets (seconds) of calls: a shared answer is sent in microseconds, a
/// mutation waits for the cloud's write and read-back (tens of milliseconds to seconds).
const CALL_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// What the labels call a path the registry does not have.
const UNKNOWN: &str = "unknown";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    procedure: &'static str,
    kind: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcedureLabels {
    procedure: &'static str,
    kind: &'static str,
}

/// The endpoint's figures.
#[derive(Debug)]
pub struct RpcMetrics {
    calls: Family<CallLabels, Counter>,
    duration: Family<ProcedureLabels, Histogram>,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        RpcMetrics { calls: Family::default(), duration: Family::new_with_constructor(|| Histogram::new(CALL_BUCKETS)) }
    }
}

impl RpcMetrics {
    /// Adds these figures to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "stalecast_rpc_calls",
            "Calls of queries and mutations, by procedure, kind and HTTP status (procedure unknown: a path no \
             procedure has)",
            self.calls.clone(),
        );
        registry.register_with_unit(
            "stalecast_rpc_call_duration",
            "How long calls of queries and mutations took to answer, by procedure and kind",
            Unit::Seconds,
            self.duration.clone(),
        );
    }

    /// A call of `path` answered `status` after `took`.
    pub fn call(&self, procedures: &Procedures, path: &str, status: u16, took: Duration) {
        let (procedure, kind) = procedures.get(path).map_or((UNKNOWN, UNKNOWN), |p| (p.path, p.kind.as_str()));
        self.calls.get_or_create(&CallLabels { procedure, kind, status }).inc();
        self.duration.get_or_create(&ProcedureLabels { procedure, kind }).observe(took.as_secs_f64());
    }
}
