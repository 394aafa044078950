//! A cluster for the integration tests: one real `redis-server`, one simulator
//! (`stalecast sim`) that every node watches, so that the upstream requests of the whole
//! cluster are counted in one place, and nodes that are the real binary as child
//! processes (`serve --redis`).

use std::time::Duration;

use crate::child::ChildServer;
use crate::redis::RedisServer;

/// The poller's lease the nodes run with.
pub const LEASE: Duration = Duration::from_secs(2);

/// Redis and the simulator; nodes are started on them with [`Cluster::node`].
pub struct Cluster {
    pub redis: RedisServer,
    _sim: ChildServer,
    pub sim_url: String,
}

impl Cluster {
    pub async fn start() -> Cluster {
        let redis = RedisServer::start().await;
        let sim = ChildServer::start(&["sim", "--port", "0"], &[]).await;
        let sim_url = format!("http://{}", sim.addr);
        Cluster { redis, _sim: sim, sim_url }
    }

    /// A node, nobody signed in on it: polls every 500 ms while it holds the poller's
    /// lease ([`LEASE`]), pings every second; `extra` flags and `env` added.
    pub async fn node(&self, extra: &[&str], env: &[(&str, &str)]) -> ChildServer {
        let url = self.redis.url();
        let lease = format!("{}ms", LEASE.as_millis());
        let mut args = vec![
            "serve",
            "--port",
            "0",
            "--upstream",
            &self.sim_url,
            "--redis",
            &url,
            "--poll-interval",
            "500ms",
            "--lease",
            &lease,
            "--ping-interval",
            "1s",
        ];
        args.extend_from_slice(extra);
        ChildServer::start(&args, env).await.with_sim_url(&self.sim_url)
    }

    /// The port of the node holding the poller's lease (`None`: nobody).
    pub async fn leader_port(&self) -> Option<u16> {
        let token = self.redis.get("stalecast:lease").await?;
        token.rsplit(':').next().and_then(|p| p.parse().ok())
    }

    /// Waits until some node (other than `other_than`) holds the lease; answers its port.
    pub async fn wait_for_leader(&self, other_than: Option<u16>, within: Duration) -> u16 {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(port) = self.leader_port().await.filter(|p| Some(*p) != other_than) {
                return port;
            }
            assert!(tokio::time::Instant::now() < deadline, "no (new) lease holder within {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
