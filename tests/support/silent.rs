//! A TCP server that accepts connections and never answers (a hung peer).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

pub struct Silent {
    pub addr: SocketAddr,
    _listener: TcpListener,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Silent {
    pub fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let l = listener.try_clone().unwrap();
        let c = conns.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                c.lock().unwrap().push(s);
            }
        });
        Silent {
            addr,
            _listener: listener,
            conns,
        }
    }

    pub fn connections(&self) -> usize {
        self.conns.lock().unwrap().len()
    }
}
