//! Which video codecs a build has: H.264 always; VP8 exactly where libvpx is built in (the `vp8`
//! feature, on by default, and never on Windows). A build without VP8 says so in words.

use confab_media::video::{decoder, encoder, VideoCodec, AVAILABLE};

#[test]
fn h264_is_always_built_and_listed_first() {
    assert_eq!(AVAILABLE.first(), Some(&VideoCodec::H264));
    let mut enc = encoder(VideoCodec::H264, 500_000, 30.0).unwrap();
    assert_eq!(enc.codec(), VideoCodec::H264);
    enc.set_bitrate(300_000);
    assert!(decoder(VideoCodec::H264).is_ok());
}

#[test]
fn vp8_is_built_exactly_where_libvpx_is() {
    let built = cfg!(all(feature = "vp8", not(windows)));
    assert_eq!(AVAILABLE.contains(&VideoCodec::Vp8), built, "{AVAILABLE:?}");
    match (
        encoder(VideoCodec::Vp8, 500_000, 30.0),
        decoder(VideoCodec::Vp8),
    ) {
        (Ok(enc), Ok(_)) => {
            assert!(built, "VP8 works in a build that should not have it");
            assert_eq!(enc.codec(), VideoCodec::Vp8);
        }
        (Err(e), Err(d)) => {
            assert!(
                !built,
                "VP8 is missing from a build that should have it: {e}"
            );
            for err in [e.to_string(), d.to_string()] {
                assert!(
                    err.contains("VP8 is not built") && err.contains("libvpx"),
                    "{err}"
                );
            }
        }
        (e, d) => panic!(
            "encoder and decoder disagree: encoder ok {}, decoder ok {}",
            e.is_ok(),
            d.is_ok()
        ),
    }
}
