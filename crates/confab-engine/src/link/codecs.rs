//! Which video codecs a link registers, offers and sends. Only the codecs this build has
//! (`confab_media::video::AVAILABLE`: H.264 everywhere, VP8 where libvpx is built in, so not on
//! Windows) are ever registered or chosen: a build without VP8 never offers or accepts it, and
//! a preference for VP8 there falls back to H.264. Pure functions of the build's list, so the
//! tests cover a build without VP8 on any system.

use confab_media::video::VideoCodec;

/// The codec we send when we offer: the preferred one if this build has it, else the first
/// built one (H.264).
pub(super) fn sending(preferred: VideoCodec, available: &[VideoCodec]) -> VideoCodec {
    if available.contains(&preferred) {
        preferred
    } else {
        available.first().copied().unwrap_or(VideoCodec::H264)
    }
}

/// The codecs registered with a peer connection, in order of preference: what we send first,
/// then the other built ones.
pub(super) fn registered(preferred: VideoCodec, available: &[VideoCodec]) -> Vec<VideoCodec> {
    let first = sending(preferred, available);
    std::iter::once(first)
        .chain(available.iter().copied().filter(|c| *c != first))
        .collect()
}

/// The codec to send when answering an offer that lists `offered` (encoding names, in the
/// offer's order): ours if offered, else the offer's first one this build has.
pub(super) fn answering(
    preferred: VideoCodec,
    offered: &[String],
    available: &[VideoCodec],
) -> VideoCodec {
    let usable: Vec<VideoCodec> = offered
        .iter()
        .filter_map(|n| n.parse::<VideoCodec>().ok())
        .filter(|c| available.contains(c))
        .collect();
    let ours = sending(preferred, available);
    if usable.contains(&ours) {
        ours
    } else {
        usable.first().copied().unwrap_or(ours)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_media::video::VideoCodec::{Vp8, H264};

    const WITH_VP8: &[VideoCodec] = &[H264, Vp8];
    const WITHOUT_VP8: &[VideoCodec] = &[H264];

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn with_vp8_the_preference_leads() {
        assert_eq!(registered(Vp8, WITH_VP8), vec![Vp8, H264]);
        assert_eq!(registered(H264, WITH_VP8), vec![H264, Vp8]);
        assert_eq!(sending(Vp8, WITH_VP8), Vp8);
        assert_eq!(answering(H264, &names(&["VP8", "H264"]), WITH_VP8), H264);
        assert_eq!(answering(Vp8, &names(&["VP8", "H264"]), WITH_VP8), Vp8);
        // An offer without our codec: its first one we know.
        assert_eq!(answering(H264, &names(&["AV1", "VP8"]), WITH_VP8), Vp8);
    }

    #[test]
    fn without_vp8_it_is_never_offered_sent_or_answered() {
        // A build without libvpx (Windows) that was asked to prefer VP8.
        assert_eq!(registered(Vp8, WITHOUT_VP8), vec![H264]);
        assert_eq!(sending(Vp8, WITHOUT_VP8), H264);
        // A browser lists VP8 first: we answer with H.264, which it also offered.
        assert_eq!(answering(Vp8, &names(&["VP8", "H264"]), WITHOUT_VP8), H264);
        assert_eq!(answering(H264, &names(&["VP8", "H264"]), WITHOUT_VP8), H264);
        // An offer with VP8 only: still nothing but H.264 (the negotiation then has no video
        // codec in common, which webrtc reports; we never start an encoder we lack).
        assert_eq!(answering(H264, &names(&["VP8"]), WITHOUT_VP8), H264);
    }

    #[test]
    fn this_build_registers_only_what_it_has() {
        let built = confab_media::video::AVAILABLE;
        for preferred in [H264, Vp8] {
            let r = registered(preferred, built);
            assert!(r.iter().all(|c| built.contains(c)), "{r:?}");
            assert_eq!(r.len(), built.len(), "{r:?}");
        }
    }
}
