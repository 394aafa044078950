//! Stalecast: a backend-for-frontend that answers typed queries and mutations over
//! OpenStack-style APIs and tells browsers, over one Server-Sent-Events stream per tab,
//! which data just went stale.
//!
//! # Layout
//!
//! The modules form layers; each imports only from the layers above it in this list
//! (checked by a test in `make test`, `tests/tests/integration/layering.rs`):
//!
//! 1. [`sim`]: the embedded OpenStack-shaped simulator. Imports nothing of Stalecast's.
//! 2. [`updates`]: the bus, the replay ring, the update types, the SSE frames, the one
//!    stream [`Cursor`](updates::Cursor) both delivery paths follow, the keep-alive
//!    clock. No HTTP.
//! 3. [`upstream`]: the OpenStack client, the resource model, the store of last known
//!    values (versioned), the poller. No wire format. Just above it, [`cluster`]:
//!    several nodes on one Redis (`--redis`), the shared update log, the reader that
//!    applies it to the store and the bus, the poller's lease.
//! 4. [`auth`]: sign-in through Keystone and the server-side sessions that follow it
//!    (each user's projects, roles and tokens, the room their streams listen in), the
//!    sign-in rate limits. No wire format.
//! 5. [`domain`]: the procedures as functions over a [`Ctx`](domain::Ctx) (which names
//!    the caller), answering [`domain::Error`]; the invalidation map. No axum, no tRPC.
//! 6. [`rpc`]: tRPC's wire format: the procedure registry, encoded answers (one per
//!    collection version and room), the mapping of domain errors, the session cookie,
//!    the stream endpoint.
//!    [`health`] (`/healthz`, `/readyz`), [`metrics`] (`/metrics`, on a listener of its
//!    own) and [`web`] (the dashboard) are HTTP endpoints at this level too, and
//!    [`guard`] checks every request's `Host` and `Origin`.
//! 7. [`serve`]: the accept loop with its descriptor budget, the lean event-stream
//!    writer and the fan-out.
//! 8. [`bindings`], [`openapi`], [`codegen`]: the contract generated from the registry.
//! 9. [`app`] wires everything (and [`config`] is what it is wired from); `main` runs.
//!
//! Data flows one way: the poller or a procedure stores a changed value in the store,
//! which publishes an update on the bus, naming whom each change concerns; each stream's
//! cursor decides what to write for its user's room, and the fan-out (or the response
//! body) writes it to the socket.

pub mod app;
pub mod auth;
pub mod bindings;
pub mod cluster;
pub mod codegen;
pub mod config;
pub mod domain;
pub mod guard;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod rpc;
pub mod serve;
pub mod sim;
pub mod updates;
pub mod upstream;
pub mod web;
