#!/usr/bin/python3
"""One libtorrent (python3-libtorrent 2.0) seed or leecher, for interop tests and benchmarks.

Run it with Debian's /usr/bin/python3: python3-libtorrent is built for that interpreter only.

    lt_peer.py run --torrent T --data DIR [--seed] [--listen HOST:PORT] [--peer HOST:PORT]...
                   [--no-tracker] [--seed-for SECS] [--timeout SECS] [--wait-go]
                   [--upload-limit BYTES_PER_SEC] [--progress-interval SECS]
                   [--outgoing IP] [--announce-ip IP]
                   [--encryption plaintext|accept-any|disabled|forced-rc4|forced-both]
    lt_peer.py info T        # one JSON line: info_hash, piece_length, num_pieces, total_size, files

`run` prints JSON lines on stdout, one per event, each with `event` and `t` (unix time, float):

    listening {addr, port}        the session accepts connections (port is the real one if 0 was asked)
    ready     {}                  torrent added; with --wait-go it now waits for a line on stdin
    started   {}                  the torrent runs (peers dialled); the reference time of `finished.secs`
    progress  {progress, down, up, peers, rate_down, rate_up}   every --progress-interval seconds
    finished  {secs, down, up}    leecher: every piece downloaded and hash-checked
    hash_failed {piece}           a piece failed its SHA-1 check (we downloaded bad data)
    peer_banned {peer}            libtorrent banned a peer
    peer_disconnected {message}   libtorrent closed a peer connection, and why
    tracker_reply {url, peers}    an announce was answered; tracker_error {message} if not
    summary   {ok, finished, done_secs, bytes_downloaded, bytes_uploaded, wall_secs, cpu_user,
               cpu_sys, max_rss_kib, peers_seen, hash_failures, reason}
    error     {message}           a fatal error; the process then exits non-zero

Exit status: 0 success (leecher finished; seed stopped by its --seed-for or SIGTERM/SIGINT),
2 bad usage, 3 timed out before finishing, 4 libtorrent reported a fatal error,
5 a leecher was stopped by a signal before it finished.

Settings are those of REFERENCE-CLIENTS.md for a fair closed-network comparison: no DHT, LSD,
UPnP or NAT-PMP, uTP off (TCP on both sides), several connections per IP allowed (peers may share
127.0.0.1), no rate limits unless --upload-limit is given, `high_performance_seed` for seeds,
`seed_mode` (no start-up hash check) for a seed that already has the data.

Every wait is on libtorrent alerts with a deadline; nothing sleeps to synchronise.
"""

import argparse
import json
import os
import resource
import signal
import sys
import time

try:
    import libtorrent as lt
except ImportError as e:  # pragma: no cover - environment problem, say so clearly
    print(json.dumps({"event": "error", "t": time.time(),
                      "message": f"cannot import libtorrent ({e}); install python3-libtorrent "
                                 "and run with /usr/bin/python3"}), flush=True)
    sys.exit(4)

EXIT_OK, EXIT_USAGE, EXIT_TIMEOUT, EXIT_LT_ERROR, EXIT_INTERRUPTED = 0, 2, 3, 4, 5


def emit(event, **fields):
    fields = {"event": event, "t": time.time(), **fields}
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def fail(code, message):
    emit("error", message=message)
    sys.exit(code)


