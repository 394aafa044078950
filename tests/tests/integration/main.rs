//! The integration tests: each starts the real Stalecast (with its embedded simulator)
//! on port 0 and talks HTTP to it.

mod changes;
mod cluster;
mod cluster_nodes;
mod cluster_signin;
mod config;
mod contract;
mod hardening;
mod keep_alive;
mod layering;
mod live;
mod metrics;
mod mutations;
mod openstack;
mod page;
mod poller;
mod rpc;
mod seed;
mod serving;
mod shutdown;
mod signin;
mod stream;
mod tls;
mod web;
