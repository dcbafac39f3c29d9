//! Reads the peer connection's counters into a [`NetSample`] once a second: the selected
//! candidate pair (its types and its STUN round-trip time), bytes both ways, the loss we
//! count on the peer's streams, and the loss the peer's reception reports count on ours. `stats::NetMeter` turns the readings into
//! rates and loss over a window.

use super::build::PeerReports;
use crate::stats::NetSample;
use rtc::statistics::stats::ice_candidate::RTCIceCandidateStats;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use webrtc::peer_connection::{PeerConnection, RTCStatsReport, RTCStatsReportEntry, StatsSelector};

/// The report's entry for a candidate: the pair names it by the ICE agent's id, the report
/// by `RTCLocalIceCandidate_<id>` / `RTCRemoteIceCandidate_<id>`.
fn candidate<'a>(
    report: &'a RTCStatsReport,
    local: bool,
    id: &str,
) -> Option<&'a RTCIceCandidateStats> {
    let prefix = if local {
        "RTCLocalIceCandidate_"
    } else {
        "RTCRemoteIceCandidate_"
    };
    let entry = report
        .get(&format!("{prefix}{id}"))
        .or_else(|| report.get(id))?;
    match entry {
        RTCStatsReportEntry::LocalCandidate(c) | RTCStatsReportEntry::RemoteCandidate(c) => Some(c),
        _ => None,
    }
}

fn address(c: Option<&RTCIceCandidateStats>) -> Option<IpAddr> {
    c?.address.as_deref()?.parse().ok()
}

pub(super) fn read(report: &RTCStatsReport) -> NetSample {
    let mut s = NetSample::default();
    if let Some(t) = report.transport() {
        s.bytes_sent = t.bytes_sent;
        s.bytes_received = t.bytes_received;
        let pair = report
            .get(&t.selected_candidate_pair_id)
            .and_then(|e| match e {
                RTCStatsReportEntry::IceCandidatePair(p) => Some(p),
                _ => None,
            });
        if let Some(p) = pair {
            let rtt = p.current_round_trip_time;
            if rtt.is_finite() && rtt > 0.0 && rtt < 60.0 {
                s.rtt = Some(Duration::from_secs_f64(rtt));
            }
            let local = candidate(report, true, &p.local_candidate_id);
            let remote = candidate(report, false, &p.remote_candidate_id);
            s.local_candidate = local.map(|c| c.candidate_type.to_string());
            // A peer-reflexive remote candidate is learnt from a check, never announced, so
            // the report has no entry for it.
            s.remote_candidate = remote
                .map(|c| c.candidate_type.to_string())
                .or_else(|| Some("prflx".to_owned()));
            s.path_far = if s.local_candidate.as_deref() == Some("relay") {
                // Our relay address lives on the TURN server: the way to it is ours.
                address(local)
            } else {
                address(remote)
            };
        }
    }
    for e in report.iter() {
        if let RTCStatsReportEntry::InboundRtp(i) = e {
            let r = &i.received_rtp_stream_stats;
            s.inbound.push((
                r.rtp_stream_stats.ssrc,
                r.packets_received,
                r.packets_lost.max(0) as u64,
            ));
        }
    }
    s
}

/// A reading of the connection's counters, with what the peer's reception reports said about
/// our streams (webrtc 0.21 leaves its remote-inbound stats at zero: `build::PeerReports`).
pub(super) async fn sample(pc: &dyn PeerConnection, reports: &PeerReports) -> NetSample {
    let mut s = read(&pc.get_stats(Instant::now(), StatsSelector::None).await);
    let m = reports.lock().unwrap_or_else(|p| p.into_inner());
    s.outbound = m
        .iter()
        .map(|(&ssrc, &(highest, lost))| (ssrc, highest, lost))
        .collect();
    s.outbound.sort_unstable();
    s
}
