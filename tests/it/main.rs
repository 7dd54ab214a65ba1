//! The one integration-test binary: every test module links the library,
//! Pingora and the harness (`tests/support`) once.

// Harness helpers are `pub` for the test modules; nothing outside uses them.
#![allow(unreachable_pub)]
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

mod access;
mod auth;
mod auth_basic;
mod auth_forward;
mod auth_jwks;
mod cache;
mod cli;
mod cluster;
mod compress;
mod config_auth;
mod config_limits;
mod config_traffic;
mod console;
mod dashboard;
mod dns;
mod edge_limits;
mod explain;
mod handoff_reload;
mod hardening;
mod layering;
mod mtls;
mod normalize_props;
mod observability;
mod observability_bin;
mod operations;
mod rate_limit;
mod rate_limit_redis;
mod rate_limit_sync;
mod reload;
mod resilience;
mod routing;
mod split_mirror;
mod tls;
mod tracing;
mod transforms_cors;
mod upstreams;
