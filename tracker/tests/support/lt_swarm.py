#!/usr/bin/python3
"""A libtorrent swarm in one process, for the tracker's integration tests.

Run with Debian's /usr/bin/python3 (python3-libtorrent is built for it):

    lt_swarm.py info-hash TORRENT            prints the torrent's v1 info-hash (hex)
    lt_swarm.py run --torrent T --data DIR --work DIR --leechers N [--timeout SECS]

`run` starts one seeding session (DIR holds the payload, added in seed mode) and N downloading
sessions (each saving under WORK/leecher-I), all on 127.0.0.1 with OS-chosen ports, none told
about another: every peer address must come from the tracker named in the torrent. It waits on
libtorrent alerts until every leecher has finished (or the deadline passes), then prints one JSON
line {ok, finished, leechers, tracker_replies, tracker_errors, secs} and exits 0 if all finished,
3 on timeout. Settings follow REFERENCE-CLIENTS.md: no DHT/LSD/UPnP/NAT-PMP, TCP only, several
connections per IP allowed.
"""

import argparse
import json
import os
import sys
import time

import libtorrent as lt


def session():
    s = lt.session({
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": lt.alert.category_t.all_categories,
        # Announce again soon when a tracker reply had too few peers (default 60 s+).
        "min_announce_interval": 1,
    })
    return s


def run(args):
    ti = lt.torrent_info(args.torrent)
    sessions = []
    seed = session()
    p = lt.add_torrent_params()
    p.ti = ti
    p.save_path = args.data
    p.flags |= lt.torrent_flags.seed_mode
    seed.add_torrent(p)
    sessions.append(seed)
    leechers = []
    for i in range(args.leechers):
        s = session()
        p = lt.add_torrent_params()
        p.ti = lt.torrent_info(args.torrent)
        p.save_path = os.path.join(args.work, f"leecher-{i}")
        os.makedirs(p.save_path, exist_ok=True)
        h = s.add_torrent(p)
        sessions.append(s)
        leechers.append(h)

    start = time.time()
    deadline = start + args.timeout
    finished = set()
    replies = 0
    errors = []
    while len(finished) < len(leechers) and time.time() < deadline:
        for idx, s in enumerate(sessions):
            for a in s.pop_alerts():
                if isinstance(a, lt.tracker_reply_alert):
                    replies += 1
                elif isinstance(a, lt.tracker_error_alert):
                    errors.append(a.message())
                elif isinstance(a, lt.torrent_finished_alert) and idx > 0:
                    finished.add(idx)
        # Seeds never emit torrent_finished for leechers: also poll the status.
        for idx, h in enumerate(leechers, start=1):
            if h.status().is_seeding:
                finished.add(idx)
        sessions[0].wait_for_alert(100)
    ok = len(finished) == len(leechers)
    print(json.dumps({
        "ok": ok,
        "finished": len(finished),
        "leechers": len(leechers),
        "tracker_replies": replies,
        "tracker_errors": errors[:5],
        "secs": round(time.time() - start, 3),
    }), flush=True)
    return 0 if ok else 3


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    ih = sub.add_parser("info-hash")
    ih.add_argument("torrent")
    r = sub.add_parser("run")
    r.add_argument("--torrent", required=True)
    r.add_argument("--data", required=True)
    r.add_argument("--work", required=True)
    r.add_argument("--leechers", type=int, default=3)
    r.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    if args.cmd == "info-hash":
        print(str(lt.torrent_info(args.torrent).info_hashes().v1))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
