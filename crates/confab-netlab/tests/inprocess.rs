//! The in-process lab under real webrtc peer connections on 127.0.0.1: ICE, DTLS and SRTP
//! run over real sockets wrapped by a `NetLab` runtime, and what the receiving peer gets is
//! measured at its RTP track (not from the lab's own counters).

use anyhow::{ensure, Context, Result};
use confab_netlab::harness::{connect, record_track, Arrival, PeerOptions, Received, TestPeer};
use confab_netlab::{Impairment, NetLab};
use std::time::{Duration, Instant};
use webrtc::peer_connection::RTCPeerConnectionState;

/// A sender (offerer) and a receiver (answerer) on `lab`, connected, with the receiver
/// recording the sender's RTP track once the first packet has come through.
struct Call {
    tx: TestPeer,
    rx: TestPeer,
    sender: confab_netlab::harness::RtpSender,
    received: Received,
    reader: tokio::task::JoinHandle<()>,
}

async fn call(lab: &NetLab, opts: PeerOptions) -> Result<Call> {
    let mut tx = TestPeer::new(PeerOptions {
        runtime: Some(lab.runtime()),
        ..opts.clone()
    })
    .await?;
    let mut rx = TestPeer::new(PeerOptions {
        runtime: Some(lab.runtime()),
        ..opts
    })
    .await?;
    let mut sender = tx.add_rtp_sender(0x0c0f_fab1).await?;
    // A deadline, not a wait: under loss on a busy machine DTLS may need a few retransmits.
    connect(&mut tx, &mut rx, Duration::from_secs(30))
        .await
        .context("connect over the lab")?;
    // The track appears at the receiver with its first packet: keep sending until it does.
    let deadline = Instant::now() + Duration::from_secs(5);
    let track = loop {
        sender.send(100).await?;
        if let Ok(t) = rx.tracks.try_recv() {
            break t;
        }
        ensure!(Instant::now() < deadline, "no remote track within 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let (received, reader) = record_track(track);
    Ok(Call {
        tx,
        rx,
        sender,
        received,
        reader,
    })
}

impl Call {
    async fn close(self) {
        self.tx.close().await;
        self.rx.close().await;
        self.reader.abort();
        let _ = self.reader.await;
    }
}

/// Sends `count` packets of `len` bytes, `per_tick` every 10 ms; returns the first and the
/// one-past-last sequence numbers.
async fn send_paced(
    sender: &mut confab_netlab::harness::RtpSender,
    count: usize,
    len: usize,
    per_tick: usize,
) -> Result<(u16, u16)> {
    let first = sender.next_seq();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut sent = 0;
    while sent < count {
        tick.tick().await;
        for _ in 0..per_tick.min(count - sent) {
            sender.send(len).await?;
            sent += 1;
        }
    }
    Ok((first, sender.next_seq()))
}

fn in_range(a: &Arrival, first: u16, end: u16) -> bool {
    a.seq.wrapping_sub(first) < end.wrapping_sub(first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_percent_loss_is_measured_at_the_receiver_and_the_call_connects() -> Result<()> {
    let lab = NetLab::new(Impairment {
        loss: 0.10,
        ..Impairment::seeded(10)
    })?;
    // Connecting at all means ICE, DTLS and SCTP-less SRTP set-up survived 10 % loss.
    let mut c = call(&lab, PeerOptions::default()).await?;
    let n = 1500;
    let (first, end) = send_paced(&mut c.sender, n, 200, 5).await?;
    // Wait until the last packets had their chance (the lab adds no delay here).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got: std::collections::HashSet<u16> = c
        .received
        .snapshot()
        .iter()
        .filter(|a| in_range(a, first, end))
        .map(|a| a.seq)
        .collect();
    let loss = 1.0 - got.len() as f64 / n as f64;
    eprintln!(
        "10 % loss asked, {:.1} % lost at the receiver",
        loss * 100.0
    );
    // Binomial: σ ≈ 0.8 % at n = 1500.
    assert!(
        (0.07..=0.13).contains(&loss),
        "asked 10 % loss, the receiver lost {:.1} %",
        loss * 100.0
    );
    let counters = lab.counters();
    assert!(
        counters.dropped_loss > 0 && counters.dropped_queue == 0,
        "{counters:?}"
    );
    assert_eq!(lab.sockets_wrapped(), 2, "one socket per peer on 127.0.0.1");
    c.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_megabit_cap_holds_throughput_at_the_receiver() -> Result<()> {
    let lab = NetLab::new(Impairment {
        rate_bps: Some(1_000_000),
        queue_ms: 100,
        ..Impairment::seeded(2)
    })?;
    let mut c = call(&lab, PeerOptions::default()).await?;
    // 3 × 1200 B every 10 ms: 2.9 Mbit/s of payload for 3 s.
    let (first, end) = send_paced(&mut c.sender, 900, 1200, 3).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got: Vec<Arrival> = c
        .received
        .snapshot()
        .into_iter()
        .filter(|a| in_range(a, first, end))
        .collect();
    ensure!(got.len() > 100, "only {} packets came through", got.len());
    // Measure after the first half second (the queue fills), to the last arrival.
    let t0 = got[0].at + Duration::from_millis(500);
    let window: Vec<&Arrival> = got.iter().filter(|a| a.at >= t0).collect();
    let span = window.last().context("arrivals")?.at - window[0].at;
    let bits: usize = window[1..].iter().map(|a| a.payload_len * 8).sum();
    let rate = bits as f64 / span.as_secs_f64();
    eprintln!("1 Mbit/s cap: {rate:.0} bit/s of RTP payload arrived");
    assert!(
        rate <= 1_000_000.0,
        "payload arrived at {rate:.0} bit/s through a 1 Mbit/s cap"
    );
    // And the link is used, not broken: close to the cap (payload is ~97 % of the bytes).
    assert!(rate >= 850_000.0, "only {rate:.0} bit/s arrived");
    let counters = lab.counters();
    assert!(counters.dropped_queue > 300, "tail drops: {counters:?}");
    c.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackout_disconnects_and_the_call_comes_back_after_it() -> Result<()> {
    let lab = NetLab::new(Impairment::seeded(3))?;
    let opts = PeerOptions {
        disconnected_timeout: Duration::from_millis(1000),
        failed_timeout: Duration::from_secs(30),
        keepalive: Duration::from_millis(200),
        ..Default::default()
    };
    let mut c = call(&lab, opts).await?;
    let Call {
        tx,
        rx,
        sender,
        received,
        ..
    } = &mut c;
    let stream = async {
        loop {
            sender.send(300).await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        #[allow(unreachable_code)]
        Ok::<(), anyhow::Error>(())
    };
    let scenario = async {
        lab.set_blackout(true);
        let started = Instant::now();
        rx.wait_state(RTCPeerConnectionState::Disconnected, Duration::from_secs(5))
            .await
            .context("receiver notices the blackout")?;
        tx.wait_state(RTCPeerConnectionState::Disconnected, Duration::from_secs(5))
            .await
            .context("sender notices the blackout")?;
        let noticed = started.elapsed();
        let during = received.len();
        tokio::time::sleep(Duration::from_millis(500)).await;
        ensure!(
            received.len() == during,
            "packets arrived during the blackout"
        );
        lab.set_blackout(false);
        let lifted = Instant::now();
        rx.wait_state(RTCPeerConnectionState::Connected, Duration::from_secs(8))
            .await
            .context("receiver back after the blackout")?;
        tx.wait_state(RTCPeerConnectionState::Connected, Duration::from_secs(8))
            .await
            .context("sender back after the blackout")?;
        received
            .wait_for("media after the blackout", Duration::from_secs(3), |r| {
                r.len() > during + 10
            })
            .await?;
        eprintln!(
            "blackout noticed after {noticed:?}, connected again {:?} after it ended",
            lifted.elapsed()
        );
        Ok::<(), anyhow::Error>(())
    };
    tokio::select! {
        r = stream => r?,
        r = scenario => r?,
    }
    assert!(lab.counters().dropped_blackout > 10);
    c.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_shows_as_twice_the_delay_in_the_candidate_pair_rtt() -> Result<()> {
    let lab = NetLab::new(Impairment::seeded(4))?;
    let opts = PeerOptions {
        keepalive: Duration::from_millis(200),
        ..Default::default()
    };
    let mut a = TestPeer::new(PeerOptions {
        runtime: Some(lab.runtime()),
        ..opts.clone()
    })
    .await?;
    let mut b = TestPeer::new(PeerOptions {
        runtime: Some(lab.runtime()),
        ..opts
    })
    .await?;
    // A data channel gives the offer something to negotiate.
    let _dc = a.pc.create_data_channel("rtt", None).await?;
    connect(&mut a, &mut b, Duration::from_secs(10)).await?;

    async fn rtt_when(
        peer: &TestPeer,
        what: &str,
        ok: impl Fn(Duration) -> bool,
    ) -> Result<Duration> {
        let deadline = Instant::now() + Duration::from_secs(6);
        loop {
            if let Some(rtt) = peer.selected_pair().await.and_then(|p| p.rtt) {
                if ok(rtt) {
                    return Ok(rtt);
                }
            }
            ensure!(Instant::now() < deadline, "RTT never {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let clean = rtt_when(&a, "measured", |_| true).await?;
    assert!(clean < Duration::from_millis(30), "clean RTT {clean:?}");

    lab.update(|c| c.delay_ms = 100)?;
    let delayed = rtt_when(&a, "rose past 150 ms", |r| r > Duration::from_millis(150)).await?;
    // Give it another keepalive round and read it again: steady, not a transient.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let steady = a
        .selected_pair()
        .await
        .and_then(|p| p.rtt)
        .context("RTT after the delay")?;
    for rtt in [delayed, steady] {
        assert!(
            (Duration::from_millis(195)..=Duration::from_millis(260)).contains(&rtt),
            "100 ms each way gave an RTT of {rtt:?}"
        );
    }
    let b_rtt = rtt_when(&b, "rose on the other side", |r| {
        r > Duration::from_millis(150)
    })
    .await?;
    assert!(b_rtt <= Duration::from_millis(260), "{b_rtt:?}");
    eprintln!("RTT clean {clean:?}, with 100 ms each way {delayed:?} then {steady:?}; other side {b_rtt:?}");
    a.close().await;
    b.close().await;
    Ok(())
}