def parse_endpoint(text):
    """HOST:PORT or [V6]:PORT -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    host = host.strip("[]")
    if not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def load_torrent(path):
    try:
        return lt.torrent_info(path)
    except RuntimeError as e:
        fail(EXIT_LT_ERROR, f"read torrent {path}: {e}")


def cmd_info(args):
    ti = load_torrent(args.torrent)
    files = ti.files()
    print(json.dumps({
        "info_hash": str(ti.info_hashes().v1),
        "name": ti.name(),
        "piece_length": ti.piece_length(),
        "num_pieces": ti.num_pieces(),
        "total_size": ti.total_size(),
        "files": [{"path": files.file_path(i), "size": files.file_size(i)}
                  for i in range(files.num_files())],
        "trackers": [t.url for t in ti.trackers()],
    }), flush=True)
    return EXIT_OK


def session_settings(args, host, port):
    settings = lt.high_performance_seed() if args.seed else lt.default_settings()
    settings.update({
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "allow_multiple_connections_per_ip": True,
        **ENCRYPTION[args.encryption],
        "connections_limit": 400,
        "listen_interfaces": f"{host}:{port}" if ":" not in host else f"[{host}]:{port}",
        # Dial out from the address under test too (matters inside network namespaces), or
        # from --outgoing's (a host with two addresses: listens on one, dials from the other).
        "outgoing_interfaces": args.outgoing or (host if host not in ("0.0.0.0", "::") else ""),
        # --announce-ip: the address trackers are told (`ip=`, the BEP 15 IP field).
        "announce_ip": args.announce_ip or "",
        "upload_rate_limit": args.upload_limit,
        "download_rate_limit": 0,
        "alert_mask": (lt.alert_category.error | lt.alert_category.status
                       | lt.alert_category.peer | lt.alert_category.storage
                       | lt.alert_category.connect | lt.alert_category.tracker),
        "alert_queue_size": 10000,
        # We announce only when asked to, and we want to see tracker problems early.
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
    })
    return settings


# --encryption: how libtorrent dials and what MSE payload it allows.
ENCRYPTION = {
    # Plain-text handshakes (the default here): by default libtorrent first tries an MSE/RC4
    # handshake, which costs a reconnect against peers without MSE and CPU against those with it.
    "plaintext": {
        "out_enc_policy": int(lt.enc_policy.disabled),
        "in_enc_policy": int(lt.enc_policy.enabled),
        "allowed_enc_level": int(lt.enc_level.plaintext),
    },
    # Dials in plain text, accepts MSE with either payload as well as plain text: a seed that
    # any client can reach with its default settings (transmission 3.00 offers only RC4).
    "accept-any": {
        "out_enc_policy": int(lt.enc_policy.disabled),
        "in_enc_policy": int(lt.enc_policy.enabled),
        "allowed_enc_level": int(lt.enc_level.both),
        "prefer_rc4": False,
    },
    # No MSE at all: an incoming MSE handshake is dropped (for the plaintext-retry test).
    "disabled": {
        "out_enc_policy": int(lt.enc_policy.disabled),
        "in_enc_policy": int(lt.enc_policy.disabled),
        "allowed_enc_level": int(lt.enc_level.plaintext),
    },
    # MSE only, RC4 payload only (pe_forced, allowed_enc_level rc4).
    "forced-rc4": {
        "out_enc_policy": int(lt.enc_policy.forced),
        "in_enc_policy": int(lt.enc_policy.forced),
        "allowed_enc_level": int(lt.enc_level.rc4),
        "prefer_rc4": True,
    },
    # MSE only, either payload offered (the responder picks).
    "forced-both": {
        "out_enc_policy": int(lt.enc_policy.forced),
        "in_enc_policy": int(lt.enc_policy.forced),
        "allowed_enc_level": int(lt.enc_level.both),
        "prefer_rc4": False,
    },
}


class Run:
    """State of one `run`: the session, the torrent handle and the counters for the summary."""

    def __init__(self, args):
        self.args = args
        self.t_launch = time.time()
        self.t_started = None
        self.t_finished = None
        self.peers_seen = set()
        self.hash_failures = 0
        self.stop_signal = None
        self.fatal = None
        self.listen_port = None
        self.handle = None

    def on_signal(self, signum, _frame):
        self.stop_signal = signum

    def handle_alert(self, a):
        """Updates state from one alert; returns nothing, sets self.fatal on fatal errors."""
        if isinstance(a, lt.listen_succeeded_alert):
            if a.socket_type == lt.listen_succeded_alert_socket_type_t.tcp:
                self.listen_port = a.port
                emit("listening", addr=str(a.address), port=a.port)
        elif isinstance(a, lt.listen_failed_alert):
            self.fatal = f"listen on {a.listen_interface()}: {a.message()}"
        elif isinstance(a, (lt.torrent_error_alert, lt.file_error_alert)):
            self.fatal = a.message()
        elif isinstance(a, lt.torrent_finished_alert):
            if self.t_finished is None and not self.args.seed:
                self.t_finished = time.time()
                st = self.handle.status()
                emit("finished", secs=self.t_finished - (self.t_started or self.t_launch),
                     down=st.total_payload_download, up=st.total_payload_upload)
        elif isinstance(a, lt.hash_failed_alert):
            self.hash_failures += 1
            emit("hash_failed", piece=int(a.piece_index))
        elif isinstance(a, lt.peer_ban_alert):
            emit("peer_banned", peer=f"{a.endpoint[0]}:{a.endpoint[1]}")
        elif isinstance(a, (lt.peer_connect_alert, lt.incoming_connection_alert)):
            ep = a.endpoint if hasattr(a, "endpoint") else a.ip
            self.peers_seen.add(f"{ep[0]}:{ep[1]}")
        elif isinstance(a, lt.peer_disconnected_alert):
            # Why libtorrent dropped a peer, for a failing test's tail.
            emit("peer_disconnected", message=a.message())
        elif isinstance(a, lt.tracker_error_alert):
            emit("tracker_error", message=a.message())
        elif isinstance(a, lt.tracker_reply_alert):
            emit("tracker_reply", url=a.tracker_url(), peers=a.num_peers)

    def pump(self, ses, wait_ms):
        if ses.wait_for_alert(wait_ms) is not None:
            for a in ses.pop_alerts():
                self.handle_alert(a)

    def wait_until(self, ses, cond, timeout, what):
        """Pumps alerts until cond() holds; fails after `timeout` seconds with `what`."""
        deadline = time.monotonic() + timeout
        while not cond():
            if self.fatal:
                fail(EXIT_LT_ERROR, self.fatal)
            if self.stop_signal is not None:
                fail(EXIT_INTERRUPTED, f"stopped by signal {self.stop_signal} while waiting for {what}")
            if time.monotonic() > deadline:
                fail(EXIT_TIMEOUT, f"timed out after {timeout}s waiting for {what}")
            self.pump(ses, 100)

    def summary(self, ok, reason):
        st = self.handle.status() if self.handle is not None else None
        ru = resource.getrusage(resource.RUSAGE_SELF)
        emit("summary", ok=ok, reason=reason, finished=self.args.seed or self.t_finished is not None,
             done_secs=(self.t_finished - (self.t_started or self.t_launch)) if self.t_finished else None,
             bytes_downloaded=st.total_payload_download if st else 0,
             bytes_uploaded=st.total_payload_upload if st else 0,
             wall_secs=time.time() - self.t_launch,
             cpu_user=ru.ru_utime, cpu_sys=ru.ru_stime, max_rss_kib=ru.ru_maxrss,
             peers_seen=len(self.peers_seen), hash_failures=self.hash_failures)


def cmd_run(args):
    if not os.path.isdir(args.data):
        try:
            os.makedirs(args.data, exist_ok=True)
        except OSError as e:
            fail(EXIT_USAGE, f"create data dir {args.data}: {e}")
    host, port = args.listen
    run = Run(args)
    signal.signal(signal.SIGTERM, run.on_signal)
    signal.signal(signal.SIGINT, run.on_signal)

    ses = lt.session(session_settings(args, host, port))
    if args.upload_limit:
        # Peers on loopback/LAN are in libtorrent's "local" peer class, which ignores the global
        # rate limit; put every address in the global class so --upload-limit always applies.
        f = lt.ip_filter()
        f.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
        ses.set_peer_class_filter(f)
    run.wait_until(ses, lambda: run.listen_port is not None, args.setup_timeout, "listen socket")

    ti = load_torrent(args.torrent)
    atp = lt.add_torrent_params()
    atp.ti = ti
    atp.save_path = args.data
    flags = lt.torrent_flags.paused
    if args.seed:
        flags |= lt.torrent_flags.seed_mode
    atp.flags = flags  # not auto_managed: it runs exactly when we resume it
    try:
        run.handle = ses.add_torrent(atp)
    except RuntimeError as e:
        fail(EXIT_LT_ERROR, f"add torrent {args.torrent}: {e}")
    if args.no_tracker:
        run.handle.replace_trackers([])
    emit("ready", listen_port=run.listen_port, info_hash=str(ti.info_hashes().v1))

    if args.wait_go:
        line = sys.stdin.readline()
        if not line:
            fail(EXIT_INTERRUPTED, "stdin closed before 'go'")
    run.t_started = time.time()
    run.handle.resume()
    for peer in args.peer:
        run.handle.connect_peer(peer)
    emit("started")

    deadline = time.monotonic() + args.timeout if args.timeout > 0 else None
    seed_until = None  # monotonic time at which we stop seeding
    if args.seed and args.seed_for >= 0:
        seed_until = time.monotonic() + args.seed_for
    next_progress = time.monotonic() + args.progress_interval
    while True:
        run.pump(ses, 100)
        now = time.monotonic()
        if run.fatal:
            run.summary(False, run.fatal)
            fail(EXIT_LT_ERROR, run.fatal)
        if run.stop_signal is not None:
            if args.seed or run.t_finished is not None:
                run.summary(True, f"signal {run.stop_signal}")
                return EXIT_OK
            run.summary(False, f"signal {run.stop_signal} before finishing")
            return EXIT_INTERRUPTED
        if not args.seed and run.t_finished is not None and seed_until is None:
            if args.seed_for < 0:
                seed_until = float("inf")
            else:
                seed_until = now + args.seed_for
        if seed_until is not None and now >= seed_until:
            run.summary(True, "seed-for elapsed")
            return EXIT_OK
        if deadline is not None and run.t_finished is None and not args.seed and now > deadline:
            run.summary(False, "timeout")
            fail(EXIT_TIMEOUT, f"timed out after {args.timeout}s before finishing")
        if args.progress_interval > 0 and now >= next_progress:
            next_progress = now + args.progress_interval
            st = run.handle.status()
            emit("progress", progress=st.progress, down=st.total_payload_download,
                 up=st.total_payload_upload, peers=st.num_peers,
                 rate_down=st.download_payload_rate, rate_up=st.upload_payload_rate)


def main(argv):
    p = argparse.ArgumentParser(prog="lt_peer.py", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run one seed or leecher")
    r.add_argument("--torrent", required=True)
    r.add_argument("--data", required=True, help="save path (the torrent's name is inside it)")
    r.add_argument("--seed", action="store_true", help="we have the data: seed_mode, seed preset")
    r.add_argument("--listen", type=parse_endpoint, default=("127.0.0.1", 0), metavar="HOST:PORT")
    r.add_argument("--peer", type=parse_endpoint, action="append", default=[], metavar="HOST:PORT")
    r.add_argument("--no-tracker", action="store_true", help="ignore the torrent's trackers")
    r.add_argument("--seed-for", type=float, default=None,
                   help="seconds to keep seeding (leecher: after finishing, default 0; "
                        "seed: after start, default until signalled); negative = until signalled")
    r.add_argument("--timeout", type=float, default=300.0,
                   help="leecher: give up (exit 3) if not finished after this many seconds; 0 = never")
    r.add_argument("--setup-timeout", type=float, default=30.0)
    r.add_argument("--wait-go", action="store_true",
                   help="after 'ready', wait for a line on stdin before starting the torrent")
    r.add_argument("--outgoing", default=None, metavar="IP",
                   help="dial peers from this address instead of --listen's")
    r.add_argument("--announce-ip", default=None, metavar="IP",
                   help="the address to announce to trackers (ip=, BEP 15 IP field)")
    r.add_argument("--upload-limit", type=int, default=0, metavar="BYTES_PER_SEC")
    r.add_argument("--progress-interval", type=float, default=1.0, help="0 = no progress lines")
    r.add_argument("--encryption", choices=sorted(ENCRYPTION), default="plaintext",
                   help="MSE/PE policy (default plaintext; forced-*: MSE only)")
    i = sub.add_parser("info", help="print a torrent's info-hash and geometry as JSON")
    i.add_argument("torrent")
    args = p.parse_args(argv)
    if args.cmd == "info":
        return cmd_info(args)
    if args.seed_for is None:
        args.seed_for = -1.0 if args.seed else 0.0
    return cmd_run(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
