//! The real `gatehouse` binary, started on a config file, and signals sent
//! to it (through `nix`: no `unsafe` in the tests either).

use super::{free_port, loopback, wait_listening};
pub use nix::sys::signal::Signal;
pub use nix::sys::signal::Signal::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub struct Binary {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// Writes `yaml` (with `{listen}`/`{admin}`/`{dir}` filled in) and starts
/// the binary with `-c`. `setup` can adjust the command (stdio, env, args).
/// `gatehouse -t -c PATH`: the config check of the real binary.
pub fn config_check(path: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    c.arg("-t").arg("-c").arg(path);
    c
}

pub fn spawn_binary(yaml: &str, setup: impl FnOnce(&mut std::process::Command)) -> Binary {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let text = yaml
        .replace("{listen}", &loopback(port).to_string())
        .replace("{admin}", &loopback(admin_port).to_string())
        .replace("{dir}", dir.path().to_str().unwrap());
    let config = dir.path().join("gatehouse.yaml");
    std::fs::write(&config, text).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.arg("-c").arg(&config);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    setup(&mut cmd);
    let child = cmd.spawn().unwrap();
    let addr = loopback(port);
    wait_listening(addr);
    if yaml.contains("{admin}") {
        wait_listening(loopback(admin_port));
    }
    Binary {
        child,
        addr,
        admin: loopback(admin_port),
        config,
        _dir: dir,
    }
}

/// `gatehouse -c CONFIG -u`: the new process of a zero-downtime upgrade.
pub fn spawn_successor(config: &std::path::Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("-c")
        .arg(config)
        .arg("-u")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

impl Binary {
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }
    pub fn signal(&self, sig: Signal) {
        send_signal(self.child.id(), sig);
    }
    /// Everything the process wrote to its piped stdout (read to EOF).
    pub fn read_stdout(&mut self) -> String {
        let mut out = String::new();
        let pipe = self.child.stdout.as_mut().expect("stdout piped");
        std::io::Read::read_to_string(pipe, &mut out).unwrap();
        out
    }
    /// Everything the process wrote to its piped stderr (read to EOF).
    pub fn read_stderr(&mut self) -> String {
        let mut err = String::new();
        let pipe = self.child.stderr.as_mut().expect("stderr piped");
        std::io::Read::read_to_string(pipe, &mut err).unwrap();
        err
    }
    /// Waits for the process to exit (bounded); `None` if it did not.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        wait_exit(&mut self.child, limit)
    }
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `child` to exit (bounded); `None` if it did not.
pub fn wait_exit(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// kill(2) on a process this test spawned.
pub fn send_signal(pid: u32, sig: Signal) {
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    let _ = nix::sys::signal::kill(pid, sig);
}
