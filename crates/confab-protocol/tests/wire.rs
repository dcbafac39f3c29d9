//! Golden JSON for every message, decode errors, and property round trips.

use confab_protocol::call::{CallSignal, IceCandidate, SdpType, SessionDescription, SfuLayer};
use confab_protocol::{
    ClientMessage, ErrorCode, PeerId, PeerInfo, ServerMessage, SfuInfo, SignalData,
};
use proptest::prelude::*;

fn data(json: &str) -> SignalData {
    SignalData::from_raw(serde_json::value::RawValue::from_string(json.into()).unwrap()).unwrap()
}

fn golden_client(msg: ClientMessage, json: &str) {
    assert_eq!(msg.encode(), json, "encoding of {msg:?}");
    assert_eq!(
        ClientMessage::decode(json).unwrap(),
        msg,
        "decoding of {json}"
    );
}

fn golden_server(msg: ServerMessage, json: &str) {
    assert_eq!(msg.encode(), json, "encoding of {msg:?}");
    assert_eq!(
        ServerMessage::decode(json).unwrap(),
        msg,
        "decoding of {json}"
    );
}

#[test]
fn golden_client_messages() {
    golden_client(
        ClientMessage::Join {
            room: "team".into(),
            name: "Ada".into(),
            password: None,
            rejoin: None,
        },
        r#"{"type":"join","room":"team","name":"Ada"}"#,
    );
    golden_client(
        ClientMessage::Join {
            room: "team".into(),
            name: "Ada".into(),
            password: None,
            rejoin: Some("0123456789abcdef0123456789abcdef".into()),
        },
        r#"{"type":"join","room":"team","name":"Ada","rejoin":"0123456789abcdef0123456789abcdef"}"#,
    );
    golden_client(
        ClientMessage::Join {
            room: "team".into(),
            name: "Ada".into(),
            password: Some("s3cret".into()),
            rejoin: None,
        },
        r#"{"type":"join","room":"team","name":"Ada","password":"s3cret"}"#,
    );
    golden_client(
        ClientMessage::Signal {
            to: PeerId::from("b1"),
            data: data(r#"{"kind":"ring"}"#),
        },
        r#"{"type":"signal","to":"b1","data":{"kind":"ring"}}"#,
    );
    golden_client(ClientMessage::Leave, r#"{"type":"leave"}"#);
    golden_client(ClientMessage::Ping, r#"{"type":"ping"}"#);
}

#[test]
fn golden_server_messages() {
    golden_server(
        ServerMessage::Welcome {
            id: PeerId::from("a1"),
            room: "team".into(),
            peers: vec![PeerInfo {
                id: PeerId::from("b1"),
                name: "Bob".into(),
            }],
            sfu: None,
            rejoin: None,
        },
        r#"{"type":"welcome","id":"a1","room":"team","peers":[{"id":"b1","name":"Bob"}]}"#,
    );
    golden_server(
        ServerMessage::Welcome {
            id: PeerId::from("a1"),
            room: "team".into(),
            peers: vec![],
            sfu: None,
            rejoin: Some("fedcba9876543210fedcba9876543210".into()),
        },
        r#"{"type":"welcome","id":"a1","room":"team","peers":[],"rejoin":"fedcba9876543210fedcba9876543210"}"#,
    );
    golden_server(
        ServerMessage::Welcome {
            id: PeerId::from("a1"),
            room: "big".into(),
            peers: vec![],
            sfu: Some(SfuInfo {
                url: "janus+ws://sfu.example:8188".into(),
                room: 42,
                pin: "abc123".into(),
                token: Some("t0k3n".into()),
                above: 0,
            }),
            rejoin: None,
        },
        r#"{"type":"welcome","id":"a1","room":"big","peers":[],"sfu":{"url":"janus+ws://sfu.example:8188","room":42,"pin":"abc123","token":"t0k3n","above":0}}"#,
    );
    golden_server(
        ServerMessage::PeerJoined {
            id: PeerId::from("b1"),
            name: "Bob".into(),
        },
        r#"{"type":"peer-joined","id":"b1","name":"Bob"}"#,
    );
    golden_server(
        ServerMessage::PeerLeft {
            id: PeerId::from("b1"),
        },
        r#"{"type":"peer-left","id":"b1"}"#,
    );
    golden_server(
        ServerMessage::Signal {
            from: PeerId::from("a1"),
            data: data(r#"{"kind":"accept"}"#),
        },
        r#"{"type":"signal","from":"a1","data":{"kind":"accept"}}"#,
    );
    golden_server(ServerMessage::Pong, r#"{"type":"pong"}"#);
    for code in ErrorCode::ALL {
        golden_server(
            ServerMessage::error(code, "words"),
            &format!(r#"{{"type":"error","code":"{code}","message":"words"}}"#),
        );
    }
}

#[test]
fn golden_call_signals() {
    let cases = [
        (
            CallSignal::State {
                in_call: true,
                audio: false,
                video: true,
                session: None,
            },
            r#"{"kind":"state","in_call":true,"audio":false,"video":true}"#,
        ),
        (
            CallSignal::State {
                in_call: false,
                audio: true,
                video: true,
                session: Some("s1".into()),
            },
            r#"{"kind":"state","in_call":false,"audio":true,"video":true,"session":"s1"}"#,
        ),
        (CallSignal::Ring { nonce: None }, r#"{"kind":"ring"}"#),
        (
            CallSignal::Ring {
                nonce: Some("n1".into()),
            },
            r#"{"kind":"ring","nonce":"n1"}"#,
        ),
        (CallSignal::Accept { nonce: None }, r#"{"kind":"accept"}"#),
        (
            CallSignal::Admit { peer: "p1".into() },
            r#"{"kind":"admit","peer":"p1"}"#,
        ),
        (
            CallSignal::Resume {
                proofs: vec!["ab".into()],
            },
            r#"{"kind":"resume","proofs":["ab"]}"#,
        ),
        (
            CallSignal::Decline { reason: None },
            r#"{"kind":"decline"}"#,
        ),
        (
            CallSignal::Decline {
                reason: Some("busy".into()),
            },
            r#"{"kind":"decline","reason":"busy"}"#,
        ),
        (CallSignal::HangUp, r#"{"kind":"hang-up"}"#),
        (
            CallSignal::Description {
                description: SessionDescription {
                    kind: SdpType::Offer,
                    sdp: "v=0\r\n".into(),
                },
            },
            r#"{"kind":"description","description":{"type":"offer","sdp":"v=0\r\n"}}"#,
        ),
        (
            CallSignal::Candidate {
                candidate: IceCandidate {
                    candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host".into(),
                    sdp_mid: Some("0".into()),
                    sdp_m_line_index: Some(0),
                    username_fragment: None,
                },
            },
            r#"{"kind":"candidate","candidate":{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}}"#,
        ),
        (
            CallSignal::SfuOffer {
                sub: 4242,
                sdp: "v=0\r\n".into(),
                shares: vec!["2".into()],
            },
            r#"{"kind":"sfu-offer","sub":4242,"sdp":"v=0\r\n","shares":["2"]}"#,
        ),
        (
            CallSignal::SfuOffer {
                sub: 1,
                sdp: "v=0\r\n".into(),
                shares: vec![],
            },
            r#"{"kind":"sfu-offer","sub":1,"sdp":"v=0\r\n"}"#,
        ),
        (
            CallSignal::SfuAnswer {
                sub: 4242,
                sdp: "v=0\r\n".into(),
            },
            r#"{"kind":"sfu-answer","sub":4242,"sdp":"v=0\r\n"}"#,
        ),
        (
            CallSignal::SfuCandidate {
                sub: 4242,
                candidate: IceCandidate {
                    candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host".into(),
                    sdp_mid: Some("0".into()),
                    sdp_m_line_index: Some(0),
                    username_fragment: None,
                },
            },
            r#"{"kind":"sfu-candidate","sub":4242,"candidate":{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}}"#,
        ),
        (
            CallSignal::SfuLayer {
                sub: 4242,
                layer: SfuLayer::Half,
            },
            r#"{"kind":"sfu-layer","sub":4242,"layer":"half"}"#,
        ),
    ];
    for (msg, json) in cases {
        let d = msg.to_data();
        assert_eq!(d.as_str(), json);
        assert_eq!(CallSignal::from_data(&data(json)).unwrap(), msg);
    }
}

#[test]
fn data_survives_relay_byte_for_byte() {
    let raw = r#"{"kind":"x","nested":{"a":[1,2.5e3,"\u00e9\n"],"b":null},  "sp" : true }"#;
    let msg =
        ClientMessage::decode(&format!(r#"{{"type":"signal","to":"p","data":{raw}}}"#)).unwrap();
    let ClientMessage::Signal { data, .. } = msg else {
        panic!("not a signal")
    };
    assert_eq!(data.as_str(), raw);
    let relayed = ServerMessage::Signal {
        from: PeerId::from("q"),
        data,
    }
    .encode();
    assert_eq!(
        relayed,
        format!(r#"{{"type":"signal","from":"q","data":{raw}}}"#)
    );
}

#[test]
fn decode_errors_are_precise() {
    let cases = [
        ("not json", "not a valid message"),
        ("[1,2]", "not a valid message"),
        (r#"{"room":"a"}"#, "no `type` field"),
        (r#"{"type":"dance"}"#, "unknown message type `dance`"),
        (r#"{"type":"join","name":"a"}"#, "missing field `room`"),
        (r#"{"type":"join","room":5,"name":"a"}"#, "invalid type"),
        (r#"{"type":"signal","to":"x"}"#, "missing field `data`"),
        (
            r#"{"type":"signal","to":"x","data":[1]}"#,
            "must be a JSON object",
        ),
        (
            r#"{"type":"signal","to":"x","data":"s"}"#,
            "must be a JSON object",
        ),
        (
            r#"{"type":"signal","to":"x","data":null}"#,
            "missing field `data`",
        ),
        (r#"{"type":7}"#, "not a valid message"),
        (
            r#"{"type":"join","room":"a","name":"b","rejoin":"short"}"#,
            "`rejoin` must be the 32 hex digits",
        ),
        (
            r#"{"type":"join","room":"a","name":"b","rejoin":"0123456789ABCDEF0123456789ABCDEF"}"#,
            "`rejoin` must be the 32 hex digits",
        ),
        (
            r#"{"type":"join","room":"a","name":"b","rejoin":7}"#,
            "invalid type",
        ),
    ];
    for (input, want) in cases {
        let err = ClientMessage::decode(input).expect_err(input);
        assert!(
            err.message.contains(want),
            "{input}: {} lacks {want}",
            err.message
        );
    }
    let long = format!(r#"{{"type":"{}"}}"#, "x".repeat(500));
    assert!(ClientMessage::decode(&long).unwrap_err().message.len() < 100);
}

#[test]
fn client_from_is_ignored() {
    let msg =
        ClientMessage::decode(r#"{"type":"signal","to":"b","from":"evil","data":{}}"#).unwrap();
    assert_eq!(msg.encode(), r#"{"type":"signal","to":"b","data":{}}"#);
}

#[test]
fn unknown_error_code_from_newer_server_decodes() {
    let msg =
        ServerMessage::decode(r#"{"type":"error","code":"new-thing","message":"m"}"#).unwrap();
    assert_eq!(msg, ServerMessage::error(ErrorCode::Unknown, "m"));
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = SignalData> {
    prop::collection::btree_map(".{0,6}", json_value(), 0..5).prop_map(|m| {
        let obj: serde_json::Map<String, serde_json::Value> = m.into_iter().collect();
        SignalData::from_value(&obj).unwrap()
    })
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (
            ".{0,70}",
            ".{0,70}",
            proptest::option::of(".{0,20}"),
            proptest::option::of("[0-9a-f]{32}")
        )
            .prop_map(|(room, name, password, rejoin)| {
                ClientMessage::Join {
                    room,
                    name,
                    password,
                    rejoin,
                }
            }),
        (".{0,40}", json_object()).prop_map(|(to, data)| ClientMessage::Signal {
            to: PeerId(to),
            data
        }),
        Just(ClientMessage::Leave),
        Just(ClientMessage::Ping),
    ]
}

fn peer() -> impl Strategy<Value = PeerInfo> {
    ("[0-9a-f]{32}", ".{0,64}").prop_map(|(id, name)| PeerInfo {
        id: PeerId(id),
        name,
    })
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        (
            "[0-9a-f]{32}",
            ".{0,64}",
            prop::collection::vec(peer(), 0..8),
            proptest::option::of("[0-9a-f]{32}")
        )
            .prop_map(|(id, room, peers, rejoin)| ServerMessage::Welcome {
                id: PeerId(id),
                room,
                peers,
                sfu: None,
                rejoin,
            }),
        peer().prop_map(|p| ServerMessage::PeerJoined {
            id: p.id,
            name: p.name
        }),
        "[0-9a-f]{32}".prop_map(|id| ServerMessage::PeerLeft { id: PeerId(id) }),
        ("[0-9a-f]{32}", json_object()).prop_map(|(from, data)| ServerMessage::Signal {
            from: PeerId(from),
            data
        }),
        (0..ErrorCode::ALL.len(), ".{0,80}")
            .prop_map(|(i, message)| ServerMessage::error(ErrorCode::ALL[i], message)),
        Just(ServerMessage::Pong),
    ]
}

proptest! {
    #[test]
    fn client_round_trip(msg in client_message()) {
        prop_assert_eq!(ClientMessage::decode(&msg.encode()).unwrap(), msg);
    }

    #[test]
    fn server_round_trip(msg in server_message()) {
        prop_assert_eq!(ServerMessage::decode(&msg.encode()).unwrap(), msg);
    }

    #[test]
    fn arbitrary_text_gets_a_worded_error(text in ".{0,200}") {
        if let Err(e) = ClientMessage::decode(&text) {
            prop_assert!(!e.message.is_empty());
        }
        if let Err(e) = ServerMessage::decode(&text) {
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn truncated_messages_get_a_worded_error(msg in client_message(), cut in 0usize..200) {
        let text = msg.encode();
        let mut end = cut.min(text.len().saturating_sub(1));
        while !text.is_char_boundary(end) { end -= 1; }
        let err = ClientMessage::decode(&text[..end]).expect_err("a cut object is not JSON");
        prop_assert!(err.message.starts_with("not a valid message"));
    }
}

/// A welcome naming an SFU the client could be steered to with a crafted address, room or
/// PIN is refused with a worded error, never used.
#[test]
fn hostile_sfu_in_welcome() {
    let base = r#"{"type":"welcome","id":"a1","room":"big","peers":[],"sfu":"#;
    for (sfu, says) in [
        (
            r#"{"url":"http://evil.example","room":1,"pin":"a"}"#,
            "janus+ws://",
        ),
        (r#"{"url":"janus+ws://","room":1,"pin":"a"}"#, "no host"),
        (r#"{"url":"janus+ws://h:1 x","room":1,"pin":"a"}"#, "spaces"),
        (r#"{"url":"janus+ws://h:1","room":0,"pin":"a"}"#, "sfu.room"),
        (
            r#"{"url":"janus+ws://h:1","room":9007199254740992,"pin":"a"}"#,
            "sfu.room",
        ),
        (r#"{"url":"janus+ws://h:1","room":1,"pin":""}"#, "sfu.pin"),
        (
            r#"{"url":"janus+ws://h:1","room":1,"pin":"a\"b"}"#,
            "sfu.pin",
        ),
        (r#"{"url":"janus+ws://h:1","room":1}"#, "pin"),
        (
            r#"{"url":"janus+ws://h:1","room":1,"pin":"a","token":"a\"b"}"#,
            "sfu.token",
        ),
    ] {
        let text = format!("{base}{sfu}}}");
        let e = ServerMessage::decode(&text).expect_err(&text);
        assert!(e.message.contains(says), "{text}: {}", e.message);
    }
    let ok = format!(r#"{base}{{"url":"janus+wss://h:1/janus","room":7,"pin":"Ab9"}}}}"#);
    match ServerMessage::decode(&ok).unwrap() {
        ServerMessage::Welcome { sfu: Some(s), .. } => {
            assert_eq!(
                (s.ws_url(), s.room, s.pin.as_str(), s.above),
                ("wss://h:1/janus", 7, "Ab9", 6),
                "absent, `above` is the mesh's limit"
            )
        }
        m => panic!("{m:?}"),
    }
}
