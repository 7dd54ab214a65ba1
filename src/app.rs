//! Assembles a Pingora `Server` from a validated config: the proxy service on
//! the public listeners, the health-check service and the admin listener.
//! All state hangs off one [`GatewayState`]; nothing is global, so several
//! gateways can run in one process (the tests do).

use crate::admin::AdminApp;
use crate::config::Config;
use crate::proxy::accept::Accept;
use crate::proxy::listen::Listen;
use crate::proxy::Gateway;
use crate::runtime::{BuildError, GatewayState};
use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::sync::Arc;
use tokio::sync::mpsc;

/// How the process was asked to start.
#[derive(Debug, Default, Clone)]
pub struct StartOptions {
    pub daemon: bool,
    pub upgrade: bool,
    /// The file the config came from; enables reload.
    pub config_path: Option<std::path::PathBuf>,
    /// Run with the process signals (the binary): SIGQUIT may hold tunnels.
    pub signals: bool,
    /// Cluster mode: the document from etcd (or the snapshot file) that
    /// `config` was merged with; `None` before the first push.
    pub cluster_doc: Option<crate::runtime::reload::ClusterDoc>,
}

pub struct App {
    pub server: Server,
    pub state: Arc<GatewayState>,
}

fn server_conf(config: &Config, opts: &StartOptions) -> ServerConf {
    let s = &config.server;
    let max_retries = config
        .upstreams
        .values()
        .map(|u| u.retries + 1)
        .max()
        .unwrap_or(1);
    ServerConf {
        threads: s.threads,
        work_stealing: s.work_stealing,
        daemon: opts.daemon,
        pid_file: s.pid_file.clone(),
        upgrade_sock: s.upgrade_sock.clone(),
        // With the process signals, `signals` ends the drain itself (at
        // `grace_period` for SIGTERM, up to `tunnel_grace_period` for the
        // tunnels of a SIGQUIT handoff); Pingora's own bound is the longer.
        grace_period_seconds: Some(if opts.signals {
            s.grace_period.max(s.tunnel_grace_period).as_secs() + 1
        } else {
            s.grace_period.as_secs()
        }),
        graceful_shutdown_timeout_seconds: Some(1),
        max_retries: max_retries.max(16),
        ca_file: s.upstream_ca.clone(),
        ..ServerConf::default()
    }
}

/// Builds (but does not run) the server for `config`. Fails only if the
/// config cannot be compiled (keys that no longer parse, say).
pub fn build(config: Config, opts: StartOptions) -> Result<App, BuildError> {
    let conf = server_conf(&config, &opts);
    let listen = config.server.listen.clone();
    let h2c = config.server.h2c;
    let upstream_ca = config.server.upstream_ca.clone();
    let admin = config.admin.clone();
    let (spawner, task_service) = crate::tasks::channel();
    let fleet = config
        .cluster
        .clone()
        .map(crate::runtime::fleet::Fleet::new);
    let (fleet, commands) = match fleet {
        Some((f, rx)) => (Some((f, opts.cluster_doc.clone())), Some(rx)),
        None => (None, None),
    };
    let state = Arc::new(GatewayState::new(
        config,
        spawner,
        opts.config_path.clone(),
        fleet,
    )?);
    if let Some(rx) = commands {
        crate::cluster::agent::spawn(&state, rx);
    }
    // Everything fallible (certificates included) is done before the server
    // exists, so a bad config never takes over the old process's sockets.

    let opt = Opt {
        upgrade: opts.upgrade,
        daemon: opts.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();

    let gateway = Gateway {
        state: state.clone(),
        mirrors: Arc::new(crate::proxy::mirror::Mirrors::new(upstream_ca)),
    };
    let mut http = pingora::proxy::http_proxy(&server.configuration, gateway);
    let mut options = HttpServerOptions::default();
    options.h2c = h2c;
    http.server_options = Some(options);
    let accept = Accept {
        proxy: Arc::new(http),
        state: state.clone(),
    };
    // The TLS listener is plain TCP too: `Accept` runs the handshake
    // itself, inside the connection's `header_timeout`.
    let mut addrs: Vec<String> = listen.iter().map(|a| a.to_string()).collect();
    addrs.extend(state.tls.as_ref().map(|t| t.addr.to_string()));
    server.add_service(Listen {
        addrs,
        app: Arc::new(accept),
    });
    server.add_service(background_service("tasks", task_service));
    if let Some(admin) = admin {
        let mut svc = Service::new(
            "gatehouse admin".to_string(),
            AdminApp {
                state: state.clone(),
            },
        );
        svc.add_tcp(&admin.listen.to_string());
        svc.threads = Some(1);
        server.add_service(svc);
    }
    Ok(App { server, state })
}

/// A shutdown trigger for running a gateway inside another program (tests).
pub struct ChannelShutdown(tokio::sync::Mutex<mpsc::UnboundedReceiver<ShutdownSignal>>);

impl ChannelShutdown {
    pub fn new() -> (mpsc::UnboundedSender<ShutdownSignal>, ChannelShutdown) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, ChannelShutdown(tokio::sync::Mutex::new(rx)))
    }
}

#[async_trait]
impl ShutdownSignalWatch for ChannelShutdown {
    async fn recv(&self) -> ShutdownSignal {
        self.0
            .lock()
            .await
            .recv()
            .await
            .unwrap_or(ShutdownSignal::FastShutdown)
    }
}

impl App {
    /// Runs until `signal` asks to stop.
    /// Lines already queued for the access log are written before it returns
    /// (Pingora's fast shutdown drops the runtimes without waiting).
    pub fn run(self, signal: Box<dyn ShutdownSignalWatch>) {
        let state = self.state.clone();
        self.server.run(RunArgs {
            shutdown_signal: signal,
        });
        state.access_log.flush();
    }

    /// Runs with the process signals of the real binary (see `signals`).
    pub fn run_with_signals(self) {
        let phases = self.server.watch_execution_phase();
        let signals = crate::signals::Signals::new(self.state.clone(), phases);
        self.run(Box::new(signals));
    }
}
