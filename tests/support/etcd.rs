//! A real `etcd` (Debian's `etcd-server`) on loopback ports with its own
//! data directory. Tests that only read and write keys share the run's etcd
//! (`GATEHOUSE_TEST_ETCD`, started by `scripts/test.sh`) under a prefix of
//! their own; a test that stops etcd starts its own.

use super::{free_port, loopback, wait_listening};
use std::process::{Child, Command, Stdio};

pub struct Etcd {
    pub port: u16,
    peer: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Etcd {
    /// An etcd of this test's own.
    pub fn start() -> Etcd {
        let mut e = Etcd {
            port: free_port(),
            peer: free_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        e.restart();
        e
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same ports and data (after `kill`).
    pub fn restart(&mut self) {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let child = Command::new(etcd_bin())
            .args(["--name", "t", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("t={peer}")])
            .args(["--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd must be installed (scripts/deps.sh installs etcd-server)");
        self.child = Some(child);
        wait_listening(loopback(self.port));
        self.wait_ready();
    }

    /// Listening is not serving: wait until a read succeeds (leader elected).
    fn wait_ready(&self) {
        let ep = self.endpoint();
        let ready = super::eventually(std::time::Duration::from_secs(15), || {
            with_etcd(&ep, async |c| {
                let get = c.get("/ready-probe", None);
                matches!(
                    tokio::time::timeout(std::time::Duration::from_millis(500), get).await,
                    Ok(Ok(_))
                )
            })
        });
        assert!(ready, "etcd on {ep} never answered");
    }

    /// SIGKILL: etcd is gone at once, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn etcd_bin() -> &'static str {
    if std::path::Path::new("/usr/bin/etcd").exists() {
        "/usr/bin/etcd"
    } else {
        "etcd"
    }
}

/// The run's shared etcd, or (outside `scripts/test.sh`) one of this
/// test's own, kept alive by the returned guard.
pub fn shared_etcd() -> (String, Option<Etcd>) {
    match std::env::var("GATEHOUSE_TEST_ETCD") {
        Ok(ep) if !ep.is_empty() => (ep, None),
        _ => {
            let e = Etcd::start();
            (e.endpoint(), Some(e))
        }
    }
}

/// A key prefix no other test (or earlier run) uses.
pub fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("/gatehouse-test/{test}-{}-{nanos}", std::process::id())
}

/// Runs `f` against etcd with the official client (for what a test does
/// to etcd behind gatehouse's back: compaction, reading keys).
pub fn with_etcd<T>(endpoint: &str, f: impl AsyncFnOnce(&mut etcd_client::Client) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(std::time::Duration::from_secs(2));
        let mut c = etcd_client::Client::connect([endpoint], Some(opts))
            .await
            .unwrap();
        f(&mut c).await
    })
}
