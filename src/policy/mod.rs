//! Per-route policies. Each is a pure decision type, built from the config
//! when a snapshot is compiled and asked by the proxy phases; none of them
//! touches a socket, so each is unit-testable on its own.

pub mod auth;
pub mod cache;
pub mod cors;
pub mod headers;
pub mod rate_limit;
