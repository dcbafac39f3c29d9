//! The in-process impaired network: a webrtc [`Runtime`] that wraps every UDP socket of the
//! peer connections built with it, so that what those sockets *receive* goes through an
//! impairment [`Pipe`]. Everything else (tasks, timers, TCP, DNS, and sending) is the inner
//! runtime's, untouched: the real ICE, DTLS, SRTP, SCTP, NACK and congestion control run over
//! real loopback sockets.
//!
//! One [`NetLab`] is one network: every runtime it hands out shares its conditions and its
//! counters, and every wrapped socket is its own link (its own queue, its own Gilbert-Elliott
//! state) with those conditions. Give both peers of a call a runtime of the same lab and each
//! direction is impaired once: 5 % loss and 50 ms delay make a 5 %-loss, 100 ms-RTT call.
//! For different conditions per direction, use two labs.
//!
//! The shell holds no task: a datagram waiting for its delivery time sits in the pipe, and the
//! socket's `poll_recv` arms a timer from the runtime for the next one.

use crate::impair::{Counters, Impairment, InvalidImpairment, Pipe};
use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, EcnCodepoint, JoinHandle,
    RecvMeta, Runtime, Transmit,
};

/// Errors of the in-process lab.
#[derive(Debug, thiserror::Error)]
pub enum NetlabError {
    #[error("invalid network conditions: {0}")]
    Invalid(#[from] InvalidImpairment),
    #[error("webrtc was built without a runtime (enable its runtime-tokio feature)")]
    NoRuntime,
}

/// An impaired network for in-process peer connections. Cheap to clone (a handle).
#[derive(Clone, Debug)]
pub struct NetLab {
    shared: Arc<Shared>,
}

struct Shared {
    inner: Arc<dyn Runtime>,
    state: Mutex<LabState>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetLab")
            .field("inner", &self.inner.name())
            .finish_non_exhaustive()
    }
}

struct LabState {
    cfg: Impairment,
    sockets: Vec<(u64, Weak<SocketCore>)>,
    /// Counters of sockets already closed.
    retired: Counters,
    wrapped: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; carry on with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Each socket gets its own random sequence derived from the lab's seed.
fn socket_seed(seed: u64, index: u64) -> u64 {
    seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl NetLab {
    /// A lab over webrtc's default (tokio) runtime.
    pub fn new(cfg: Impairment) -> Result<Self, NetlabError> {
        let inner = webrtc::runtime::default_runtime().ok_or(NetlabError::NoRuntime)?;
        Self::over(inner, cfg)
    }

    /// A lab over any runtime: only its UDP sockets are wrapped.
    pub fn over(inner: Arc<dyn Runtime>, cfg: Impairment) -> Result<Self, NetlabError> {
        cfg.validate()?;
        Ok(NetLab {
            shared: Arc::new(Shared {
                inner,
                state: Mutex::new(LabState {
                    cfg,
                    sockets: Vec::new(),
                    retired: Counters::default(),
                    wrapped: 0,
                }),
            }),
        })
    }

    /// A runtime for `PeerConnectionBuilder::with_runtime`: every UDP socket it wraps is
    /// impaired by this lab.
    pub fn runtime(&self) -> Arc<dyn Runtime> {
        Arc::new(LabRuntime {
            lab: self.shared.clone(),
        })
    }

    /// The conditions now.
    pub fn impairment(&self) -> Impairment {
        lock(&self.shared.state).cfg
    }

    /// New conditions, from the next datagram on, for every socket (datagrams in flight keep
    /// their delivery times).
    pub fn set(&self, cfg: Impairment) -> Result<(), NetlabError> {
        cfg.validate()?;
        let mut st = lock(&self.shared.state);
        st.cfg = cfg;
        st.sockets.retain(|(_, s)| s.strong_count() > 0);
        for (index, sock) in &st.sockets {
            if let Some(sock) = sock.upgrade() {
                lock(&sock.state).pipe.set(Impairment {
                    seed: socket_seed(cfg.seed, *index),
                    ..cfg
                });
            }
        }
        Ok(())
    }

    /// Changes some of the conditions: `lab.update(|c| c.rate_bps = None)`.
    pub fn update(&self, f: impl FnOnce(&mut Impairment)) -> Result<(), NetlabError> {
        let mut cfg = self.impairment();
        f(&mut cfg);
        self.set(cfg)
    }

    /// Starts (`true`) or ends a blackout: 100 % loss.
    pub fn set_blackout(&self, on: bool) {
        let mut cfg = self.impairment();
        cfg.blackout = on;
        // Only `blackout` changed, and the rest was valid.
        let _ = self.set(cfg);
    }

    /// What happened to every datagram received through this lab so far (open and closed
    /// sockets).
    pub fn counters(&self) -> Counters {
        let st = lock(&self.shared.state);
        let mut total = st.retired;
        for (_, sock) in &st.sockets {
            if let Some(sock) = sock.upgrade() {
                total.add(&lock(&sock.state).pipe.counters());
            }
        }
        total
    }

    /// How many UDP sockets this lab has wrapped.
    pub fn sockets_wrapped(&self) -> u64 {
        lock(&self.shared.state).wrapped
    }
}

/// The runtime handed to peer connections: the inner runtime with impaired UDP sockets.
#[derive(Debug)]
struct LabRuntime {
    lab: Arc<Shared>,
}

impl Runtime for LabRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.lab.inner.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.lab.inner.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let inner = self.lab.inner.wrap_udp_socket(socket)?;
        let scratch = vec![0u8; (inner.max_gro_segments().max(1) * 1500).max(65_536)];
        let mut st = lock(&self.lab.state);
        let index = st.wrapped;
        st.wrapped += 1;
        let core = Arc::new(SocketCore {
            state: Mutex::new(SocketState {
                pipe: Pipe::new(Impairment {
                    seed: socket_seed(st.cfg.seed, index),
                    ..st.cfg
                }),
                scratch,
                timer: None,
            }),
        });
        st.sockets.push((index, Arc::downgrade(&core)));
        Ok(Arc::new(ImpairedSocket {
            inner,
            core,
            lab: self.lab.clone(),
        }))
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.lab.inner.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.lab.inner.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.lab.inner.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.lab.inner.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.lab.inner.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.lab.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.lab.inner.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.lab.inner.yield_now()
    }

