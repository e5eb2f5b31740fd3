#!/usr/bin/python3
"""A lying BitTorrent peer: claims every piece and answers every request with garbage.

    liar_peer.py --torrent T [--listen HOST:PORT] [--timeout SECS]

It speaks just enough of BEP 3 to be asked for blocks: it accepts connections, answers the
handshake for the torrent's info-hash (no reserved bits: a plain BEP 3 peer), sends a full
bitfield and an unchoke, and replies to each `request` with a `piece` message of the right
length whose bytes are wrong. Every piece a victim assembles from its blocks fails its SHA-1.
(libtorrent cannot play this role: its seed_mode checks each piece before serving it.)

JSON lines on stdout, each with `event` and `t`:
    listening {addr, port}
    connected {peer}
    closed    {peer, blocks_served, by}     by = "remote" (the victim hung up) or "error: ..."
    summary   {connections, blocks_served, closed_by_remote}   on SIGTERM/SIGINT or --timeout
Exit status: 0 after a signal or the timeout, 2 on bad usage, 4 if the torrent cannot be read.
"""

import argparse
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import time

MAX_FRAME = 1 << 20  # no legitimate message to a seed is bigger than a bitfield or a request
MAX_BLOCK = 1 << 17  # refuse absurd request lengths instead of allocating them

lock = threading.Lock()
stats = {"connections": 0, "blocks_served": 0, "closed_by_remote": 0}


def emit(event, **fields):
    with lock:
        sys.stdout.write(json.dumps({"event": event, "t": time.time(), **fields}) + "\n")
        sys.stdout.flush()


def read_torrent(path):
    """Returns (info_hash bytes, num_pieces) without libtorrent: a minimal bencode walk."""
    data = open(path, "rb").read()

    def skip(i):
        c = data[i:i + 1]
        if c == b"i":
            return data.index(b"e", i) + 1
        if c in (b"l", b"d"):
            i += 1
            while data[i:i + 1] != b"e":
                i = skip(i)
            return i + 1
        colon = data.index(b":", i)
        return colon + 1 + int(data[i:colon])

    def dict_items(i):
        assert data[i:i + 1] == b"d", "expected a dictionary"
        i += 1
        while data[i:i + 1] != b"e":
            key_end = skip(i)
            colon = data.index(b":", i)
            key = data[colon + 1:key_end]
            val_end = skip(key_end)
            yield key, key_end, val_end
            i = val_end

    for key, start, end in dict_items(0):
        if key == b"info":
            info_hash = hashlib.sha1(data[start:end]).digest()
            for k, s, e in dict_items(start):
                if k == b"pieces":
                    colon = data.index(b":", s)
                    return info_hash, (e - colon - 1) // 20
    raise ValueError("no info.pieces in torrent")


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def serve(sock, peer, info_hash, num_pieces):
    served = 0
    by = "remote"
    try:
        hs = recv_exact(sock, 68)
        if hs[0] != 19 or hs[1:20] != b"BitTorrent protocol" or hs[28:48] != info_hash:
            by = f"error: bad handshake {hs[:20]!r}"
            return
        peer_id = b"-LI0001-" + os.urandom(12)
        sock.sendall(bytes([19]) + b"BitTorrent protocol" + bytes(8) + info_hash + peer_id)
        bits = bytearray((num_pieces + 7) // 8)
        for p in range(num_pieces):
            bits[p // 8] |= 0x80 >> (p % 8)
        sock.sendall(struct.pack(">IB", 1 + len(bits), 5) + bits)  # bitfield
        sock.sendall(struct.pack(">IB", 1, 1))  # unchoke
        while True:
            (length,) = struct.unpack(">I", recv_exact(sock, 4))
            if length == 0:
                continue  # keep-alive
            if length > MAX_FRAME:
                by = f"error: frame of {length} bytes"
                return
            body = recv_exact(sock, length)
            if body[0] == 6 and length == 13:  # request: index, begin, length
                index, begin, blen = struct.unpack(">III", body[1:13])
                if blen == 0 or blen > MAX_BLOCK or index >= num_pieces:
                    continue
                # Wrong bytes of the right length; different per block so retries differ too.
                garbage = hashlib.sha256(struct.pack(">III", index, begin, served)).digest()
                payload = (garbage * (blen // len(garbage) + 1))[:blen]
                sock.sendall(struct.pack(">IBII", 9 + blen, 7, index, begin) + payload)
                served += 1
                with lock:
                    stats["blocks_served"] += 1
            # Everything else (interested, have, cancel, extension and fast messages) is ignored.
    except EOFError:
        by = "remote"
    except OSError as e:
        by = "remote" if isinstance(e, (ConnectionResetError, BrokenPipeError)) else f"error: {e}"
    finally:
        if by == "remote":
            with lock:
                stats["closed_by_remote"] += 1
        emit("closed", peer=peer, blocks_served=served, by=by)
        sock.close()


def main(argv):
    p = argparse.ArgumentParser(prog="liar_peer.py", description=__doc__.split("\n")[0])
    p.add_argument("--torrent", required=True)
    p.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT")
    p.add_argument("--timeout", type=float, default=600.0, help="exit after this many seconds")
    args = p.parse_args(argv)
    try:
        info_hash, num_pieces = read_torrent(args.torrent)
    except (OSError, ValueError, AssertionError) as e:
        emit("error", message=f"read torrent {args.torrent}: {e}")
        return 4
    host, _, port = args.listen.rpartition(":")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    listener = socket.create_server((host.strip("[]"), int(port)))
    listener.settimeout(0.2)  # lets the accept loop notice `stop`
    emit("listening", addr=host, port=listener.getsockname()[1], info_hash=info_hash.hex())
    deadline = time.monotonic() + args.timeout
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            sock, addr = listener.accept()
        except socket.timeout:
            continue
        sock.settimeout(None)
        with lock:
            stats["connections"] += 1
        peer = f"{addr[0]}:{addr[1]}"
        emit("connected", peer=peer)
        threading.Thread(target=serve, args=(sock, peer, info_hash, num_pieces), daemon=True).start()
    with lock:
        snapshot = dict(stats)
    emit("summary", **snapshot)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
