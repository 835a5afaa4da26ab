//! chatrelay's benchmark harness (issue 6). `chatrelay-bench run` starts a
//! release `chatrelay serve` on a temporary database, drives it with wrk and
//! with the harness's own gRPC, WebSocket-extension and webhook drivers,
//! measures a bare axum handler as the physical reference in the same run, and
//! prints one Markdown table of the figures against their targets.

pub mod conversation;
pub mod database;
pub mod extension;
pub mod idle_sessions;
pub mod latency;
pub mod lifecycle;
pub mod live;
pub mod observe;
pub mod reference;
pub mod report;
pub mod rest;
pub mod server;
pub mod submit_grpc;
pub mod suite;
pub mod webhooks;
pub mod wrk;
