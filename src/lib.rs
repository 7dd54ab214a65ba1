//! gatehouse: a config-driven API gateway on Cloudflare's Pingora.
//!
//! The request path reads like the module list: `config` (file -> validated
//! model), `runtime` (the swappable compiled snapshot), `router` (path
//! normalisation and matching), `proxy` (the ProxyHttp phases), `upstream`
//! (pools, selection, health checks), `admin` (the admin listener), `app`
//! (server assembly) and `cli`.

pub mod admin;
pub mod app;
pub mod cache;
pub mod cli;
pub mod config;
pub mod demo;
pub mod http;
pub mod keys;
pub mod logging;
pub mod netfmt;
pub mod observability;
pub mod policy;
pub mod problem;
pub mod proxy;
pub mod router;
pub mod runtime;
pub mod signals;
pub mod tasks;
pub mod tls;
pub mod upstream;
