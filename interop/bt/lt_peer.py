"""A libtorrent peer for nodus's interop tests.

  lt_peer.py download (--torrent T | --infohash H | --magnet URI) --dir D [--peer IP:PORT]... [--timeout S]
  lt_peer.py seed     --torrent T --dir D
  common: [--require-encryption] [--utp-only] [--listen IP] [--dht-bootstrap IP:PORT]

With --dht-bootstrap the peer joins the mainline DHT through that node and finds and
announces peers there (trackerless); otherwise its DHT is off.

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


def session(args):
    require_encryption = args.require_encryption
    s = {
        "listen_interfaces": f"{args.listen}:0",
        "enable_dht": bool(args.dht_bootstrap),
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
    if args.utp_only:
        # uTP (BEP 29) both ways; TCP connections are neither made nor accepted.
        s.update({
            "enable_outgoing_utp": True,
            "enable_incoming_utp": True,
            "enable_outgoing_tcp": False,
            "enable_incoming_tcp": False,
        })
    if args.dht_bootstrap:
        s.update({
            "dht_bootstrap_nodes": args.dht_bootstrap,
            # A loopback swarm: every node in one /24, none of them "on the Internet".
            "dht_restrict_routing_ips": False,
            "dht_restrict_search_ips": False,
            "dht_ignore_dark_internet": False,
            "dht_prefer_verified_node_ids": False,
            "dht_announce_interval": 5,
        })
    if require_encryption:
        s["out_enc_policy"] = lt.enc_policy.forced
        s["in_enc_policy"] = lt.enc_policy.forced
        s["allowed_enc_level"] = lt.enc_level.rc4
        s["prefer_rc4"] = True
    return lt.session(s)


def add(ses, args):
    if args.magnet:
        p = lt.parse_magnet_uri(args.magnet)
    elif args.infohash:
        p = lt.parse_magnet_uri("magnet:?xt=urn:btih:" + args.infohash)
    else:
        p = lt.add_torrent_params()
        p.ti = lt.torrent_info(args.torrent)
    p.save_path = args.dir
    h = ses.add_torrent(p)
    for peer in args.peer or []:
        ip, port = peer.rsplit(":", 1)
        h.connect_peer((ip, int(port)))
    return h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["download", "seed"])
    ap.add_argument("--torrent")
    ap.add_argument("--infohash")
    ap.add_argument("--magnet")
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--dht-bootstrap")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--peer", action="append")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--require-encryption", action="store_true")
    ap.add_argument("--utp-only", action="store_true")
    args = ap.parse_args()
    if not args.torrent and not ((args.infohash or args.magnet) and args.mode == "download"):
        ap.error("give --torrent (or --infohash to download)")
    ses = session(args)
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
