//! The window's pictures as MJPEG over loopback HTTP: each tile's `<img>` loads one
//! `multipart/x-mixed-replace` stream, and WebKit (WebView2, WKWebView alike) decodes and
//! paints each part itself — no script, no IPC message and no acknowledgement per picture.
//! Measured (issue 14): the window's own work in a 720p call fell from ~23 to ~9 CPU s/min.
//!
//! [`crate::frames::UiFrames`] makes the JPEGs and decides which picture goes when; this module
//! only owns the socket. The server listens on 127.0.0.1 only, on a port of the system's
//! choosing, and serves nothing but `GET /video?t=TOKEN&tile=KEY`: the token is 128 random
//! bits the window learns through IPC, and the `Host` must be this very address (a web page
//! that points a name of its own at 127.0.0.1 sends its own name). One thread (`ui-stream`)
//! runs it; [`VideoServer`]'s drop stops it and joins.

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
/// The app's own page (Linux and macOS; Windows' WebView2 over http and https): the only
/// origins allowed to read the pictures' pixels (the UI tests and `bench app` read the test
/// pattern back from a tile).
const APP_ORIGINS: [&str; 3] = [
    "tauri://localhost",
    "http://tauri.localhost",
    "https://tauri.localhost",
];

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

/// What a request must show: this server's address as its host, and the token.
#[derive(Clone)]
struct Gate {
    host: String,
    token: String,
}

impl Gate {
    /// The tile a request asks for, or the status it gets.
    fn check(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<String, StatusCode> {
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
        let (mut token, mut tile) = (None, None);
        for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
            match &*k {
                "t" => token = Some(v),
                "tile" => tile = Some(v),
                _ => {}
            }
        }
        if !token.is_some_and(|t| same(t.as_bytes(), self.token.as_bytes())) {
            return Err(StatusCode::NOT_FOUND);
        }
        match tile {
            Some(t) if !t.is_empty() && t.len() <= MAX_TILE => Ok(t.into_owned()),
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
            base: format!("http://127.0.0.1:{port}{PATH}?t={token}&tile="),
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// A tile's stream is this followed by its key, URL-encoded.
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
        .header_read_timeout(Duration::from_secs(5))
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
    let tile = match gate.check(req.method(), req.uri(), req.headers()) {
        Ok(t) => t,
        Err(s) => {
            tracing::debug!(status = %s, "video request refused");
            return status(s);
        }
    };
    // The window went back to pictures over IPC: nothing to stream.
    let Some((id, rx)) = frames.attach(&tile) else {
        return status(StatusCode::CONFLICT);
    };
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

    /// `GET path` on the server (HTTP/1.0: the body is not chunked) with this `Host`, as the
    /// app's page; the response's head (lowercase) and what came after it.
    async fn get(authority: &str, path: &str, host: &str) -> (String, TcpStream, Vec<u8>) {
        let mut tcp = TcpStream::connect(authority).await.unwrap();
        let req =
            format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nOrigin: tauri://localhost\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut b = [0u8; 65536];
        loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                let rest = buf[i + 4..].to_vec();
                return (head, tcp, rest);
            }
            let n = timeout(T, tcp.read(&mut b)).await.unwrap().unwrap();
            if n == 0 {
                return (
                    String::from_utf8_lossy(&buf).to_lowercase(),
                    tcp,
                    Vec::new(),
                );
            }
            buf.extend_from_slice(&b[..n]);
        }
    }

    /// Reads on until `n` more whole pictures came; their test-pattern stamps.
    async fn pictures(tcp: &mut TcpStream, rest: &mut Vec<u8>, n: usize) -> Vec<Option<Stamp>> {
        let head = head(Some("tauri://localhost")).into_bytes();
        let mut b = [0u8; 65536];
        let mut out = Vec::new();
        while out.len() < n {
            assert!(
                rest.starts_with(&head[..head.len().min(rest.len())]),
                "a part's head"
            );
            let end = [&b"\r\n"[..], &head].concat();
            if let Some(i) = rest
                .len()
                .checked_sub(head.len())
                .and_then(|_| rest[head.len()..].windows(end.len()).position(|w| w == end))
            {
                let jpeg = &rest[head.len()..head.len() + i];
                let rgb = zune_jpeg::JpegDecoder::new(jpeg).decode().unwrap();
                let rgba: Vec<u8> = rgb
                    .chunks(3)
                    .flat_map(|p| [p[0], p[1], p[2], 255])
                    .collect();
                out.push(pattern::read_rgba(&rgba, 640, 480));
                rest.drain(..head.len() + i + 2);
                continue;
            }
            let got = timeout(T, tcp.read(&mut b)).await.unwrap().unwrap();
            assert!(got > 0, "the stream ended");
            rest.extend_from_slice(&b[..got]);
        }
        out
    }

    /// The server's `host:port`, and the path of its streams but the tile key.
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

