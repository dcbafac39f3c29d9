//! What the engine reads out of remote SDP itself, and the limits it puts on it. Everything here
//! gets text from another person's machine: it never panics and never allocates in proportion
//! to anything but the input's length.

use serde::Serialize;

/// Limits on a remote session description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdpLimits {
    pub max_bytes: usize,
    pub max_audio: usize,
    pub max_video: usize,
    /// Data channels (`m=application`).
    pub max_application: usize,
}

impl Default for SdpLimits {
    fn default() -> Self {
        SdpLimits {
            max_bytes: 64 * 1024,
            max_audio: 2,
            max_video: 2,
            max_application: 1,
        }
    }
}

/// Why a remote description was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SdpError {
    #[error("the session description is too large ({bytes} bytes, at most {max})")]
    TooLarge { bytes: usize, max: usize },
    #[error("the session description has too many {media} sections ({count}, at most {max})")]
    TooManySections {
        media: String,
        count: usize,
        max: usize,
    },
    #[error("the session description has a {media} section, which Confab does not use")]
    UnknownMedia { media: String },
    #[error("the session description has no media sections")]
    NoMedia,
}

/// The media sections of a description, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Sections {
    pub audio: usize,
    pub video: usize,
    pub application: usize,
}

/// Counts the media sections and checks them against the limits.
pub fn check(sdp: &str, limits: &SdpLimits) -> Result<Sections, SdpError> {
    if sdp.len() > limits.max_bytes {
        return Err(SdpError::TooLarge {
            bytes: sdp.len(),
            max: limits.max_bytes,
        });
    }
    let mut s = Sections::default();
    for line in sdp.lines() {
        let Some(m) = line.strip_prefix("m=") else {
            continue;
        };
        let media = m.split(' ').next().unwrap_or("");
        let (count, max) = match media {
            "audio" => (&mut s.audio, limits.max_audio),
            "video" => (&mut s.video, limits.max_video),
            "application" => (&mut s.application, limits.max_application),
            other => {
                return Err(SdpError::UnknownMedia {
                    media: printable(other),
                })
            }
        };
        *count += 1;
        if *count > max {
            return Err(SdpError::TooManySections {
                media: media.to_owned(),
                count: *count,
                max,
            });
        }
    }
    if s == Sections::default() {
        return Err(SdpError::NoMedia);
    }
    Ok(s)
}

/// At most 32 printable ASCII characters of untrusted text, for messages.
pub(crate) fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect()
}

/// The video codecs (upper-case encoding names, e.g. `H264`, `VP8`) offered in the first video
/// section, in the description's order, without repeats and without `rtx`/`red`/`ulpfec`.
pub fn video_codecs(sdp: &str) -> Vec<String> {
    let mut in_video = false;
    let mut seen_video = false;
    let mut out: Vec<String> = Vec::new();
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            if seen_video {
                break;
            }
            in_video = m.starts_with("video");
            seen_video |= in_video;
        } else if in_video {
            if let Some(rest) = line.strip_prefix("a=rtpmap:") {
                let name = rest
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .split('/')
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                let helper = matches!(name.as_str(), "RTX" | "RED" | "ULPFEC" | "FLEXFEC-03");
                if !name.is_empty()
                    && !helper
                    && name.len() <= 32
                    && !out.contains(&name)
                    && out.len() < 32
                {
                    out.push(name);
                }
            }
        }
    }
    out
}

