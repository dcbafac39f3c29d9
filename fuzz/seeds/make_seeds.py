#!/usr/bin/env python3
"""Writes the starting corpora of the fuzz targets (fuzz/corpus/TARGET/seed-*) from real inputs:
the messages of docs/protocol.md, the signals of the call-flow scenario tables, the names of the
shared rules table, a Chromium offer and a Confab answer (seeds/*.sdp), and RTP payloads laid out
as RFC 6184 (H.264: single NAL, STAP-A, FU-A) and RFC 7741 (VP8) packetize them. Run once; the
fuzzer grows and `cargo fuzz cmin` shrinks the corpora after that."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(os.path.dirname(HERE), "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def protocol():
    sdp = open(os.path.join(HERE, "chromium_offer.sdp")).read()
    msgs = {
        "join": {"type": "join", "room": "team", "name": "Ada"},
        "join-password": {"type": "join", "room": "team-42", "name": "Zoë  Ö", "password": "s3cr3t"},
        "leave": {"type": "leave"},
        "signal-to": {"type": "signal", "to": "p7", "data": {"kind": "ring", "nonce": "abc"}},
        "welcome": {"type": "welcome", "id": "p2", "room": "team",
                    "peers": [{"id": "p1", "name": "Ada"}, {"id": "p3", "name": "👩‍💻 Bo"}]},
        "peer-joined": {"type": "peer-joined", "id": "p4", "name": "Cy"},
        "peer-left": {"type": "peer-left", "id": "p4"},
        "error": {"type": "error", "code": "room-full", "message": "the room is full"},
        "error-unknown": {"type": "error", "code": "from-the-future", "message": ""},
        "offer": {"type": "signal", "from": "p1",
                  "data": {"kind": "description", "description": {"type": "offer", "sdp": sdp}}},
        "candidate": {"type": "signal", "from": "p1", "data": {"kind": "candidate", "candidate": {
            "candidate": "candidate:3 1 udp 2122260223 192.168.1.20 56143 typ host generation 0",
            "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "Zx4q"}}},
        "resume": {"type": "signal", "from": "p9",
                   "data": {"kind": "resume", "proofs": ["0123456789abcdef0123456789abcdef"]}},
        "verify": {"type": "signal", "from": "p1", "data": {"kind": "verify", "commit": "ab" * 16}},
        "admit": {"type": "signal", "from": "p1", "data": {"kind": "admit", "peer": "p5"}},
        "welcome-sfu": {"type": "welcome", "id": "p2", "room": "all-hands",
                        "peers": [{"id": "p1", "name": "Ada"}],
                        "sfu": {"url": "janus+wss://sfu.example.org:8989/janus",
                                "room": 4503599627370495, "pin": "a1B2c3D4e5", "above": 6}},
        "feed": {"type": "signal", "from": "p1", "data": {"kind": "feed", "id": 8007199254740991}},
    }
    for name, m in msgs.items():
        write("protocol", name, json.dumps(m, ensure_ascii=False))
    # Every signal of the scenario tables, as relayed by the server.
    n = 0
    seen = set()
    for table in ("call-flow.json", "link-health.json", "verify.json"):
        path = os.path.join(ROOT, "crates", "confab-call", "scenarios", table)
        if not os.path.exists(path):
            continue

        def walk(v):
            nonlocal n
            if isinstance(v, dict):
                if isinstance(v.get("kind"), str):
                    text = json.dumps({"type": "signal", "from": "a", "data": v})
                    if text not in seen:
                        seen.add(text)
                        write("protocol", f"scenario-{n}", text)
                        n += 1
                for x in v.values():
                    walk(x)
            elif isinstance(v, list):
                for x in v:
                    walk(x)

        walk(json.load(open(path)))
    # Names from the rules table, as joins.
    rules = json.load(open(os.path.join(ROOT, "crates", "confab-protocol", "tests", "rules.json")))
    names = []

    def names_in(v):
        if isinstance(v, dict):
            for k, x in v.items():
                if k in ("input", "name") and isinstance(x, str):
                    names.append(x)
                names_in(x)
        elif isinstance(v, list):
            for x in v:
                names_in(x)

    names_in(rules)
    for i, name in enumerate(names[:40]):
        write("protocol", f"rules-name-{i}",
              json.dumps({"type": "join", "room": "r", "name": name}, ensure_ascii=False))


def sdp():
    # The first byte: the rules (see fuzz_targets/sdp.rs).
    for name in ("chromium_offer", "confab_answer"):
        text = open(os.path.join(HERE, name + ".sdp"), "rb").read()
        write("sdp", name, bytes([0]) + text)
        write("sdp", name + "-answer-polite-loopback", bytes([8 | 4 | 1 | 2 | 16]) + text)


def rec(payload, step=1, ts=0, marker=False, wait=0, poll=False):
    flags = (1 if marker else 0) | ((wait & 7) << 1) | (16 if poll else 0)
    payload = payload[:255]
    return struct.pack("BbBB", flags, step, ts, len(payload)) + payload


def h264():
    sps = bytes([0x67, 0x42, 0xC0, 0x1F, 0xDA, 0x01, 0x40, 0x16, 0xEC, 0x04, 0x40])
    pps = bytes([0x68, 0xCE, 0x3C, 0x80])
    idr = bytes([0x65, 0x88, 0x84]) + bytes(range(60))
    p = bytes([0x41, 0x9A, 0x02]) + bytes(range(30))
    stap = bytes([0x78]) + struct.pack(">H", len(sps)) + sps + struct.pack(">H", len(pps)) + pps
    body = idr[1:]
    fu = [bytes([0x7C, 0x85]) + body[:20], bytes([0x7C, 0x05]) + body[20:40],
          bytes([0x7C, 0x45]) + body[40:]]
    # Keyframe as STAP-A + FU-A, then a single-NAL P frame, then a lost-and-late fragment.
    s = bytes([0])
    s += rec(stap) + rec(fu[0]) + rec(fu[1]) + rec(fu[2], marker=True)
    s += rec(p, ts=30, marker=True)
    s += rec(fu[0], ts=30) + rec(fu[2], step=2, wait=7, poll=True) + rec(fu[1], step=-1, marker=True)
    write("assembler", "h264-stap-fu", s)
    # Single NAL units, each its own frame.
    write("assembler", "h264-single", bytes([0]) + rec(sps) + rec(pps) + rec(idr, marker=True)
          + rec(p, ts=30, marker=True) + rec(p, ts=30, marker=True, step=3, wait=7, poll=True))


def vp8():
    key = bytes([0x50, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0xE0, 0x01]) + bytes(range(40))
    inter = bytes([0x31, 0x01, 0x00]) + bytes(range(20))
    s = bytes([1])
    # Extended descriptor (X, I with a 15-bit picture id, L, T/K), start of partition.
    s += rec(bytes([0x90, 0xE0, 0x80, 0x01, 0x00, 0x20]) + key[:25])
    s += rec(bytes([0x80, 0xE0, 0x80, 0x01, 0x00, 0x20]) + key[25:], marker=True)
    # Short descriptor (S only), a 7-bit picture id, reordered.
    s += rec(bytes([0x90, 0x80, 0x02]) + inter, ts=30, step=2, marker=True)
    s += rec(bytes([0x10]) + inter, ts=0, step=-1, marker=True)
    s += rec(bytes([0x10]) + inter, ts=60, step=5, wait=7, poll=True, marker=True)
    write("assembler", "vp8-descriptors", s)


def sig(obj):
    text = json.dumps(obj, separators=(",", ":")).encode()
    return bytes([2, len(text)]) + text


def callcore():
    # [auto-accept] then [op, arg] pairs (see fuzz_targets/callcore.rs); signals carry JSON.
    ring = sig({"kind": "ring", "nonce": "n1"})
    accept = sig({"kind": "accept", "nonce": "n2"})
    state = sig({"kind": "state", "in_call": True, "audio": True, "video": False, "session": "s"})
    offer = sig({"kind": "description", "description": {"type": "offer", "sdp": "v=0\r\n"}})
    resume = sig({"kind": "resume", "proofs": ["0123456789abcdef0123456789abcdef"]})
    write("callcore", "we-call", bytes([0, 6, 0]) + accept + bytes([3, 0, 3, 1, 12, 10]))
    write("callcore", "they-ring", bytes([0]) + state + ring + bytes([7, 0, 7, 1, 3, 0]) + offer)
    write("callcore", "auto-accept-flap", bytes([1]) + ring + bytes([1, 0, 0, 0, 12, 4]) + resume
          + bytes([0, 2, 17, 1, 5, 2, 4, 2, 12, 200, 9, 0, 10, 0, 15, 3, 16, 0]))


def frame(who, obj):
    text = bytes([who]) + json.dumps(obj, separators=(",", ":")).encode()
    return bytes([1, len(text)]) + text


def rooms():
    # [op, arg] pairs (see fuzz_targets/rooms.rs); a text frame carries its connection first.
    connect = bytes([0, 0, 0, 1, 0, 2])
    join = [frame(i, {"type": "join", "room": "team", "name": n}) for i, n in enumerate("ABC")]
    sig = frame(0, {"type": "signal", "to": "p2", "data": {"kind": "ring", "nonce": "n"}})
    write("rooms", "three-join-and-ring", connect + b"".join(join) + sig + bytes([5, 4, 4, 1]))
    pw = frame(0, {"type": "join", "room": "vault", "name": "A", "password": "right"})
    wrong = frame(1, {"type": "join", "room": "vault", "name": "B", "password": "wrong"})
    write("rooms", "password-guessing", connect + pw + wrong * 4 + bytes([5, 8]) + wrong
          + frame(1, {"type": "leave"}) + bytes([3, 1, 5, 200]))


if __name__ == "__main__":
    rooms()
    callcore()
    protocol()
    sdp()
    h264()
    vp8()
