//! A TCP load balancer in the test process, as a Kubernetes Service is for the controller's
//! replicas: each new connection goes to the next backend in turn, skipping those that refuse
//! it (a killed replica). It knows nothing of leadership: an agent that reaches a follower gets
//! its 503 and retries, and a later connection reaches the leader, as through a real Service.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

pub struct Balancer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// Connections made, per backend.
    pub served: Arc<Vec<AtomicUsize>>,
}

impl Balancer {
    /// Listens on a free loopback port and forwards to the `backends` (loopback ports).
    pub fn start(backends: &[u16]) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("an address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let served: Arc<Vec<AtomicUsize>> =
            Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
        let backends: Vec<SocketAddr> = backends
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect();
        let (stopped, counts) = (stop.clone(), served.clone());
        std::thread::spawn(move || {
            let next = AtomicUsize::new(0);
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let first = next.fetch_add(1, Ordering::SeqCst);
                let backend = (0..backends.len()).find_map(|i| {
                    let at = (first + i) % backends.len();
                    TcpStream::connect_timeout(&backends[at], Duration::from_secs(2))
                        .ok()
                        .map(|s| (at, s))
                });
                match backend {
                    Some((at, backend)) => {
                        counts[at].fetch_add(1, Ordering::SeqCst);
                        splice(client, backend);
                    }
                    // No replica is up: the client sees the connection closed, and retries.
                    None => drop(client),
                }
            }
        });
        Balancer { port, stop, served }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies both ways until either side closes; then closes both.
fn splice(client: TcpStream, backend: TcpStream) {
    let pipe = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        });
    };
    match (client.try_clone(), backend.try_clone()) {
        (Ok(client2), Ok(backend2)) => {
            pipe(client, backend);
            pipe(backend2, client2);
        }
        _ => {
            let _ = client.shutdown(Shutdown::Both);
            let _ = backend.shutdown(Shutdown::Both);
        }
    }
}
