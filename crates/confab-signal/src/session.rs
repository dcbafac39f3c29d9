//! One WebSocket connection: this task reads, a writer task it owns writes.

use crate::hub::{Frame, Hub, Outbox, StopReason};
use crate::SignalConfig;
use futures_util::{SinkExt, StreamExt};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

/// WebSocket limits derived from the server configuration. Frames up to twice the protocol's
/// message limit are read and answered with `too-large`; beyond that the connection is closed
/// (1009), so tungstenite's 64 MiB default never stands.
pub fn ws_config(config: &SignalConfig) -> WebSocketConfig {
    let hard = config.limits.max_message_bytes.saturating_mul(2).max(1024);
    // Small buffers: tungstenite's 128 KiB read and write buffers would cost 256 KiB per
    // connection, 2.5 GiB for 10,000 idle clients. Signaling messages are small.
    let write_buffer = 8 * 1024;
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(write_buffer)
        .max_message_size(Some(hard))
        .max_frame_size(Some(hard))
        .max_write_buffer_size(write_buffer + hard.saturating_mul(2))
}

pub async fn run<S>(
    ws: WebSocketStream<S>,
    ip: IpAddr,
    hub: Arc<Hub>,
    config: Arc<SignalConfig>,
    cancel: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (tx, rx) = mpsc::channel(config.outbound_queue);
    let queue_reserve = crate::hub::QueueLimits {
        messages: config.outbound_queue,
        bytes: config.outbound_queue_bytes,
    }
    .reserved_messages();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<StopReason>();
    let queued = Arc::new(AtomicUsize::new(0));
    let outbox = Outbox {
        tx: tx.clone(),
        queued: queued.clone(),
    };
    let conn = match hub.connect(ip, outbox, stop_tx) {
        Ok(conn) => conn,
        Err(refusal) => {
            let _ = timeout(config.write_timeout, async {
                sink.send(Message::Text(refusal.text.into())).await?;
                sink.send(close_message(refusal.code, refusal.reason)).await
            })
            .await;
            return;
        }
    };
    tracing::debug!(conn, "connection open");
    let mut writer = tokio::spawn(write_loop(sink, rx, queued, config.write_timeout));
    let mut writer_done = false;

    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + config.ping_interval,
        config.ping_interval,
    );
    let mut last_seen = Instant::now();
    let close: Option<StopReason> = loop {
        tokio::select! {
            biased;
            reason = &mut stop_rx => {
                // The hub has already forgotten this connection.
                break Some(reason.unwrap_or((1000, String::new())));
            }
            _ = cancel.cancelled() => {
                hub.disconnect(conn);
                break Some((1001, "server shutting down".into()));
            }
            _ = &mut writer => {
                // A write took longer than the write timeout: the client does not read.
                writer_done = true;
                tracing::info!(conn, "disconnecting a client that does not read its messages");
                hub.disconnect(conn);
                break None;
            }
            msg = stream.next() => {
                last_seen = Instant::now();
                match msg {
                    Some(Ok(Message::Text(text))) => hub.receive(conn, text.as_str()),
                    Some(Ok(Message::Binary(_))) => hub.receive_binary(conn),
                    Some(Ok(Message::Close(_))) | None => {
                        hub.disconnect(conn);
                        break None;
                    }
                    Some(Ok(_)) => {} // ping (answered by tungstenite), pong
                    Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, .. }))) => {
                        tracing::info!(conn, size, "message too large to read; closing");
                        hub.reject_unreadable(conn);
                    }
                    Some(Err(e)) => {
                        tracing::debug!(conn, error = %e, "connection failed");
                        hub.disconnect(conn);
                        break None;
                    }
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > config.idle_timeout {
                    hub.disconnect(conn);
                    break Some((1001, "idle timeout: no pong".into()));
                }
                // A ping never takes the slots kept for room updates.
                if tx.capacity() > queue_reserve {
                    let _ = tx.try_send(Frame::Ping);
                }
            }
        }
    };
    if let Some((code, reason)) = close {
        tracing::debug!(conn, code, %reason, "closing connection");
        let _ = timeout(config.write_timeout, tx.send(Frame::Close(code, reason))).await;
    }
    drop(tx);
    if !writer_done
        && timeout(config.write_timeout + Duration::from_secs(1), &mut writer)
            .await
            .is_err()
    {
        writer.abort();
        let _ = writer.await;
    }
    tracing::debug!(conn, "connection closed");
}

fn close_message(code: u16, reason: String) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
}

async fn write_loop<S>(
    mut sink: futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    mut rx: mpsc::Receiver<Frame>,
    queued: Arc<AtomicUsize>,
    write_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(frame) = rx.recv().await {
        let mut written = 0;
        let (msg, last) = match frame {
            Frame::Text(text) => {
                written = text.len();
                (Message::Text(text.into()), false)
            }
            Frame::Ping => (Message::Ping(Default::default()), false),
            Frame::Close(code, reason) => (close_message(code, reason), true),
        };
        // Feed without flushing while more is queued: one syscall for a burst.
        let res = if last || rx.is_empty() {
            timeout(write_timeout, sink.send(msg)).await
        } else {
            timeout(write_timeout, sink.feed(msg)).await
        };
        queued.fetch_sub(written, Ordering::Relaxed);
        if !matches!(res, Ok(Ok(()))) || last {
            break;
        }
    }
    let _ = timeout(Duration::from_secs(1), sink.close()).await;
}
