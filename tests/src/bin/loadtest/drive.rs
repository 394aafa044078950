//! The mutation driver: real tRPC mutations through Stalecast at a fixed rate, each of
//! which changes the (simulated) cloud and so publishes one update. With several nodes
//! they go round robin over the nodes that are up, each with that node's session.
//!
//! A `503` says that nothing was changed and to try again shortly (a node that cannot
//! reach Redis refuses changes before it writes anything upstream): the driver does, as a
//! browser's retry would, on the next node, and counts it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::Mutation;
use crate::nodes::Nodes;
use crate::stats;

/// What the driver did.
#[derive(Debug)]
pub struct Driven {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// Tries repeated after a `503` (nothing changed), over all mutations.
    pub retried: u64,
    /// Send → answer, retries included.
    pub latency: Histogram<u64>,
    pub first_error: Option<String>,
}

/// How often a mutation refused with `503` is sent again, and after how long.
const RETRIES: u64 = 3;
const RETRY_AFTER: Duration = Duration::from_millis(250);

/// Why a mutation failed.
enum Failure {
    /// `503`: refused before anything was changed; it may be sent again.
    Refused(String),
    Other(String),
}

/// Sent so far, for the progress bar.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
}

/// Sends `rate` mutations per second for `duration`, then waits for the last answers.
pub async fn drive(
    http: &reqwest::Client,
    nodes: Arc<Nodes>,
    kind: Mutation,
    rate: f64,
    duration: Duration,
    counters: Arc<Counters>,
) -> anyhow::Result<Driven> {
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let mut servers = match kind {
        Mutation::Servers => {
            let (base, cookie) = nodes.any().context("no node is up")?;
            toggleable_servers(http, &base, &cookie).await?
        }
        Mutation::Volumes => Vec::new(),
    };
    let mut created: VecDeque<String> = VecDeque::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight: JoinSet<(Duration, Result<Value, String>, u64)> = JoinSet::new();
    let mut driven = Driven { sent: 0, ok: 0, failed: 0, retried: 0, latency: stats::histogram(), first_error: None };
    let record = |driven: &mut Driven, took: Duration, outcome: Result<Value, String>, retries: u64| {
        stats::record(&mut driven.latency, took.as_micros() as u64);
        driven.retried += retries;
        match outcome {
            Ok(_) => driven.ok += 1,
            Err(e) => {
                driven.failed += 1;
                counters.failed.fetch_add(1, Ordering::Relaxed);
                driven.first_error.get_or_insert(e);
            }
        }
    };
    for tick in 0..total {
        ticker.tick().await;
        let (path, input) = match kind {
            Mutation::Servers => {
                let i = (tick as usize) % servers.len();
                let (id, active) = &mut servers[i];
                let path = if *active { "compute.servers.stop" } else { "compute.servers.start" };
                *active = !*active;
                (path, json!({ "id": id }))
            }
            Mutation::Volumes => {
                // Every other tick deletes the oldest volume this run created.
                match (tick % 2, created.pop_front()) {
                    (1, Some(id)) => ("storage.volumes.delete", json!({ "id": id })),
                    (_, other) => {
                        if let Some(id) = other {
                            created.push_front(id);
                        }
                        let name = format!("loadtest-{tick}");
                        ("storage.volumes.create", json!({"projectId": "prj-admin", "name": name, "sizeGb": 1}))
                    }
                }
            }
        };
        driven.sent += 1;
        counters.sent.fetch_add(1, Ordering::Relaxed);
        let (http, nodes) = (http.clone(), nodes.clone());
        in_flight.spawn(async move {
            let started = Instant::now();
            let mut retries = 0;
            let outcome = loop {
                let Some((_, base, cookie)) = nodes.pick() else {
                    break Err(String::from("no node was up to send the mutation to"));
                };
                match mutate(&http, &format!("{base}/trpc/{path}"), &cookie, &input).await {
                    Ok(value) => break Ok(value),
                    Err(Failure::Refused(_)) if retries < RETRIES => {
                        retries += 1;
                        tokio::time::sleep(RETRY_AFTER).await;
                    }
                    Err(Failure::Refused(e) | Failure::Other(e)) => break Err(e),
                }
            };
            (started.elapsed(), outcome, retries)
        });
        // Volume creations must finish before their deletion is scheduled.
        if kind == Mutation::Volumes {
            while let Some(Ok((took, outcome, retries))) = in_flight.try_join_next() {
                if let Ok(v) = &outcome
                    && let Some(id) = v["id"].as_str()
                    && v.get("status").is_some()
                {
                    created.push_back(id.to_owned());
                }
                record(&mut driven, took, outcome, retries);
            }
        }
    }
    while let Some(joined) = in_flight.join_next().await {
        if let Ok((took, outcome, retries)) = joined {
            record(&mut driven, took, outcome, retries);
        }
    }
    Ok(driven)
}

/// `POST /trpc/<path>`: the answer's `result.data`, or why it failed.
async fn mutate(http: &reqwest::Client, url: &str, cookie: &str, input: &Value) -> Result<Value, Failure> {
    let response = http
        .post(url)
        .header(reqwest::header::COOKIE, cookie)
        .json(input)
        .send()
        .await
        .map_err(|e| Failure::Other(format!("{url}: {e}")))?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| Failure::Other(format!("{url}: {e}")))?;
    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        return Err(Failure::Refused(format!("{url}: {status} {}", body["error"]["message"])));
    }
    if !status.is_success() {
        return Err(Failure::Other(format!("{url}: {status} {}", body["error"]["message"])));
    }
    Ok(body["result"]["data"].clone())
}

/// The servers that are ACTIVE (→ stop) or SHUTOFF (→ start), as (id, active).
async fn toggleable_servers(http: &reqwest::Client, base: &str, cookie: &str) -> anyhow::Result<Vec<(String, bool)>> {
    let body: Value = http
        .get(format!("{base}/trpc/compute.servers.list"))
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await
        .context("listing servers")?
        .json()
        .await
        .context("listing servers")?;
    let servers: Vec<(String, bool)> = body["result"]["data"]
        .as_array()
        .context("compute.servers.list answered no array")?
        .iter()
        .filter_map(|s| {
            let id = s["id"].as_str()?.to_owned();
            match s["status"].as_str()? {
                "ACTIVE" => Some((id, true)),
                "SHUTOFF" => Some((id, false)),
                _ => None,
            }
        })
        .collect();
    anyhow::ensure!(!servers.is_empty(), "no server can be started or stopped");
    Ok(servers)
}
