//! TCP-level impairments for signaling tests: a relay whose connections can die silently.

/// A TCP relay in front of a server whose `freeze` stops every connection made so far: no
/// byte passes either way any more, yet both sockets stay open, as when a network path dies
/// without a word. Connections made later pass. Dropping it stops everything.
pub struct FreezingRelay {
    addr: std::net::SocketAddr,
    frozen_below: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    made: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FreezingRelay {
    /// Listens on 127.0.0.1 (any port) and relays each connection to `upstream`.
    pub async fn start(upstream: std::net::SocketAddr) -> std::io::Result<Self> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let frozen_below = Arc::new(AtomicUsize::new(0));
        let made = Arc::new(AtomicUsize::new(0));
        let (frozen, count) = (frozen_below.clone(), made.clone());
        let task = tokio::spawn(async move {
            // Owns every connection's task: they end when this one is aborted.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let me = count.fetch_add(1, Ordering::SeqCst);
                let frozen = frozen.clone();
                conns.spawn(async move {
                    let Ok(up) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let pump =
                        |mut from: tokio::net::tcp::OwnedReadHalf,
                         mut to: tokio::net::tcp::OwnedWriteHalf| {
                            let frozen = frozen.clone();
                            async move {
                                let mut buf = vec![0u8; 16 * 1024];
                                while let Ok(n @ 1..) = from.read(&mut buf).await {
                                    if me < frozen.load(Ordering::SeqCst) {
                                        continue;
                                    }
                                    if to.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                                // Never closes the other side: a dead path says nothing.
                                std::future::pending::<()>().await;
                                drop(to);
                            }
                        };
                    let (cr, cw) = tcp.into_split();
                    let (ur, uw) = up.into_split();
                    tokio::join!(pump(cr, uw), pump(ur, cw));
                });
            }
        });
        Ok(FreezingRelay {
            addr,
            frozen_below,
            made,
            task,
        })
    }

    /// Where to connect (what a browser or client is pointed at instead of the server).
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// `ws://ADDR/ws`: a Confab signaling URL through the relay.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Stops every connection made so far (later ones pass).
    pub fn freeze(&self) {
        use std::sync::atomic::Ordering;
        self.frozen_below
            .store(self.made.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

impl Drop for FreezingRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
