//! The access log: one line per request, JSON (default) or combined.
//!
//! Proxy threads never write: they hand a record to a bounded channel and
//! move on. A writer thread formats and writes the lines, flushing whenever
//! the channel runs dry. When the writer falls behind the channel fills and
//! further records are dropped and counted
//! (`gatehouse_access_log_dropped_total`) rather than stalling requests.
//! The writer starts on first use, so it is created after Pingora
//! daemonises. `reopen` (on SIGUSR1) reopens the file for logrotate.

use super::json_line::{key, Object};
use crate::config::{AccessLogFormat, AccessLogTarget, LoggingConfig};
use crate::netfmt;
use crate::observability::time;
use prometheus::IntCounter;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// What one request contributes to the access log.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    pub ts: SystemTime,
    pub request_id: String,
    pub client_ip: Option<IpAddr>,
    pub method: http::Method,
    /// Normalised, without the query.
    pub path: String,
    pub status: u16,
    pub route: Option<Arc<str>>,
    pub upstream: Option<Arc<str>>,
    pub target: Option<SocketAddr>,
    pub duration_ms: f64,
    pub upstream_ms: Option<f64>,
    pub bytes_sent: u64,
    pub cache: Option<&'static str>,
    pub user: Option<String>,
    /// Hex trace id of a traced request (JSON format only).
    pub trace_id: Option<String>,
    /// Only filled for the combined format.
    pub protocol: &'static str,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
}

/// Escapes a value for a quoted field of the combined format.
fn clf_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

impl AccessRecord {
    pub fn format(&self, format: AccessLogFormat) -> String {
        let mut out = String::new();
        self.format_into(format, &mut out);
        out
    }

    /// Appends the line (without its newline) to `out`, the writer's
    /// reused buffer.
    pub fn format_into(&self, format: AccessLogFormat, out: &mut String) {
        match format {
            AccessLogFormat::Json => self.json(out),
            AccessLogFormat::Combined => {
                use std::fmt::Write;
                let _ = write!(
                    out,
                    "{} - {} [{}] \"{} {} {}\" {} {} \"{}\" \"{}\"",
                    self.client_ip.map_or("-".to_string(), netfmt::ip_text),
                    self.user.as_deref().map_or("-".to_string(), clf_escape),
                    time::clf(self.ts),
                    clf_escape(self.method.as_str()),
                    clf_escape(&self.path),
                    self.protocol,
                    self.status,
                    self.bytes_sent,
                    self.referer.as_deref().map_or("-".to_string(), clf_escape),
                    self.user_agent
                        .as_deref()
                        .map_or("-".to_string(), clf_escape),
                );
            }
        }
    }

    /// The spec's JSON fields, in its order; `trace_id` only when traced.
    fn json(&self, out: &mut String) {
        let mut o = Object::begin(out);
        o.plain_with(key!("ts"), |s| time::push_rfc3339_millis(s, self.ts));
        o.str(key!("request_id"), Some(&self.request_id));
        match self.client_ip {
            Some(ip) => o.plain_with(key!("client_ip"), |s| netfmt::push_ip(s, ip)),
            None => o.null(key!("client_ip")),
        }
        o.str(key!("method"), Some(self.method.as_str()));
        o.str(key!("path"), Some(&self.path));
        o.u64(key!("status"), self.status.into());
        o.str(key!("route"), self.route.as_deref());
        o.str(key!("upstream"), self.upstream.as_deref());
        match self.target {
            Some(t) => o.plain_with(key!("target"), |s| netfmt::push_socket_addr(s, t)),
            None => o.null(key!("target")),
        }
        o.millis(key!("duration_ms"), Some(self.duration_ms));
        o.millis(key!("upstream_ms"), self.upstream_ms);
        o.u64(key!("bytes_sent"), self.bytes_sent);
        o.str(key!("cache"), self.cache);
        o.str(key!("user"), self.user.as_deref());
        if let Some(id) = &self.trace_id {
            o.str(key!("trace_id"), Some(id));
        }
        o.end();
    }
}

