//! Background tasks that come and go with config reloads (health checks,
//! JWKS refresh). Pingora's background services are fixed at start-up, so
//! one service runs whatever futures are handed to it later. Each task holds
//! only a `Weak` reference to what it maintains and ends when that is gone.

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use tokio::sync::mpsc;

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Hands tasks to the [`TaskService`]; cheap to clone. Tasks sent before
/// the server runs are started when it does.
#[derive(Clone)]
pub struct Spawner(mpsc::UnboundedSender<Task>);

impl Spawner {
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        // If the service is gone the process is shutting down; nothing to run.
        let _ = self.0.send(Box::pin(task));
    }
}

pub(crate) struct TaskService {
    rx: Mutex<Option<mpsc::UnboundedReceiver<Task>>>,
}

pub(crate) fn channel() -> (Spawner, TaskService) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Spawner(tx),
        TaskService {
            rx: Mutex::new(Some(rx)),
        },
    )
}

#[async_trait]
impl BackgroundService for TaskService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut rx) = self.rx.lock().expect("task rx lock").take() else {
            return;
        };
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                task = rx.recv() => match task {
                    Some(t) => { tasks.spawn(t); }
                    None => break,
                },
                // Reap finished tasks so the set does not grow across reloads.
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = shutdown.changed() => break,
            }
        }
        tasks.abort_all();
    }
}
