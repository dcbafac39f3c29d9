//! TCP-level impairments for signaling tests: a relay whose connections can die silently.

/// A TCP relay in front of a server whose `freeze` stops every connection made so far: no
/// byte passes either way any more, yet both sockets stay open, as when a network path dies
/// without a word. Connections made later pass. `cut` closes every connection and refuses new
/// ones until `restore` (a client whose network is gone for a while; the server sees it go).
/// Dropping it stops everything.
pub struct FreezingRelay {
    addr: std::net::SocketAddr,
    frozen_below: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    made: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Connections below this are closed; while `refusing`, new ones too.
    cut_below: tokio::sync::watch::Sender<usize>,
    refusing: std::sync::Arc<std::sync::atomic::AtomicBool>,
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
        let (cut_below, cut) = tokio::sync::watch::channel(0usize);
        let refusing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let refuse = refusing.clone();
        let task = tokio::spawn(async move {
            // Owns every connection's task: they end when this one is aborted.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                if refuse.load(Ordering::SeqCst) {
                    continue;
                }
                let me = count.fetch_add(1, Ordering::SeqCst);
                let frozen = frozen.clone();
                let mut cut = cut.clone();
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
                    // Cut: both sockets are dropped, so both ends see the connection close.
                    tokio::select! {
                        _ = async { tokio::join!(pump(cr, uw), pump(ur, cw)) } => {}
                        _ = cut.wait_for(|&below| me < below) => {}
                    }
                });
            }
        });
        Ok(FreezingRelay {
            addr,
            frozen_below,
            made,
            cut_below,
            refusing,
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

impl FreezingRelay {
    /// Closes every connection made so far and refuses new ones until [`Self::restore`].
    pub fn cut(&self) {
        use std::sync::atomic::Ordering;
        self.refusing.store(true, Ordering::SeqCst);
        self.cut_below
            .send_replace(self.made.load(Ordering::SeqCst));
    }

    /// Lets new connections through again.
    pub fn restore(&self) {
        self.refusing
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for FreezingRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
