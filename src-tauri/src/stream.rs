//! The window's pictures as MJPEG over loopback HTTP: each tile's `<img>` loads one
//! `multipart/x-mixed-replace` stream, and WebKit (WebView2, WKWebView alike) decodes and
//! paints each part itself — no script, no IPC message and no acknowledgement per picture.
//! Measured (issue 14, `bench app`, release, 720p call): the window's own work fell from 31.9
//! to 17.5 CPU s/min, capture -> on screen p50 from 20.8 to 9.2 ms.
//!
//! [`crate::frames::UiFrames`] makes the JPEGs and decides which picture goes when; this module
//! only owns the socket. The server listens on 127.0.0.1 only, on a port of the system's
//! choosing, and serves nothing but `GET /video?t=TOKEN&e=EPOCH&tile=KEY&n=N`: the token is
//! 128 random bits the window learns through IPC, and the `Host` must be this very address (a
//! web page that points a name of its own at 127.0.0.1 sends its own name). `e` is the
//! window's channel opening it belongs to and `n` the window's count of stream loads: a
//! request of an earlier opening, or older than the tile's stream, is refused (a request the
//! window cancelled may still arrive after the one that replaced it). One thread
//! (`ui-stream`) runs it; [`VideoServer`]'s drop stops it and joins.

use crate::frames::UiFrames;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The boundary between pictures in a stream.
pub const BOUNDARY: &str = "confab-frame";
const CONTENT_TYPE: &str = "multipart/x-mixed-replace; boundary=confab-frame";
/// Connections at a time (a window has a few tiles; the rest wait to be accepted).
const MAX_CONNECTIONS: usize = 32;
/// The longest tile key (as in the IPC commands).
const MAX_TILE: usize = 255;
const PATH: &str = "/video";
/// The app's own page: the only origin allowed to read the pictures' pixels (the UI tests
/// and `bench app` read the test pattern back from a tile).
#[cfg(not(windows))]
const APP_ORIGINS: [&str; 1] = ["tauri://localhost"];
/// WebView2 serves the app's page over http, or https when the app asks for it.
#[cfg(windows)]
const APP_ORIGINS: [&str; 2] = ["http://tauri.localhost", "https://tauri.localhost"];

/// The boundary and head of a part: a picture follows. `allow`: the origin allowed to read
/// its pixels — WebKit checks each part of a stream loaded with CORS, not only the response.
fn head(allow: Option<&str>) -> String {
    let cors = allow
        .map(|o| format!("Access-Control-Allow-Origin: {o}\r\n"))
        .unwrap_or_default();
    format!("--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n{cors}\r\n")
}

/// One picture, and the head of the next part at once. A multipart reader knows a part
/// has ended only when it has read the next one's head, and WebKit holds an image's data
/// until then: sent with the next picture, the head cost a frame's time on screen. (Parts
/// need no length: the boundary ends them.)
fn part(jpeg: &[u8], allow: Option<&str>) -> Bytes {
    let next = head(allow);
    let mut b = Vec::with_capacity(jpeg.len() + 2 + next.len());
    b.extend_from_slice(jpeg);
    b.extend_from_slice(b"\r\n");
    b.extend_from_slice(next.as_bytes());
    Bytes::from(b)
}

/// What a request asks for: a tile's stream, for the window's channel opening `epoch`, the
/// window's `n`th stream load.
#[derive(Debug, PartialEq)]
struct Ask {
    tile: String,
    epoch: u64,
    n: u64,
}

/// What a request must show: this server's address as its host, and the token.
#[derive(Clone)]
struct Gate {
    host: String,
    token: String,
}

impl Gate {
    /// What a request asks for, or the status it gets.
    fn check(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<Ask, StatusCode> {
        if method != Method::GET {
            return Err(StatusCode::METHOD_NOT_ALLOWED);
        }
        let host = headers.get(header::HOST).map(HeaderValue::as_bytes);
        if host != Some(self.host.as_bytes()) {
            return Err(StatusCode::FORBIDDEN);
        }
        if uri.path() != PATH {
            return Err(StatusCode::NOT_FOUND);
        }
        let (mut token, mut tile, mut epoch, mut n) = (None, None, None, None);
        for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
            match &*k {
                "t" => token = Some(v),
                "tile" => tile = Some(v),
                "e" => epoch = v.parse::<u64>().ok(),
                "n" => n = v.parse::<u64>().ok(),
                _ => {}
            }
        }
        if !token.is_some_and(|t| same(t.as_bytes(), self.token.as_bytes())) {
            return Err(StatusCode::NOT_FOUND);
        }
        match (tile, epoch, n) {
            (Some(t), Some(epoch), Some(n)) if !t.is_empty() && t.len() <= MAX_TILE => Ok(Ask {
                tile: t.into_owned(),
                epoch,
                n,
            }),
            _ => Err(StatusCode::BAD_REQUEST),
        }
    }
}

