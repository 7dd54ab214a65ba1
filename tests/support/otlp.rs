//! A real OTLP/HTTP trace receiver: `POST /v1/traces` bodies are decoded as
//! `ExportTraceServiceRequest` with the official protobuf definitions
//! (`opentelemetry-proto`). It can stall: hold requests without answering.

use super::{free_port, loopback, read_body, read_head};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct State {
    spans: Mutex<Vec<(String, Span)>>,
    stalled: AtomicBool,
    /// Export requests received (answered or held).
    posts: AtomicUsize,
}

pub struct Otlp {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Otlp {
    pub fn start() -> Otlp {
        let addr = loopback(free_port());
        let listener = TcpListener::bind(addr).unwrap();
        let state = Arc::new(State::default());
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let st = st.clone();
                std::thread::spawn(move || serve(conn, &st));
            }
        });
        Otlp { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    /// Every span received, with its resource's `service.name`.
    pub fn spans(&self) -> Vec<(String, Span)> {
        self.state.spans.lock().unwrap().clone()
    }

    pub fn stall(&self, on: bool) {
        self.state.stalled.store(on, Ordering::SeqCst);
    }

    pub fn posts(&self) -> usize {
        self.state.posts.load(Ordering::SeqCst)
    }
}

fn serve(conn: std::net::TcpStream, st: &State) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    while let Some((line, headers)) = read_head(&mut r) {
        let Ok(body) = read_body(&mut r, &headers) else {
            return;
        };
        st.posts.fetch_add(1, Ordering::SeqCst);
        if st.stalled.load(Ordering::SeqCst) {
            // Hold the exporter's request until the test ends.
            std::thread::sleep(Duration::from_secs(600));
            return;
        }
        let ok = line.starts_with("POST /v1/traces ")
            && super::header(&headers, "content-type") == Some("application/x-protobuf");
        let status = match ExportTraceServiceRequest::decode(body.as_slice()) {
            Ok(req) if ok => {
                let mut spans = st.spans.lock().unwrap();
                for rs in req.resource_spans {
                    let service = rs
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|kv| kv.key == "service.name")
                        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                        .map(|v| match v {
                            any_value::Value::StringValue(s) => s.clone(),
                            other => format!("{other:?}"),
                        })
                        .unwrap_or_default();
                    for ss in rs.scope_spans {
                        spans.extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
                    }
                }
                "200 OK"
            }
            _ => "400 Bad Request",
        };
        let resp = format!("HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n");
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}
