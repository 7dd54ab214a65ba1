//! A real DNS server (dnsmasq) on a loopback ephemeral port, answering
//! from a hosts file the test rewrites (re-read on SIGHUP) and from SRV
//! records given at start. Nothing else: no upstream servers, no
//! /etc/hosts, no config file of the machine.

use super::{free_port, loopback, wait_listening};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::net::SocketAddr;
use std::path::PathBuf;

/// One SRV record: name, target host, port, priority, weight.
pub type Srv<'a> = (&'a str, &'a str, u16, u16, u16);

pub struct DnsServer {
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    srv: Vec<String>,
    child: Option<std::process::Child>,
}

fn dnsmasq() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/dnsmasq");
    if sbin.exists() {
        sbin
    } else {
        PathBuf::from("dnsmasq")
    }
}

impl DnsServer {
    /// Serves `hosts` (`(ip, name)`) and `srv` records.
    pub fn start(hosts: &[(&str, &str)], srv: &[Srv<'_>]) -> DnsServer {
        let mut d = DnsServer {
            addr: loopback(free_port()),
            dir: tempfile::tempdir().unwrap(),
            srv: srv
                .iter()
                .map(|(n, t, port, prio, w)| format!("--srv-host={n},{t},{port},{prio},{w}"))
                .collect(),
            child: None,
        };
        d.write_hosts(hosts);
        d.restart();
        d
    }

    fn hosts_file(&self) -> PathBuf {
        self.dir.path().join("hosts")
    }

    pub fn query_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("queries.log")).unwrap_or_default()
    }

    fn write_hosts(&self, hosts: &[(&str, &str)]) {
        let text: String = hosts.iter().map(|(ip, n)| format!("{ip} {n}\n")).collect();
        std::fs::write(self.hosts_file(), text).unwrap();
    }

    /// Replaces the hosts file and makes dnsmasq re-read it.
    pub fn set_hosts(&self, hosts: &[(&str, &str)]) {
        self.write_hosts(hosts);
        if let Some(c) = &self.child {
            kill(Pid::from_raw(c.id() as i32), Signal::SIGHUP).unwrap();
        }
    }

    pub fn restart(&mut self) {
        let log = self.dir.path().join("queries.log");
        let child = std::process::Command::new(dnsmasq())
            .arg("--keep-in-foreground")
            .arg("--conf-file=/dev/null")
            .arg(format!("--port={}", self.addr.port()))
            .args(["--listen-address=127.0.0.1", "--bind-interfaces"])
            .args([
                "--no-resolv",
                "--no-hosts",
                "--no-negcache",
                "--local-ttl=0",
            ])
            .arg(format!("--addn-hosts={}", self.hosts_file().display()))
            .args(["--user=root", "--pid-file="])
            .arg("--log-queries")
            .arg(format!("--log-facility={}", log.display()))
            .args(&self.srv)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dnsmasq must be installed (scripts/deps.sh installs it)");
        self.child = Some(child);
        wait_listening(self.addr);
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