/// Equal, in a time that does not tell how much of a guess was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The loopback server; dropping it stops it (open streams end) and joins its thread.
pub struct VideoServer {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl VideoServer {
    pub fn start(frames: Arc<UiFrames>) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let token = format!("{:032x}", rand::random::<u128>());
        let gate = Arc::new(Gate {
            host: format!("127.0.0.1:{port}"),
            token: token.clone(),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("ui-stream".into())
            .spawn(move || runtime.block_on(serve(listener, gate, frames, stopped)))?;
        Ok(VideoServer {
            base: format!("http://127.0.0.1:{port}{PATH}?t={token}"),
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The streams' address, but the query's `e`, `tile` and `n`.
    pub fn base(&self) -> &str {
        &self.base
    }
}

impl Drop for VideoServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    gate: Arc<Gate>,
    frames: Arc<UiFrames>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("the video server cannot listen: {e}");
            return;
        }
    };
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept(), if connections.len() < MAX_CONNECTIONS => {
                match accepted {
                    Ok((tcp, _)) => {
                        let _ = tcp.set_nodelay(true);
                        connections.spawn(connection(tcp, gate.clone(), frames.clone()));
                    }
                    Err(e) => {
                        // Out of file descriptors, say: do not spin on it.
                        tracing::debug!("video server accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }
    connections.shutdown().await;
}

async fn connection(tcp: tokio::net::TcpStream, gate: Arc<Gate>, frames: Arc<UiFrames>) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let res = respond(&req, &gate, &frames);
        async move { Ok::<_, Infallible>(res) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // The window sends its request at once.
        .header_read_timeout(Duration::from_secs(2))
        // The smallest read buffer hyper accepts: a request here is one short line.
        .max_buf_size(8192)
        .keep_alive(false)
        .serve_connection(TokioIo::new(tcp), service);
    if let Err(e) = conn.await {
        tracing::debug!("video stream ended: {e:?}");
    }
}

fn respond(req: &Request<Incoming>, gate: &Gate, frames: &Arc<UiFrames>) -> Response<VideoBody> {
    let status = |s: StatusCode| {
        let mut r = Response::new(VideoBody(None));
        *r.status_mut() = s;
        r
    };
    let ask = match gate.check(req.method(), req.uri(), req.headers()) {
        Ok(a) => a,
        Err(s) => {
            tracing::debug!(status = %s, "video request refused");
            return status(s);
        }
    };
    // Not (or no longer) what the window wants: pictures over the channel, an earlier
    // opening, or a load older than the tile's stream.
    let Some((id, rx)) = frames.attach(&ask.tile, ask.epoch, ask.n) else {
        return status(StatusCode::CONFLICT);
    };
    let tile = ask.tile;
    let allow = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .and_then(|o| APP_ORIGINS.iter().find(|a| **a == o))
        .copied();
    let mut res = Response::new(VideoBody(Some(Attached {
        rx,
        frames: frames.clone(),
        tile,
        id,
        allow,
        opened: false,
    })));
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(origin) = allow {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static(origin),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    res
}

/// A response body: nothing (a refusal), or a tile's pictures as they come.
pub struct VideoBody(Option<Attached>);

struct Attached {
    rx: mpsc::Receiver<Bytes>,
    frames: Arc<UiFrames>,
    tile: String,
    id: u64,
    /// The app's origin, when it asked (see [`part`]).
    allow: Option<&'static str>,
    /// The opening boundary went out.
    opened: bool,
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.frames.detach(&self.tile, self.id);
    }
}

impl Body for VideoBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let Some(a) = self.get_mut().0.as_mut() else {
            return Poll::Ready(None);
        };
        if !a.opened {
            a.opened = true;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(head(a.allow))))));
        }
        match a.rx.poll_recv(cx) {
            Poll::Ready(Some(jpeg)) => {
                a.frames.delivered(&a.tile, a.id);
                Poll::Ready(Some(Ok(Frame::data(part(&jpeg, a.allow)))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.0 {
            None => SizeHint::with_exact(0),
            Some(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_engine::{FrameSource, VideoSink};
    use confab_media::pattern::{self, Stamp};
    use tauri::ipc::Channel;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::time::timeout;

    const T: Duration = Duration::from_secs(5);

    /// A response's body as it comes, de-chunked (HTTP/1.1, as the window asks).
    struct Body {
        tcp: TcpStream,
        raw: Vec<u8>,
        data: Vec<u8>,
        ended: bool,
    }

    impl Body {
        /// Reads until more of the body came; false: it ended.
        async fn more(&mut self) -> bool {
            loop {
                if self.dechunk() {
                    return true;
                }
                if self.ended {
                    return false;
                }
                let mut b = [0u8; 65536];
                let n = timeout(T, self.tcp.read(&mut b)).await.unwrap().unwrap();
                if n == 0 {
                    return false;
                }
                self.raw.extend_from_slice(&b[..n]);
            }
        }

        /// Moves whole chunks from `raw` to `data`; true if any moved.
        fn dechunk(&mut self) -> bool {
            let mut moved = false;
            while let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") {
                let size = std::str::from_utf8(&self.raw[..eol]).unwrap();
                let size = usize::from_str_radix(size.trim(), 16).unwrap();
                if size == 0 {
                    self.ended = true;
                    break;
                }
                if self.raw.len() < eol + 2 + size + 2 {
                    break;
                }
                self.data
                    .extend_from_slice(&self.raw[eol + 2..eol + 2 + size]);
                self.raw.drain(..eol + 2 + size + 2);
                moved = true;
            }
            moved
        }

        /// Reads on until `n` more whole pictures came; their test-pattern stamps. `allow`:
        /// the origin each part must name (and no other).
        async fn pictures(&mut self, n: usize, allow: Option<&str>) -> Vec<Option<Stamp>> {
            let head = head(allow).into_bytes();
            let end = [&b"\r\n"[..], &head].concat();
            let mut out = Vec::new();
            while out.len() < n {
                let d = &self.data;
                assert!(
                    d.starts_with(&head[..head.len().min(d.len())]),
                    "a part's head"
                );
                let found = (d.len() > head.len())
                    .then(|| d[head.len()..].windows(end.len()).position(|w| w == end))
                    .flatten();
                match found {
                    Some(i) => {
                        let jpeg = &d[head.len()..head.len() + i];
                        let rgb = zune_jpeg::JpegDecoder::new(jpeg).decode().unwrap();
                        let rgba: Vec<u8> = rgb
                            .chunks(3)
                            .flat_map(|p| [p[0], p[1], p[2], 255])
                            .collect();
                        out.push(pattern::read_rgba(&rgba, 640, 480));
                        self.data.drain(..head.len() + i + 2);
                    }
                    None => assert!(self.more().await, "the stream ended"),
                }
            }
            out
        }
    }

    /// `GET path` on the server with this `Host` and `Origin`; the response's head
    /// (lowercase) and its body.
    async fn get(authority: &str, path: &str, host: &str, origin: &str) -> (String, Body) {
        let mut tcp = TcpStream::connect(authority).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut b = [0u8; 65536];
        loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                let raw = buf[i + 4..].to_vec();
                let body = Body {
                    tcp,
                    raw,
                    data: Vec::new(),
                    ended: false,
                };
                return (head, body);
            }
            let n = timeout(T, tcp.read(&mut b)).await.unwrap().unwrap();
            assert!(
                n > 0,
                "closed before a response: {}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&b[..n]);
        }
    }

    /// The server's `host:port`, and the path of its streams but the query's `e`, `tile` and `n`.
    fn address(server: &VideoServer) -> (String, String) {
        let rest = &server.base()["http://".len()..];
        let slash = rest.find('/').unwrap();
        (rest[..slash].to_owned(), rest[slash..].to_owned())
    }

    fn picture(n: u32) -> Arc<confab_media::VideoFrame> {
        let stamp = Stamp {
            frame: n,
            capture_us: 0,
        };
        Arc::new(pattern::frame(640, 480, stamp, 0))
    }

    const APP: &str = APP_ORIGINS[0];

    #[tokio::test]
    async fn a_tile_s_pictures_stream_to_the_window() {
        let frames = UiFrames::new();
        let (channel, told) = crate::frames::test_channel();
        let e = frames.open(channel, true);
        let server = VideoServer::start(frames.clone()).unwrap();
        let _runner = crate::frames::TestRunner::start(&frames);
        let (authority, path) = address(&server);
        let stream = |e: u64, n: u64| format!("{path}&e={e}&tile=p1&n={n}");
        let peer = FrameSource::Remote(confab_protocol::PeerId("p1".into()));

        // The first picture: the window is told the tile has pictures (not sent them).
        frames.frame(&peer, &picture(1));
        let m = told.recv_timeout(T).unwrap();
        assert_eq!(m, [&[3u8, 2][..], b"p1"].concat());

        // The stream: the newest picture at once, then each as it comes, in order.
        let (head, mut body) = get(&authority, &stream(e, 1), &authority, APP).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(
            head.contains("content-type: multipart/x-mixed-replace; boundary=confab-frame"),
            "{head}"
        );
        assert!(
            head.contains(&format!("access-control-allow-origin: {APP}")),
            "{head}"
        );
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        let frame = |s: Vec<Option<Stamp>>| s[0].map(|s| s.frame);
        assert_eq!(frame(body.pictures(1, Some(APP)).await), Some(1));
        for n in 2..=4 {
            frames.frame(&peer, &picture(n));
            assert_eq!(frame(body.pictures(1, Some(APP)).await), Some(n));
        }
        assert_eq!(frames.take_drawn()["p1"], 4, "the pictures the stream took");

        // The tile loaded again (the window moved it): the new stream takes over, the old
        // ends; a load the window made before it (cancelled, arriving late) is refused.
        let (head, mut body2) = get(&authority, &stream(e, 3), &authority, APP).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        while body.more().await {}
        let (head, _) = get(&authority, &stream(e, 2), &authority, APP).await;
        assert!(head.starts_with("http/1.1 409"), "a stale load: {head}");
        frames.frame(&peer, &picture(5));
        assert_eq!(frame(body2.pictures(1, Some(APP)).await), Some(5));

        // The channel opened again (a reload): the earlier opening's loads are refused.
        let e2 = frames.open(crate::frames::test_channel().0, true);
        assert!(e2 > e);
        while body2.more().await {}
        let (head, _) = get(&authority, &stream(e, 9), &authority, APP).await;
        assert!(
            head.starts_with("http/1.1 409"),
            "an earlier opening: {head}"
        );

        // Back to the channel (the window's streams failed): no stream at all.
        let e3 = frames.open(crate::frames::test_channel().0, false);
        let (head, _) = get(&authority, &stream(e3, 1), &authority, APP).await;
        assert!(head.starts_with("http/1.1 409"), "{head}");

        drop(server);
    }

    #[tokio::test]
    async fn guessed_token_and_dns_rebinding_get_no_pictures() {
        let frames = UiFrames::new();
        let e = frames.open(Channel::new(|_| Ok(())), true);
        let server = VideoServer::start(frames.clone()).unwrap();
        frames.frame(&FrameSource::Local, &picture(1));
        let (authority, path) = address(&server);
        let guessed = format!("/video?t={:032x}&e={e}&tile=local&n=1", 7u128);
        let (head, _) = get(&authority, &guessed, &authority, APP).await;
        assert!(head.starts_with("http/1.1 404"), "{head}");
        let ok = format!("{path}&e={e}&tile=local&n=1");
        let (head, _) = get(&authority, &ok, "evil.example", APP).await;
        assert!(head.starts_with("http/1.1 403"), "{head}");
        let (head, _) = get(&authority, "/", &authority, APP).await;
        assert!(head.starts_with("http/1.1 404"), "{head}");
        assert_eq!(
            frames.streams_open(),
            0,
            "a refused request opened a stream"
        );
    }

    #[tokio::test]
    async fn foreign_origin_cannot_read_pixels() {
        // A page elsewhere that has the address (it should not) gets no CORS grant: its canvas
        // would be tainted. Neither the response nor any part names an origin.
        let frames = UiFrames::new();
        let e = frames.open(Channel::new(|_| Ok(())), true);
        let server = VideoServer::start(frames.clone()).unwrap();
        let _runner = crate::frames::TestRunner::start(&frames);
        let (authority, path) = address(&server);
        frames.frame(&FrameSource::Local, &picture(1));
        let ok = format!("{path}&e={e}&tile=local&n=1");
        let (head, mut body) = get(&authority, &ok, &authority, "http://evil.example").await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(!head.contains("access-control"), "{head}");
        assert_eq!(body.pictures(1, None).await[0].map(|s| s.frame), Some(1));
        assert!(!String::from_utf8_lossy(&body.data)
            .to_lowercase()
            .contains("access-control"));
        drop(server);
    }

    fn gate() -> Gate {
        Gate {
            host: "127.0.0.1:4000".into(),
            token: "0123456789abcdef0123456789abcdef".into(),
        }
    }

    fn check(method: Method, host: &str, uri: &str) -> Result<String, StatusCode> {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        gate()
            .check(&method, &uri.parse().unwrap(), &h)
            .map(|a| a.tile)
    }

    const OK: &str = "/video?t=0123456789abcdef0123456789abcdef&e=1&n=1&tile=";

    #[test]
    fn a_tile_is_asked_for_with_the_token() {
        assert_eq!(
            check(Method::GET, "127.0.0.1:4000", &format!("{OK}local")),
            Ok("local".into())
        );
        assert_eq!(
            check(Method::GET, "127.0.0.1:4000", &format!("{OK}share%3Ap1")),
            Ok("share:p1".into()),
            "keys are URL-encoded"
        );
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:4000"));
        let uri = "/video?tile=local&e=7&n=42&t=0123456789abcdef0123456789abcdef";
        assert_eq!(
            gate().check(&Method::GET, &uri.parse().unwrap(), &h),
            Ok(Ask {
                tile: "local".into(),
                epoch: 7,
                n: 42
            })
        );
        // The opening and the load count are not optional.
        refused(
            StatusCode::BAD_REQUEST,
            &[
                "/video?t=0123456789abcdef0123456789abcdef&tile=local&n=1",
                "/video?t=0123456789abcdef0123456789abcdef&tile=local&e=1",
                "/video?t=0123456789abcdef0123456789abcdef&tile=local&e=1&n=-1",
            ],
        );
    }

    /// Each of `uris`, asked properly otherwise, gets `status`.
    fn refused(status: StatusCode, uris: &[&str]) {
        for uri in uris {
            assert_eq!(
                check(Method::GET, "127.0.0.1:4000", uri),
                Err(status),
                "{uri}"
            );
        }
    }

    #[test]
    fn guessed_token() {
        refused(
            StatusCode::NOT_FOUND,
            &[
                "/video?tile=local&e=1&n=1",
                "/video?t=&tile=local&e=1&n=1",
                "/video?t=0123456789abcdef0123456789abcdee&tile=local&e=1&n=1",
                "/video?t=0123456789abcdef0123456789abcdef0&tile=local&e=1&n=1",
            ],
        );
    }

    #[test]
    fn dns_rebinding_host() {
        // A page of evil.example that resolves its name to 127.0.0.1 sends its own name.
        for host in [
            "evil.example:4000",
            "localhost:4000",
            "127.0.0.1:4001",
            "127.0.0.1",
        ] {
            assert_eq!(
                check(Method::GET, host, &format!("{OK}local")),
                Err(StatusCode::FORBIDDEN),
                "{host}"
            );
        }
        assert_eq!(
            gate().check(
                &Method::GET,
                &format!("{OK}local").parse().unwrap(),
                &HeaderMap::new()
            ),
            Err(StatusCode::FORBIDDEN),
            "no host at all"
        );
    }

    #[test]
    fn other_methods_paths_and_oversize_tiles() {
        assert_eq!(
            check(Method::POST, "127.0.0.1:4000", &format!("{OK}local")),
            Err(StatusCode::METHOD_NOT_ALLOWED)
        );
        refused(
            StatusCode::NOT_FOUND,
            &["/other?t=0123456789abcdef0123456789abcdef&e=1&n=1&tile=local"],
        );
        let long = format!("{OK}{}", "x".repeat(MAX_TILE + 1));
        refused(StatusCode::BAD_REQUEST, &[OK, &long]);
    }

    #[test]
    fn a_part_is_one_jpeg_between_boundaries() {
        // The stream opens with a part's head; each picture comes with the next one's.
        assert_eq!(
            head(None),
            "--confab-frame\r\nContent-Type: image/jpeg\r\n\r\n"
        );
        let p = part(&[0xff, 0xd8, 1, 2, 0xff, 0xd9], None);
        assert_eq!(
            &p[..],
            &b"\xff\xd8\x01\x02\xff\xd9\r\n--confab-frame\r\nContent-Type: image/jpeg\r\n\r\n"[..]
        );
        let p = part(&[0xff, 0xd8, 0xff, 0xd9], Some("tauri://localhost"));
        assert_eq!(
            &p[..],
            &b"\xff\xd8\xff\xd9\r\n--confab-frame\r\nContent-Type: image/jpeg\r\nAccess-Control-Allow-Origin: tauri://localhost\r\n\r\n"[..]
        );
        assert!(CONTENT_TYPE.ends_with(&format!("boundary={BOUNDARY}")));
    }
}