enum Msg {
    Line(Box<AccessRecord>),
    Reconfigure(AccessLogTarget, AccessLogFormat),
    Reopen,
    Flush(SyncSender<()>),
}

pub struct AccessLog {
    sender: OnceLock<SyncSender<Msg>>,
    settings: Mutex<(AccessLogTarget, AccessLogFormat)>,
    capacity: usize,
    enabled: AtomicBool,
    combined: AtomicBool,
    dropped: IntCounter,
}

enum Sink {
    /// Buffered too: stdout is line-buffered, one write per line otherwise.
    Stdout(BufWriter<std::io::Stdout>),
    File(BufWriter<File>),
    None,
}

fn open_sink(target: &AccessLogTarget) -> Sink {
    match target {
        AccessLogTarget::Stdout => {
            Sink::Stdout(BufWriter::with_capacity(64 * 1024, std::io::stdout()))
        }
        AccessLogTarget::Off => Sink::None,
        AccessLogTarget::File(path) => {
            match OpenOptions::new().create(true).append(true).open(path) {
                Ok(f) => Sink::File(BufWriter::with_capacity(64 * 1024, f)),
                Err(e) => {
                    log::error!("cannot open access log {path}: {e}; access-log lines are discarded until it can be opened");
                    Sink::None
                }
            }
        }
    }
}

impl Sink {
    fn write_line(&mut self, line: &str) {
        let r = match self {
            Sink::Stdout(f) => f
                .write_all(line.as_bytes())
                .and_then(|_| f.write_all(b"\n")),
            Sink::File(f) => f
                .write_all(line.as_bytes())
                .and_then(|_| f.write_all(b"\n")),
            Sink::None => Ok(()),
        };
        if let Err(e) = r {
            log::warn!("access log write failed: {e}");
        }
    }

    fn flush(&mut self) {
        let _ = match self {
            Sink::Stdout(s) => s.flush(),
            Sink::File(f) => f.flush(),
            Sink::None => Ok(()),
        };
    }
}

/// The writer polls instead of blocking in `recv`: a receiver that waits on
/// the channel has to be woken (a futex call and a context switch) for
/// nearly every line under load, while one that sleeps between drains is
/// never woken and writes lines in batches. It naps 1 ms after a busy
/// drain, backing off to 50 ms when idle, so a line reaches the file within
/// 50 ms.
fn writer(rx: Receiver<Msg>, mut target: AccessLogTarget, mut format: AccessLogFormat) {
    const BUSY_NAP: Duration = Duration::from_millis(1);
    const IDLE_NAP: Duration = Duration::from_millis(50);
    let mut sink = open_sink(&target);
    let mut nap = BUSY_NAP;
    let mut line = String::with_capacity(512);
    loop {
        let mut msg = match rx.try_recv() {
            Ok(m) => m,
            Err(TryRecvError::Empty) => {
                std::thread::sleep(nap);
                nap = (nap * 2).min(IDLE_NAP);
                continue;
            }
            Err(TryRecvError::Disconnected) => break,
        };
        nap = BUSY_NAP;
        loop {
            match msg {
                Msg::Line(rec) => {
                    line.clear();
                    rec.format_into(format, &mut line);
                    sink.write_line(&line);
                }
                Msg::Reconfigure(t, f) => {
                    sink.flush();
                    if t != target {
                        sink = open_sink(&t);
                        target = t;
                    }
                    format = f;
                }
                Msg::Reopen => {
                    sink.flush();
                    sink = open_sink(&target);
                }
                Msg::Flush(done) => {
                    sink.flush();
                    let _ = done.send(());
                }
            }
            match rx.try_recv() {
                Ok(next) => msg = next,
                Err(_) => break,
            }
        }
        sink.flush();
    }
    sink.flush();
}

