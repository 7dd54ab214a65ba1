//! OpenTelemetry traces over OTLP/HTTP (protobuf), without the SDK.
//!
//! A traced request collects its spans in its own [`TraceCtx`] (no locks,
//! no allocation for untraced requests) and hands them over once, at its
//! end, to the [`Tracer`]'s bounded queue. A background task drains the
//! queue every [`FLUSH_EVERY`] (sooner once a batch is full) and POSTs an
//! `ExportTraceServiceRequest`. A full queue or a failed export drops
//! spans and counts them (`gatehouse_trace_spans_dropped_total`); requests
//! never wait for the collector.

use crate::config::TracingConfig;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prometheus::IntCounter;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// Spans waiting for export at most; more are dropped.
pub(crate) const MAX_QUEUED: usize = 4096;
/// Spans per export request at most.
const BATCH: usize = 512;
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// A W3C `traceparent` (version 00 layout; later versions are read by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
}

fn hex_into(src: &[u8], out: &mut [u8]) -> Option<()> {
    if src.len() != out.len() * 2 {
        return None;
    }
    for (i, pair) in src.chunks(2).enumerate() {
        let d = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        out[i] = d(pair[0])? << 4 | d(pair[1])?;
    }
    Some(())
}

/// Parses `traceparent`; `None` for anything malformed (the trace then
/// restarts, as W3C Trace Context says).
pub(crate) fn parse_traceparent(v: &[u8]) -> Option<Parent> {
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let mut version = [0u8; 1];
    hex_into(&v[0..2], &mut version)?;
    // Version ff is invalid; 00 has exactly this length; later ones may add
    // fields after a dash.
    if version[0] == 0xff || (version[0] == 0 && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    let mut p = Parent {
        trace_id: [0; 16],
        span_id: [0; 8],
        sampled: false,
    };
    hex_into(&v[3..35], &mut p.trace_id)?;
    hex_into(&v[36..52], &mut p.span_id)?;
    let mut flags = [0u8; 1];
    hex_into(&v[53..55], &mut flags)?;
    if p.trace_id == [0; 16] || p.span_id == [0; 8] {
        return None;
    }
    p.sampled = flags[0] & 1 == 1;
    Some(p)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

/// The `traceparent` an upstream gets: this trace, `span` as its parent.
pub(crate) fn traceparent(trace_id: &TraceId, span: &SpanId) -> String {
    format!("00-{}-{}-01", hex(trace_id), hex(span))
}

/// Whether a request is traced: a client's sampled `traceparent` is
/// joined, an unsampled one is respected, and without one (or with a
/// malformed one) `sample` decides; `roll` draws from 0..1 only then.
pub(crate) fn decide(
    header: Option<&[u8]>,
    sample: f64,
    roll: impl FnOnce() -> f64,
) -> Option<(TraceId, Option<SpanId>)> {
    if let Some(p) = header.and_then(parse_traceparent) {
        return p.sampled.then_some((p.trace_id, Some(p.span_id)));
    }
    (sample > 0.0 && roll() < sample).then(|| (new_trace_id(), None))
}

fn new_trace_id() -> TraceId {
    loop {
        let id = fastrand::u128(..).to_be_bytes();
        if id != [0; 16] {
            return id;
        }
    }
}

pub(crate) fn new_span_id() -> SpanId {
    fastrand::u64(1..).to_be_bytes()
}

#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Str(String),
    Int(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server,
    Client,
    Internal,
}

/// One finished span.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub name: String,
    pub kind: Kind,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attrs: Vec<(&'static str, Attr)>,
    pub error: bool,
}

/// The spans of one traced request (a ctx slice).
pub struct TraceCtx {
    pub trace_id: TraceId,
    /// gatehouse's server span: parent of every other span here.
    pub server: SpanId,
    /// The client's span, when it sent a sampled `traceparent`.
    pub parent: Option<SpanId>,
    base: Instant,
    base_ns: u64,
    pub spans: Vec<SpanRecord>,
    /// The upstream attempt in progress.
    pub attempt: Option<SpanRecord>,
    /// When the cache lookup began, until it ends.
    pub cache_lookup: Option<Instant>,
}

impl TraceCtx {
    /// A trace whose server span starts at `start` (the request's start).
    pub fn new(trace_id: TraceId, parent: Option<SpanId>, start: Instant) -> TraceCtx {
        let wall = SystemTime::now() - start.elapsed();
        let base_ns = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        TraceCtx {
            trace_id,
            server: new_span_id(),
            parent,
            base: start,
            base_ns,
            spans: Vec::with_capacity(4),
            attempt: None,
            cache_lookup: None,
        }
    }

    pub(crate) fn ns(&self, at: Instant) -> u64 {
        self.base_ns + at.saturating_duration_since(self.base).as_nanos() as u64
    }

    /// A finished child span of the server span.
    pub fn child(
        &mut self,
        name: &str,
        start: Instant,
        attrs: Vec<(&'static str, Attr)>,
        error: bool,
    ) {
        let span = SpanRecord {
            span_id: new_span_id(),
            parent: Some(self.server),
            name: name.to_string(),
            kind: Kind::Internal,
            start_ns: self.ns(start),
            end_ns: self.ns(Instant::now()),
            attrs,
            error,
        };
        self.spans.push(span);
    }

    /// Starts an upstream attempt (a client span) to `addr`; an attempt
    /// still open failed (it is being retried).
    pub fn start_attempt(&mut self, addr: std::net::SocketAddr) {
        self.end_attempt(None, true);
        self.attempt = Some(SpanRecord {
            span_id: new_span_id(),
            parent: Some(self.server),
            name: "upstream attempt".into(),
            kind: Kind::Client,
            start_ns: self.ns(Instant::now()),
            end_ns: 0,
            attrs: vec![
                (
                    "server.address",
                    Attr::Str(crate::netfmt::ip_text(addr.ip())),
                ),
                ("server.port", Attr::Int(i64::from(addr.port()))),
            ],
            error: false,
        });
    }

    /// Ends the open attempt: with the upstream's status if it answered;
    /// a 5xx or a failure is an error.
    pub fn end_attempt(&mut self, status: Option<u16>, failed: bool) {
        let Some(mut a) = self.attempt.take() else {
            return;
        };
        a.end_ns = self.ns(Instant::now());
        if let Some(s) = status {
            a.attrs
                .push(("http.response.status_code", Attr::Int(i64::from(s))));
        }
        a.error = failed || status.is_some_and(|s| s >= 500);
        self.spans.push(a);
    }

    /// The server span (last) and every child, once the request is over.
    pub fn finish(
        mut self,
        name: String,
        attrs: Vec<(&'static str, Attr)>,
        status: u16,
    ) -> Vec<SpanRecord> {
        self.end_attempt(None, status >= 500);
        let server = SpanRecord {
            span_id: self.server,
            parent: self.parent,
            name,
            kind: Kind::Server,
            start_ns: self.base_ns,
            end_ns: self.ns(Instant::now()),
            attrs,
            error: status >= 500,
        };
        self.spans.push(server);
        self.spans
    }
}

/// Spans of finished requests, waiting for the exporter.
struct Queue {
    /// (trace id, span) pairs.
    spans: Vec<(TraceId, SpanRecord)>,
}

/// One gateway's trace exporter (kept across reloads while `tracing` is
/// unchanged).
pub struct Tracer {
    pub config: TracingConfig,
    queue: Mutex<Queue>,
    wake: Arc<tokio::sync::Notify>,
    dropped: IntCounter,
    client: reqwest::Client,
}

impl Tracer {
    pub fn new(config: &TracingConfig, dropped: IntCounter) -> Tracer {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .unwrap_or_default();
        Tracer {
            config: config.clone(),
            queue: Mutex::new(Queue { spans: Vec::new() }),
            wake: Arc::new(tokio::sync::Notify::new()),
            dropped,
            client,
        }
    }

    /// Queues a finished request's spans, or drops and counts them when
    /// the queue is full. Never blocks on the exporter.
    pub fn submit(&self, trace_id: TraceId, spans: Vec<SpanRecord>) {
        let n = spans.len();
        let full = {
            let Ok(mut q) = self.queue.lock() else { return };
            if q.spans.len() + n > MAX_QUEUED {
                true
            } else {
                q.spans.extend(spans.into_iter().map(|s| (trace_id, s)));
                if q.spans.len() >= BATCH {
                    self.wake.notify_one();
                }
                false
            }
        };
        if full {
            self.dropped.inc_by(n as u64);
        }
    }

    /// What one export sends: the next batch, encoded (benches).
    pub fn encode_batch(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(&self.request(self.take_batch()))
    }

    /// Drops every queued span uncounted (benches).
    pub fn discard_queue(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.spans.clear();
        }
    }

    fn take_batch(&self) -> Vec<(TraceId, SpanRecord)> {
        let Ok(mut q) = self.queue.lock() else {
            return Vec::new();
        };
        let n = q.spans.len().min(BATCH);
        q.spans.drain(..n).collect()
    }

    /// The export loop; ends once the tracer is gone (a reload replaced it
    /// and the last request holding it finished).
    pub(crate) async fn run(me: Weak<Tracer>) {
        let mut warned: Option<Instant> = None;
        loop {
            let Some(t) = me.upgrade() else { return };
            let batch = t.take_batch();
            if batch.is_empty() {
                let wake = t.wake.clone();
                drop(t);
                let _ = tokio::time::timeout(FLUSH_EVERY, wake.notified()).await;
                continue;
            }
            let n = batch.len() as u64;
            let body = prost::Message::encode_to_vec(&t.request(batch));
            let sent = t
                .client
                .post(&t.config.otlp)
                .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                .body(body)
                .send()
                .await;
            let failure = match sent {
                Ok(r) if r.status().is_success() => None,
                Ok(r) => Some(format!("status {}", r.status())),
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = failure {
                t.dropped.inc_by(n);
                if warned.is_none_or(|w| w.elapsed() > Duration::from_secs(60)) {
                    log::warn!(
                        "tracing: export to {} failed ({why}); spans dropped",
                        t.config.otlp
                    );
                    warned = Some(Instant::now());
                }
            }
        }
    }

    fn request(&self, batch: Vec<(TraceId, SpanRecord)>) -> ExportTraceServiceRequest {
        let spans = batch
            .into_iter()
            .map(|(tid, s)| proto_span(&tid, s))
            .collect();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv(
                        "service.name",
                        Attr::Str(self.config.service_name.clone()),
                    )],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "gatehouse".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}

fn kv(key: &str, v: Attr) -> KeyValue {
    let value = match v {
        Attr::Str(s) => any_value::Value::StringValue(s),
        Attr::Int(i) => any_value::Value::IntValue(i),
    };
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn proto_span(trace_id: &TraceId, s: SpanRecord) -> Span {
    Span {
        trace_id: trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        parent_span_id: s.parent.map(|p| p.to_vec()).unwrap_or_default(),
        flags: 1,
        name: s.name,
        kind: match s.kind {
            Kind::Server => span::SpanKind::Server,
            Kind::Client => span::SpanKind::Client,
            Kind::Internal => span::SpanKind::Internal,
        } as i32,
        start_time_unix_nano: s.start_ns,
        end_time_unix_nano: s.end_ns,
        attributes: s.attrs.into_iter().map(|(k, v)| kv(k, v)).collect(),
        status: Some(Status {
            code: if s.error {
                status::StatusCode::Error
            } else {
                status::StatusCode::Unset
            } as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Starts the export loop of a new tracer.
pub(crate) fn start(spawner: &crate::tasks::Spawner, t: &Arc<Tracer>) {
    spawner.spawn(Tracer::run(Arc::downgrade(t)));
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_round_trip_and_refusals() {
        let p = parse_traceparent(TP.as_bytes()).unwrap();
        assert!(p.sampled);
        assert_eq!(hex(&p.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(traceparent(&p.trace_id, &p.span_id), TP);
        let unsampled = TP.replace("-01", "-00");
        assert!(!parse_traceparent(unsampled.as_bytes()).unwrap().sampled);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(parse_traceparent(bad.as_bytes()), None, "{bad}");
        }
        // A later version may carry more fields.
        assert!(parse_traceparent(format!("01{}-more", &TP[2..]).as_bytes()).is_some());
    }

    #[test]
    fn sampling_is_parent_based() {
        let never = || panic!("no roll when the client decided");
        let joined = decide(Some(TP.as_bytes()), 0.0, never).unwrap();
        assert_eq!(hex(&joined.0), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(decide(Some(TP.replace("-01", "-00").as_bytes()), 1.0, never).is_none());
        assert!(decide(None, 0.0, never).is_none());
        assert!(decide(None, 0.5, || 0.4).unwrap().1.is_none());
        assert!(decide(None, 0.5, || 0.6).is_none());
        assert!(decide(Some(b"garbage"), 1.0, || 0.0).is_some());
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let cfg = TracingConfig {
            otlp: "http://127.0.0.1:1/v1/traces".into(),
            service_name: "t".into(),
            sample: 1.0,
            timeout: Duration::from_secs(1),
        };
        let dropped = IntCounter::new("d", "d").unwrap();
        let t = Tracer::new(&cfg, dropped.clone());
        let mut cx = TraceCtx::new([1; 16], None, Instant::now());
        cx.child("auth", Instant::now(), Vec::new(), false);
        let spans = cx.finish("GET".into(), Vec::new(), 200);
        assert_eq!(spans.len(), 2);
        for _ in 0..MAX_QUEUED / 2 {
            t.submit([1; 16], spans.clone());
        }
        assert_eq!(dropped.get(), 0);
        t.submit([1; 16], spans);
        assert_eq!(dropped.get(), 2);
        assert_eq!(t.take_batch().len(), BATCH);
    }
}
