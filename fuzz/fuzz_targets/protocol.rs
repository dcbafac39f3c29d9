//! The signaling protocol as a hostile client, server or room member would send it: one text
//! frame decoded as a client message (the server's side, through `confab_rooms::decode` as the
//! hub does), as a server message (the clients' side), and as the call-flow signal inside
//! `data`. Nothing may panic; whatever decodes must encode and decode back to itself, and the
//! name rules must be stable on their own output (the server announces the normalized name,
//! which every client checks again).
#![no_main]

use confab_protocol::call::CallSignal;
use confab_protocol::{
    check_name, check_password, check_room, ClientMessage, ServerMessage, SignalData,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    // Server side: exactly what the hub does with a frame (size cap, then decode).
    if let confab_rooms::Inbound::Message(msg) = confab_rooms::decode(text, 64 * 1024) {
        assert_eq!(ClientMessage::decode(text).as_ref(), Ok(&msg));
        let again = ClientMessage::decode(&msg.encode()).expect("an encoded message decodes");
        assert_eq!(again, msg, "client message round trip");
        if let ClientMessage::Join {
            room,
            name,
            password,
            ..
        } = &msg
        {
            let _ = check_room(room);
            if let Some(p) = password {
                let _ = check_password(p);
            }
            if let Ok(normal) = check_name(name) {
                assert_eq!(
                    check_name(&normal).as_deref(),
                    Ok(normal.as_str()),
                    "a normalized name passes the rules unchanged"
                );
            }
        }
        if let ClientMessage::Signal { data, .. } = &msg {
            call_signal(data);
        }
    }

    // Client side.
    if let Ok(msg) = ServerMessage::decode(text) {
        let again = ServerMessage::decode(&msg.encode()).expect("an encoded message decodes");
        assert_eq!(again, msg, "server message round trip");
        match &msg {
            ServerMessage::Signal { data, .. } => call_signal(data),
            ServerMessage::Welcome { peers, .. } => {
                for p in peers {
                    let _ = check_name(&p.name);
                }
            }
            ServerMessage::PeerJoined { name, .. } => {
                let _ = check_name(name);
            }
            _ => {}
        }
    }

    // The call flow directly, so that the fuzzer need not find the envelope first.
    if let Ok(raw) = serde_json::from_str::<Box<serde_json::value::RawValue>>(text) {
        if let Ok(data) = SignalData::from_raw(raw) {
            call_signal(&data);
        }
    }
});

fn call_signal(data: &SignalData) {
    if let Ok(sig) = CallSignal::from_data(data) {
        let again = CallSignal::from_data(&sig.to_data()).expect("an encoded signal decodes");
        assert_eq!(again, sig, "call signal round trip");
    }
}