/// A description with the track ids of the media sections in `shares` (mids) marked as a
/// shared screen, the way Confab's own track ids are (`…-share`): Janus's offers (it names
/// every track after its mid), a browser's descriptions (it names tracks its own way).
pub fn mark_shares(sdp: &str, shares: &[&str]) -> String {
    if shares.is_empty() {
        return sdp.to_owned();
    }
    let mut out = String::with_capacity(sdp.len() + 16 * shares.len());
    let mut sharing = false;
    for line in sdp.split_inclusive('\n') {
        let text = line.trim_end_matches(['\r', '\n']);
        if text.starts_with("m=") {
            sharing = false;
        }
        if let Some(mid) = text.strip_prefix("a=mid:") {
            sharing = shares.contains(&mid);
        }
        // The track id ends `a=msid:STREAM TRACK`, and `a=ssrc:N msid:STREAM TRACK` (a
        // browser's, which webrtc reads over the first).
        let names_track = match (text.strip_prefix("a=msid:"), text.strip_prefix("a=ssrc:")) {
            (Some(msid), _) => msid.split_whitespace().count() == 2,
            (_, Some(ssrc)) => {
                let parts: Vec<&str> = ssrc.split_whitespace().collect();
                parts.len() == 3 && parts[1].starts_with("msid:")
            }
            _ => false,
        };
        if sharing && names_track {
            out.push_str(text);
            out.push_str("-share");
            out.push_str(&line[text.len()..]);
        } else {
            out.push_str(line);
        }
    }
    out
}

/// The mid of a mesh description's shared screen: its second video section (docs/protocol.md,
/// "Media": audio, then the camera, then the screen, in every description a peer makes).
pub fn mesh_share_mid(sdp: &str) -> Option<&str> {
    let mut videos = 0;
    for section in sdp.split("\nm=").skip(1) {
        if section.starts_with("video") {
            videos += 1;
            if videos == 2 {
                return section
                    .lines()
                    .find_map(|l| l.trim_end().strip_prefix("a=mid:"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
                         m=video 9 UDP/TLS/RTP/SAVPF 96 102 103\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\na=rtpmap:103 rtx/90000\r\n";

    #[test]
    fn codecs_offered_in_the_video_section() {
        assert_eq!(video_codecs(OFFER), vec!["VP8", "H264"]);
        assert!(video_codecs("m=video 9 X 100\r\na=rtpmap:100 AV1/90000\r\n") == vec!["AV1"]);
        assert!(video_codecs("garbage").is_empty());
    }

    #[test]
    fn sections_are_counted_and_limited() {
        assert_eq!(
            check(OFFER, &SdpLimits::default()),
            Ok(Sections {
                audio: 1,
                video: 1,
                application: 0
            })
        );
        let many_video = format!("v=0\r\n{}", "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n".repeat(3));
        assert!(matches!(
            check(&many_video, &SdpLimits::default()),
            Err(SdpError::TooManySections {
                count: 3,
                max: 2,
                ..
            })
        ));
        let many_audio = format!(
            "v=0\r\n{}",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n".repeat(100)
        );
        assert!(check(&many_audio, &SdpLimits::default()).is_err());
        assert!(matches!(
            check("v=0\r\nm=text 9 X 0\r\n", &SdpLimits::default()),
            Err(SdpError::UnknownMedia { .. })
        ));
        assert_eq!(
            check("v=0\r\n", &SdpLimits::default()),
            Err(SdpError::NoMedia)
        );
        let huge = "a".repeat(70_000);
        assert!(matches!(
            check(&huge, &SdpLimits::default()),
            Err(SdpError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_browsers_second_video_section_is_its_screen() {
        // Chrome's offer: audio, camera, chat, then the screen's transceiver; its track ids
        // are its own.
        let chrome = "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\na=msid:s a1\r\n\
                      m=video 9 X 96\r\na=mid:1\r\na=msid:s v1\r\n\
                      m=application 9 X webrtc-datachannel\r\na=mid:2\r\n\
                      m=video 9 X 96\r\na=mid:3\r\na=msid:- v2\r\n\
                      a=ssrc:7 cname:x\r\na=ssrc:7 msid:- v2\r\n";
        assert_eq!(mesh_share_mid(chrome), Some("3"));
        let marked = mark_shares(chrome, &["3"]);
        assert!(marked.contains("a=msid:- v2-share\r\n"), "{marked}");
        assert!(marked.contains("a=ssrc:7 msid:- v2-share\r\n"), "{marked}");
        assert!(marked.contains("a=ssrc:7 cname:x\r\n"), "{marked}");
        assert!(marked.contains("a=msid:s v1\r\n"));
        // A description with one video section has no screen.
        let one = "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\nm=video 9 X 96\r\na=mid:1\r\n";
        assert_eq!(mesh_share_mid(one), None);
        assert_eq!(mesh_share_mid(""), None);
    }
}
