//! Process signals for the real binary.
//!
//! | signal | effect |
//! |---|---|
//! | `SIGHUP` | reload the config file (as `POST /reload`) |
//! | `SIGUSR1` | reopen the access-log file (logrotate) |
//! | `SIGQUIT` | hand the listeners to a new process (`-u`), drain requests within `grace_period` and tunnels within `tunnel_grace_period`, exit 0 |
//! | `SIGTERM` | stop accepting, drain everything within `grace_period`, exit 0 |
//! | `SIGINT` | exit now |
//!
//! Pingora sleeps the whole grace period after SIGTERM/SIGQUIT even when
//! nothing is in flight. A drain watcher exits as soon as the last request
//! has finished instead (the grace period stays the upper bound).

use crate::runtime::GatewayState;
use async_trait::async_trait;
use pingora::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::broadcast;

/// Installs SIGHUP/SIGUSR1 handlers at once, so that a signal arriving
/// during start-up is not fatal (their default action ends the process).
pub(crate) fn install_early() {
    if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        rt.block_on(async {
            let _ = signal(SignalKind::hangup());
            let _ = signal(SignalKind::user_defined1());
        });
    }
}

pub(crate) struct Signals {
    state: Arc<GatewayState>,
    phases: Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
}

impl Signals {
    pub(crate) fn new(
        state: Arc<GatewayState>,
        phases: broadcast::Receiver<ExecutionPhase>,
    ) -> Signals {
        Signals {
            state,
            phases: Mutex::new(Some(phases)),
        }
    }

    /// Exits 0 once the grace period has started and nothing is in flight,
    /// or when the deadline of `drain` runs out.
    fn spawn_drain_watcher(&self, drain: Drain) {
        let Some(mut phases) = self.phases.lock().ok().and_then(|mut p| p.take()) else {
            return;
        };
        let state = self.state.clone();
        std::thread::spawn(move || {
            loop {
                match phases.blocking_recv() {
                    Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
            // Let connections between requests notice the shutdown.
            std::thread::sleep(Duration::from_millis(100));
            let why = drain_until_done(&state, drain);
            log::info!("{why}, exiting");
            state.access_log.flush();
            std::process::exit(0);
        });
    }
}

/// How a shutdown drains.
#[derive(Clone, Copy, PartialEq)]
enum Drain {
    /// SIGTERM: everything, tunnels included, within `grace_period`.
    Terminate,
    /// SIGQUIT (`-u` handoff): requests within `grace_period`, upgraded
    /// connections (WebSocket) within `tunnel_grace_period`.
    Upgrade,
}

/// Waits until nothing is in flight or the deadline passes; says which.
/// Requests in flight and connections whose next (or first) head is still
/// arriving count: a connection accepted just before the listeners closed is
/// served too.
fn drain_until_done(state: &GatewayState, drain: Drain) -> String {
    use std::sync::atomic::Ordering::Acquire;
    let server = state.snapshots.load().config.server.clone();
    let file = crate::runtime::handoff::tunnels_file(&server.upgrade_sock);
    let start = Instant::now();
    let mut last_report: Option<Instant> = None;
    let mut announced = false;
    let m = &state.metrics;
    let result = loop {
        let tunnels = m.tunnels_open.get();
        let requests = m.inflight.get() - tunnels;
        let heads = state.connections.awaiting_head.load(Acquire);
        let elapsed = start.elapsed();
        if requests <= 0 && heads == 0 && tunnels <= 0 {
            break if drain == Drain::Upgrade && elapsed >= server.grace_period {
                format!("the last tunnel closed after {} s", elapsed.as_secs())
            } else {
                "all requests drained".to_string()
            };
        }
        let deadline = match drain {
            Drain::Terminate => server.grace_period,
            Drain::Upgrade if tunnels > 0 => server.tunnel_grace_period,
            Drain::Upgrade => server.grace_period,
        };
        if elapsed >= deadline {
            break format!(
                "{} s passed: closing {requests} request(s) and {tunnels} tunnel(s) still open",
                deadline.as_secs()
            );
        }
        let report_due = last_report.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if drain == Drain::Upgrade && tunnels > 0 && report_due {
            crate::runtime::handoff::write_old_tunnels(&file, tunnels);
            if !announced && requests <= 0 {
                announced = true;
                log::info!(
                    "requests drained; holding {tunnels} tunnel(s) for up to {} s",
                    server.tunnel_grace_period.as_secs()
                );
            }
            last_report = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if drain == Drain::Upgrade {
        let _ = std::fs::remove_file(&file);
    }
    result
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
        let mut usr1 = signal(SignalKind::user_defined1()).expect("SIGUSR1 handler");
        let mut quit = signal(SignalKind::quit()).expect("SIGQUIT handler");
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    log::info!("SIGHUP: reloading the config");
                    match &self.state.fleet {
                        Some(f) => { let _ = f.reload().await; }
                        None => { let _ = self.state.reloader.reload(&self.state); }
                    }
                }
                _ = usr1.recv() => {
                    log::info!("SIGUSR1: reopening the access log");
                    self.state.access_log.reopen();
                }
                _ = quit.recv() => {
                    self.spawn_drain_watcher(Drain::Upgrade);
                    return ShutdownSignal::GracefulUpgrade;
                }
                _ = term.recv() => {
                    self.spawn_drain_watcher(Drain::Terminate);
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = int.recv() => return ShutdownSignal::FastShutdown,
            }
        }
    }
}
