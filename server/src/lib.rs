//! Stalecast: a backend-for-frontend that answers typed queries and mutations over
//! OpenStack-style APIs and tells browsers, over one Server-Sent-Events stream per tab,
//! which data just went stale.
//!
//! - [`updates`]: the update bus (broadcast + replay ring) and the SSE stream.
//! - [`upstream`]: the OpenStack client, the moka-backed store and the poller.
//! - [`domain`]: the procedures and the update-type → query invalidation map.
//! - [`rpc`]: tRPC's HTTP wire format over the procedure registry.
//! - [`sim`]: the embedded OpenStack-shaped simulator.
//! - [`app`]: wiring, routing and graceful shutdown.
//! - [`serve`]: the accept loop, its descriptor budget and the lean event-stream writer.
//! - [`bindings`], [`openapi`]: the contract generated from the code (TypeScript, OpenAPI);
//!   [`codegen`] writes or checks them.
//! - [`web`]: the built web app at `/`, with the single-page app's fallback.

pub mod app;
pub mod bindings;
pub mod codegen;
pub mod config;
pub mod domain;
pub mod health;
pub mod openapi;
pub mod rpc;
pub mod serve;
pub mod sim;
pub mod updates;
pub mod upstream;
pub mod web;
