"""A libtorrent peer for nodus's interop tests.

  lt_peer.py download --torrent T --dir D [--peer IP:PORT]... [--timeout S] [--require-encryption]
  lt_peer.py seed     --torrent T --dir D [--require-encryption]

`download` prints one JSON line when every piece is verified (or on timeout) and exits.
`seed` checks the data in D, prints one JSON line with its listen port once it seeds,
then seeds until its stdin closes.
"""
import argparse
import json
import sys
import threading
import time

import libtorrent as lt


def session(require_encryption):
    s = {
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        "alert_mask": lt.alert.category_t.error_notification | lt.alert.category_t.status_notification,
        "user_agent": "libtorrent-interop",
        # Announce as often as the local tracker asks (default floor: five minutes), so
        # a peer that only accepts connections (Transmission 3) is found soon.
        "min_announce_interval": 5,
        # TCP only, as every client is run in the tests and the benchmark.
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
    }
    if require_encryption:
        s["out_enc_policy"] = lt.enc_policy.forced
        s["in_enc_policy"] = lt.enc_policy.forced
        s["allowed_enc_level"] = lt.enc_level.rc4
        s["prefer_rc4"] = True
    return lt.session(s)


def add(ses, args):
    ti = lt.torrent_info(args.torrent)
    p = lt.add_torrent_params()
    p.ti = ti
    p.save_path = args.dir
    h = ses.add_torrent(p)
    for peer in args.peer or []:
        ip, port = peer.rsplit(":", 1)
        h.connect_peer((ip, int(port)))
    return h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["download", "seed"])
    ap.add_argument("--torrent", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--peer", action="append")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--require-encryption", action="store_true")
    args = ap.parse_args()
    ses = session(args.require_encryption)
    h = add(ses, args)
    start = time.time()
    if args.mode == "download":
        while time.time() - start < args.timeout:
            st = h.status()
            if st.is_seeding:
                print(json.dumps({"ok": True, "seconds": time.time() - start,
                                  "bytes": st.total_wanted, "peers": st.num_peers}), flush=True)
                return 0
            time.sleep(0.05)
        st = h.status()
        print(json.dumps({"ok": False, "progress": st.progress, "state": str(st.state),
                          "peers": st.num_peers, "errors": [a.message() for a in ses.pop_alerts()][-10:]}), flush=True)
        return 1
    # seed
    while time.time() - start < args.timeout:
        st = h.status()
        if st.is_seeding or (st.state == lt.torrent_status.seeding):
            break
        if st.state not in (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data) and st.progress < 1 and st.num_pieces > 0 and st.state == lt.torrent_status.downloading:
            # Partial data: seed what there is.
            break
        time.sleep(0.05)
    st = h.status()
    print(json.dumps({"listen_port": ses.listen_port(), "pieces": st.num_pieces, "seeding": st.is_seeding}), flush=True)
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
