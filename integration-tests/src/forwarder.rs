//! A TCP forwarder on a fixed local port whose target can be switched: the address a service
//! is configured with stays the same while the server behind it is replaced, as a virtual IP,
//! a DNS name or a cloud endpoint behaves in a failover.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards every connection to 127.0.0.1's current target port; stops when dropped.
#[derive(Debug)]
pub struct TcpForwarder {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    target: Arc<Mutex<Option<u16>>>,
    accepting: JoinHandle<()>,
}

impl TcpForwarder {
    /// Starts forwarding to `target`.
    pub async fn start(target: u16) -> TcpForwarder {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the forwarder");
        let port = listener.local_addr().expect("local address").port();
        let shared_target = Arc::new(Mutex::new(Some(target)));
        let current = Arc::clone(&shared_target);
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target = *current.lock().unwrap_or_else(PoisonError::into_inner);
                tokio::spawn(forward(client, target));
            }
        });
        TcpForwarder {
            port,
            target: shared_target,
            accepting,
        }
    }

    /// New connections go to `target` from now on (`None`: they are closed at once, as
    /// when nothing answers at the address). Open ones stay where they are.
    pub fn point_at(&self, target: Option<u16>) {
        *self.target.lock().unwrap_or_else(PoisonError::into_inner) = target;
    }
}

async fn forward(mut client: TcpStream, target: Option<u16>) {
    let Some(target) = target else { return };
    // A target that refuses closes the client's connection too: what a client sees of a
    // server that is down behind a proxy.
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

impl Drop for TcpForwarder {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}