impl AccessLog {
    pub fn new(cfg: &LoggingConfig, dropped: IntCounter) -> AccessLog {
        AccessLog {
            sender: OnceLock::new(),
            settings: Mutex::new((cfg.access_log.clone(), cfg.format)),
            capacity: cfg.buffer_lines,
            enabled: AtomicBool::new(cfg.access_log != AccessLogTarget::Off),
            combined: AtomicBool::new(cfg.format == AccessLogFormat::Combined),
            dropped,
        }
    }

    /// False when `access_log: off`: callers skip building records.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// True when the combined format needs referer and user agent.
    pub fn wants_combined_fields(&self) -> bool {
        self.combined.load(Ordering::Relaxed)
    }

    fn sender(&self) -> &SyncSender<Msg> {
        self.sender.get_or_init(|| {
            let (tx, rx) = sync_channel(self.capacity);
            let (target, format) = self.settings.lock().expect("settings lock").clone();
            let spawned = std::thread::Builder::new()
                .name("gatehouse-access-log".into())
                .spawn(move || writer(rx, target, format));
            if let Err(e) = spawned {
                log::error!("cannot start the access-log writer: {e}");
            }
            tx
        })
    }

    /// Queues a record; never blocks.
    pub fn log(&self, rec: AccessRecord) {
        if !self.enabled() {
            return;
        }
        match self.sender().try_send(Msg::Line(Box::new(rec))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    /// Applies a reloaded `logging` section.
    pub fn reconfigure(&self, cfg: &LoggingConfig) {
        *self.settings.lock().expect("settings lock") = (cfg.access_log.clone(), cfg.format);
        self.enabled
            .store(cfg.access_log != AccessLogTarget::Off, Ordering::Relaxed);
        self.combined
            .store(cfg.format == AccessLogFormat::Combined, Ordering::Relaxed);
        if let Some(tx) = self.sender.get() {
            let _ = tx.send(Msg::Reconfigure(cfg.access_log.clone(), cfg.format));
        }
    }

    /// Reopens the log file (after logrotate moved it).
    pub fn reopen(&self) {
        if let Some(tx) = self.sender.get() {
            let _ = tx.send(Msg::Reopen);
        }
    }

    /// Waits (at most 5 s) until every queued line is written.
    pub fn flush(&self) {
        if let Some(tx) = self.sender.get() {
            let (done_tx, done_rx) = sync_channel(1);
            if tx.send(Msg::Flush(done_tx)).is_ok() {
                let _ = done_rx.recv_timeout(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> AccessRecord {
        AccessRecord {
            ts: SystemTime::UNIX_EPOCH,
            request_id: "rid".into(),
            client_ip: Some("10.0.0.1".parse().unwrap()),
            method: http::Method::GET,
            path: "/a\"b".into(),
            status: 200,
            route: Some("users".into()),
            upstream: Some("users".into()),
            target: Some("127.0.0.1:5001".parse().unwrap()),
            duration_ms: 1.23456,
            upstream_ms: Some(1.0),
            bytes_sent: 42,
            cache: None,
            user: None,
            trace_id: None,
            protocol: "HTTP/1.1",
            referer: None,
            user_agent: Some("curl/8 \"x\"".into()),
        }
    }

    #[test]
    fn json_has_exactly_the_spec_keys() {
        let v: serde_json::Value =
            serde_json::from_str(&rec().format(AccessLogFormat::Json)).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        let mut want = vec![
            "ts",
            "request_id",
            "client_ip",
            "method",
            "path",
            "status",
            "route",
            "upstream",
            "target",
            "duration_ms",
            "upstream_ms",
            "bytes_sent",
            "cache",
            "user",
        ];
        want.sort();
        assert_eq!(keys, want);
        assert_eq!(v["duration_ms"], 1.235);
        assert_eq!(v["path"], "/a\"b");
    }

    #[test]
    fn combined_escapes_quotes() {
        let line = rec().format(AccessLogFormat::Combined);
        assert_eq!(
            line,
            "10.0.0.1 - - [01/Jan/1970:00:00:00 +0000] \"GET /a\\\"b HTTP/1.1\" 200 42 \"-\" \"curl/8 \\\"x\\\"\""
        );
    }
}
