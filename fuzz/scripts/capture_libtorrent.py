#!/usr/bin/python3
"""Captures what a real libtorrent peer sends at the start of a connection, as fuzz seeds.

Run from the repository root with Debian's python3 (python3-libtorrent is built for it):
    /usr/bin/python3 fuzz/scripts/capture_libtorrent.py

It seeds a fixture torrent from a libtorrent session on 127.0.0.1 (port chosen by the OS),
connects to it over TCP, sends a BEP 3 handshake with the Fast and extension bits, a BEP 10
extended handshake and `interested`, and records the reply. It writes:
    fuzz/corpus/handshake/libtorrent.bin        the 68-byte handshake
    fuzz/corpus/wire_message/libtorrent.bin     the frames after it
    fuzz/corpus/extension/libtorrent.bencode    the payload of its extended handshake
"""
import os
import socket
import struct
import sys
import tempfile
import time

import libtorrent as lt

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TORRENT = os.path.join(ROOT, "engine/proto/src/tests/fixtures/mktorrent_single.torrent")
CORPUS = os.path.join(ROOT, "fuzz/corpus")
DEADLINE_SECS = 20


def frames(buf):
    """Splits complete length-prefixed frames off buf."""
    out = []
    while len(buf) >= 4:
        (n,) = struct.unpack(">I", buf[:4])
        if len(buf) < 4 + n:
            break
        out.append(buf[4:4 + n])
        buf = buf[4 + n:]
    return out


def main():
    settings = {
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
    }
    ses = lt.session(settings)
    ti = lt.torrent_info(TORRENT)
    save = tempfile.mkdtemp()
    h = ses.add_torrent({"ti": ti, "save_path": save, "flags": lt.torrent_flags.seed_mode})
    deadline = time.monotonic() + DEADLINE_SECS
    while ses.listen_port() == 0 or not h.status().is_seeding:
        if time.monotonic() > deadline:
            sys.exit("libtorrent did not start seeding in time")
        time.sleep(0.05)

    s = socket.create_connection(("127.0.0.1", ses.listen_port()), timeout=5)
    reserved = bytes([0, 0, 0, 0, 0, 0x10, 0, 0x04])  # extension protocol + fast
    info_hash = bytes.fromhex(str(ti.info_hashes().v1))
    s.sendall(b"\x13BitTorrent protocol" + reserved + info_hash + b"-IS0100-capturefuzz1")
    ext = b"d1:md11:ut_metadatai3ee1:pi6881e1:v12:instream/0.1e"
    s.sendall(struct.pack(">IBB", 2 + len(ext), 20, 0) + ext)
    s.sendall(struct.pack(">IB", 1, 2))  # interested

    data = b""
    # Wait for the handshake, the extended handshake, have-all/bitfield and unchoke.
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
        if len(data) >= 68:
            ids = [f[0] for f in frames(data[68:]) if f]
            if 20 in ids and 1 in ids:
                break
    s.close()
    if len(data) < 68:
        sys.exit("libtorrent sent no handshake")
    body = data[68:]
    ext_payloads = [f[2:] for f in frames(body) if len(f) >= 2 and f[0] == 20 and f[1] == 0]
    if not ext_payloads:
        sys.exit("libtorrent sent no extended handshake")

    def write(target, name, blob):
        os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
        with open(os.path.join(CORPUS, target, name), "wb") as f:
            f.write(blob)

    write("handshake", "libtorrent.bin", data[:68])
    write("wire_message", "libtorrent.bin", body)
    write("extension", "libtorrent.bencode", ext_payloads[0])
    print("captured", len(data), "bytes; frame ids", [f[0] for f in frames(body) if f])


if __name__ == "__main__":
    main()