    fn name(&self) -> &'static str {
        "confab-netlab"
    }
}

/// A received datagram waiting in the pipe.
#[derive(Debug)]
struct Datagram {
    from: SocketAddr,
    data: Vec<u8>,
    ecn: Option<EcnCodepoint>,
    dst_ip: Option<IpAddr>,
    interface_index: Option<u32>,
}

struct SocketCore {
    state: Mutex<SocketState>,
}

/// A timer from the runtime.
type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

struct SocketState {
    pipe: Pipe<Datagram>,
    /// Receive buffer for the inner socket (room for a GRO batch).
    scratch: Vec<u8>,
    /// The timer for the next delivery, and when it fires.
    timer: Option<(Instant, Sleep)>,
}

struct ImpairedSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    core: Arc<SocketCore>,
    lab: Arc<Shared>,
}

impl fmt::Debug for ImpairedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImpairedSocket")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Drop for ImpairedSocket {
    fn drop(&mut self) {
        // Lock order everywhere: lab state, then socket state.
        let mut st = lock(&self.lab.state);
        let counters = lock(&self.core.state).pipe.counters();
        st.retired.add(&counters);
        let me = Arc::as_ptr(&self.core);
        st.sockets
            .retain(|(_, s)| s.strong_count() > 0 && !std::ptr::eq(s.as_ptr(), me));
    }
}

/// How many datagrams one `poll_recv` takes from the inner socket before letting others run.
const DRAIN_BUDGET: usize = 256;

impl AsyncUdpSocket for ImpairedSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        self.inner.poll_send(cx, transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut guard = lock(&self.core.state);
        let st = &mut *guard;
        let now = self.lab.inner.now();

        // 1. Everything the kernel has for us goes into the pipe (the waker is registered
        //    with the inner socket when it runs dry).
        let mut error = None;
        let mut budget = DRAIN_BUDGET;
        loop {
            if budget == 0 {
                cx.waker().wake_by_ref();
                break;
            }
            let mut m = [RecvMeta::default()];
            let res = {
                let mut b = [IoSliceMut::new(&mut st.scratch)];
                self.inner.poll_recv(cx, &mut b, &mut m)
            };
            match res {
                Poll::Ready(Ok(n)) if n > 0 => {
                    let m = m[0];
                    let stride = m.stride.max(1);
                    let mut off = 0;
                    while off < m.len {
                        let end = (off + stride).min(m.len);
                        let data = st.scratch[off..end].to_vec();
                        let len = data.len();
                        if st.pipe.scripted_drop(&data) {
                            off = end;
                            budget = budget.saturating_sub(1);
                            continue;
                        }
                        let d = Datagram {
                            from: m.addr,
                            data,
                            ecn: m.ecn,
                            dst_ip: m.dst_ip,
                            interface_index: m.interface_index,
                        };
                        let _ = st.pipe.offer(now, len, d);
                        off = end;
                        budget = budget.saturating_sub(1);
                    }
                    if m.len == 0 {
                        // An empty datagram is still a datagram.
                        let d = Datagram {
                            from: m.addr,
                            data: Vec::new(),
                            ecn: m.ecn,
                            dst_ip: m.dst_ip,
                            interface_index: m.interface_index,
                        };
                        let _ = st.pipe.offer(now, 0, d);
                        budget = budget.saturating_sub(1);
                    }
                }
                Poll::Ready(Ok(_)) => break,
                Poll::Ready(Err(e)) => {
                    error = Some(e);
                    break;
                }
                Poll::Pending => break,
            }
        }

        // 2. Hand on what is due; 3. otherwise wait for the next delivery time.
        loop {
            let now = self.lab.inner.now();
            let max = bufs.len().min(meta.len());
            let mut n = 0;
            while n < max {
                let Some(d) = st.pipe.pop_due(now) else { break };
                let len = d.data.len().min(bufs[n].len());
                bufs[n][..len].copy_from_slice(&d.data[..len]);
                let mut m = RecvMeta::default();
                m.addr = d.from;
                m.len = len;
                m.stride = len.max(1);
                m.ecn = d.ecn;
                m.dst_ip = d.dst_ip;
                m.interface_index = d.interface_index;
                meta[n] = m;
                n += 1;
            }
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            if let Some(e) = error.take() {
                return Poll::Ready(Err(e));
            }
            let Some(due) = st.pipe.next_due() else {
                st.timer = None;
                return Poll::Pending;
            };
            if st.timer.as_ref().is_none_or(|(at, _)| *at != due) {
                let wait = due.saturating_duration_since(now);
                st.timer = Some((due, self.lab.inner.sleep(wait)));
            }
            let Some((_, timer)) = st.timer.as_mut() else {
                return Poll::Pending;
            };
            match timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                // Fired: take what is due now (the clock has moved on).
                Poll::Ready(()) => st.timer = None,
            }
        }
    }

    fn max_gso_segments(&self) -> usize {
        1
    }

    fn max_gro_segments(&self) -> usize {
        1
    }
}
