//! Process signals for the real binary.
//!
//! | signal | effect |
//! |---|---|
//! | `SIGHUP` | reload the config file (as `POST /reload`) |
//! | `SIGUSR1` | reopen the access-log file (logrotate) |
//! | `SIGQUIT` | hand the listeners to a new process (`-u`), drain, exit 0 |
//! | `SIGTERM` | stop accepting, drain, exit 0 |
//! | `SIGINT` | exit now |
//!
//! Pingora sleeps the whole grace period after SIGTERM/SIGQUIT even when
//! nothing is in flight. A drain watcher exits as soon as the last request
//! has finished instead (the grace period stays the upper bound).

use crate::runtime::GatewayState;
use async_trait::async_trait;
use pingora::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch};
use std::sync::{Arc, Mutex};
use std::time::Duration;
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

    /// Exits 0 once the grace period has started and nothing is in flight.
    fn spawn_drain_watcher(&self) {
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
            // Requests in flight, and connections whose next (or first) head
            // is still arriving: a connection accepted just before the
            // listeners closed is served too. Pingora's grace period bounds it.
            let busy = |s: &GatewayState| {
                s.metrics.inflight.get() > 0
                    || s.connections
                        .awaiting_head
                        .load(std::sync::atomic::Ordering::Acquire)
                        > 0
            };
            while busy(&state) {
                std::thread::sleep(Duration::from_millis(20));
            }
            log::info!("all requests drained, exiting");
            state.access_log.flush();
            std::process::exit(0);
        });
    }
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
                    self.spawn_drain_watcher();
                    return ShutdownSignal::GracefulUpgrade;
                }
                _ = term.recv() => {
                    self.spawn_drain_watcher();
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = int.recv() => return ShutdownSignal::FastShutdown,
            }
        }
    }
}