    #[tokio::test]
    async fn a_tile_s_pictures_stream_to_the_window() {
        let frames = UiFrames::new();
        let (channel, told) = crate::frames::test_channel();
        frames.open(channel, true);
        let server = VideoServer::start(frames.clone()).unwrap();
        let runner = {
            let f = frames.clone();
            std::thread::spawn(move || f.run())
        };
        let (authority, path) = address(&server);
        let peer = FrameSource::Remote(confab_protocol::PeerId("p1".into()));

        // The first picture: the window is told the tile has pictures (not sent them).
        frames.frame(&peer, &picture(1));
        let m = told.recv_timeout(T).unwrap();
        assert_eq!(m, [&[3u8, 2][..], b"p1"].concat());

        // The stream: the newest picture at once, then each as it comes, in order.
        let (head, mut tcp, mut rest) = get(&authority, &format!("{path}p1"), &authority).await;
        assert!(head.starts_with("http/1.0 200"), "{head}");
        assert!(
            head.contains("content-type: multipart/x-mixed-replace; boundary=confab-frame"),
            "{head}"
        );
        assert!(
            head.contains("access-control-allow-origin: tauri://localhost"),
            "{head}"
        );
        assert_eq!(
            pictures(&mut tcp, &mut rest, 1).await[0].map(|s| s.frame),
            Some(1)
        );
        for n in 2..=4 {
            frames.frame(&peer, &picture(n));
            assert_eq!(
                pictures(&mut tcp, &mut rest, 1).await[0].map(|s| s.frame),
                Some(n)
            );
        }
        assert_eq!(frames.take_drawn()["p1"], 4, "the pictures the stream took");

        // The tile opened again (the window moved it): the new stream takes over, the old ends.
        let (head, mut tcp2, mut rest2) =
            get(&authority, &format!("{path}p1&n=2"), &authority).await;
        assert!(head.starts_with("http/1.0 200"), "{head}");
        let mut b = [0u8; 1024];
        while timeout(T, tcp.read(&mut b)).await.unwrap().unwrap() > 0 {}
        frames.frame(&peer, &picture(5));
        assert_eq!(
            pictures(&mut tcp2, &mut rest2, 1).await[0].map(|s| s.frame),
            Some(5)
        );

        // Back to the channel (the window's streams failed): pictures come as messages.
        frames.open(Channel::new(move |_| Ok(())), false);
        while timeout(T, tcp2.read(&mut b)).await.unwrap().unwrap() > 0 {}
        let (head, ..) = get(&authority, &format!("{path}p1&n=3"), &authority).await;
        assert!(head.starts_with("http/1.0 409"), "{head}");

        drop(server);
        frames.stop();
        runner.join().unwrap();
    }

    #[tokio::test]
    async fn guessed_token_and_dns_rebinding_get_no_pictures() {
        let frames = UiFrames::new();
        frames.open(Channel::new(|_| Ok(())), true);
        let server = VideoServer::start(frames.clone()).unwrap();
        frames.frame(&FrameSource::Local, &picture(1));
        let (authority, path) = address(&server);
        let guessed = format!("/video?t={:032x}&tile=local", 7u128);
        let (head, ..) = get(&authority, &guessed, &authority).await;
        assert!(head.starts_with("http/1.0 404"), "{head}");
        let (head, ..) = get(&authority, &format!("{path}local"), "evil.example").await;
        assert!(head.starts_with("http/1.0 403"), "{head}");
        let (head, ..) = get(&authority, "/", &authority).await;
        assert!(head.starts_with("http/1.0 404"), "{head}");
        assert_eq!(
            frames.streams_open(),
            0,
            "a refused request opened a stream"
        );
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
        gate().check(&method, &uri.parse().unwrap(), &h)
    }

    const OK: &str = "/video?t=0123456789abcdef0123456789abcdef&tile=";

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
    }

    #[test]
    fn guessed_token() {
        for uri in [
            "/video?tile=local",
            "/video?t=&tile=local",
            "/video?t=0123456789abcdef0123456789abcdee&tile=local",
            "/video?t=0123456789abcdef0123456789abcdef0&tile=local",
        ] {
            assert_eq!(
                check(Method::GET, "127.0.0.1:4000", uri),
                Err(StatusCode::NOT_FOUND),
                "{uri}"
            );
        }
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
        assert_eq!(
            check(
                Method::GET,
                "127.0.0.1:4000",
                "/other?t=0123456789abcdef0123456789abcdef&tile=local"
            ),
            Err(StatusCode::NOT_FOUND)
        );
        assert_eq!(
            check(Method::GET, "127.0.0.1:4000", OK),
            Err(StatusCode::BAD_REQUEST)
        );
        let long = "x".repeat(MAX_TILE + 1);
        assert_eq!(
            check(Method::GET, "127.0.0.1:4000", &format!("{OK}{long}")),
            Err(StatusCode::BAD_REQUEST)
        );
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
