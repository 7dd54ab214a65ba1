//! Per-route policies. Each is a pure decision type, built from the config
//! when a snapshot is compiled and asked by the proxy phases; none of them
//! touches a socket, so each is unit-testable on its own.

pub(crate) mod auth;
pub(crate) mod cache;
pub(crate) mod compress;
pub mod cors;
pub mod headers;
pub(crate) mod ip_rules;
pub(crate) mod rate_limit;
pub(crate) mod retry;
pub(crate) mod split;
