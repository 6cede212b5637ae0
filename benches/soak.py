#!/usr/bin/env python3
"""Soak under load with faults (benches/soak.sh runs this; python3 standard library only).

A bounded run of dnsperf load (UDP and TCP, with and without ECS) against a release pooldns
while the inputs are broken on purpose:

* the feed is rewritten every few seconds, alternating good, broken, truncated,
  shrinking-by-two-thirds and oversized versions (renamed into place);
* the zone configuration (plan mode, zones mode, broken TOML) and the GeoIP database
  (two good ones, garbage) are swapped;
* bursts of SIGHUP are sent;
* a second instance polls an HTTP feed that flaps (good, 500, garbage, stalls, resets);
* the query log writes to a small tmpfs that fills up.

A checker asks pool names throughout and verifies every answer against the feed that was
live (both good feeds have different servers; an answer may use the previous feed for a
few seconds after a switch, never a mix). Printed: lost queries, wrong answers, SERVFAILs,
RSS and open file descriptors at start and end, refused loads by input and reason. Exit 1
when a target is missed: lost or wrong answers, SERVFAILs, or RSS / fds that grew.
"""

import argparse
import http.server
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "load"))
import lb  # noqa: E402  (the load bench's helpers: query files, DNS parsing, dnsperf output)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg):
    print(f"soak: {msg}", file=sys.stderr, flush=True)


def feed_ips(path):
    with open(path) as f:
        feed = json.load(f)
    out = set()
    for s in feed["servers"]:
        if s.get("netspeed", 0) > 0 and s.get("score", -100) >= 10:
            ip = s["ip"]
            out.add(socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip))
    return out


def place(src, dst):
    """Puts `src` at `dst` the way deploy tools do: a hard link beside it, renamed over."""
    aside = dst + ".new"
    try:
        os.unlink(aside)
    except FileNotFoundError:
        pass
    os.link(src, aside)
    os.rename(aside, dst)


def proc_stats(pid):
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds


def metrics(port):
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return ""


class FlappingFeed(http.server.BaseHTTPRequestHandler):
    """Serves the feed at /feed.json in the mode the soak sets: good-a, good-b, 500,
    garbage, stall (longer than the poller's timeout), reset."""

    mode = "good-a"
    files = {}

    def do_GET(self):  # noqa: N802 (the standard library's name)
        mode = FlappingFeed.mode
        if mode == "reset":
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if mode == "stall":
            time.sleep(20)
            return
        if mode == "500":
            self.send_response(500)
            self.end_headers()
            return
        body = b"<html>garbage</html>" if mode == "garbage" else FlappingFeed.files[mode]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, *args):
        pass


class Checker(threading.Thread):
    """Asks pool names at `rate` q/s and checks every answer against the live feed."""

    NAMES = ["0", "1", "2", "3", "@", "0.debian", "de", "2.fr", "us"]

    def __init__(self, port, sets, rate):
        super().__init__(daemon=True)
        self.port, self.sets, self.rate = port, sets, rate
        self.live = "good-a"
        self.previous = "good-a"
        self.switched = 0.0
        self.stop_at = None
        self.stats = dict(sent=0, answered=0, timeouts=0, wrong=0, servfail=0, other_rcode=0)
        self.examples = []

    def switch(self, to):
        if to != self.live:
            self.previous, self.live, self.switched = self.live, to, time.time()

    def ok(self, addrs, now):
        allowed = [self.live]
        # The new feed is live within a second or two; the old one until then.
        if now - self.switched < 4.0:
            allowed.append(self.previous)
        return any(all(a in self.sets[name] for a in addrs) for name in allowed)

    def run(self):
        rng = random.Random(5)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(2.0)
        subnets = [(1, 24, lb.public_v4(rng)) for _ in range(100)]
        qid = 0
        interval = 1.0 / self.rate
        while self.stop_at is None or time.time() < self.stop_at:
            qid = (qid + 1) & 0xFFFF
            name = self.NAMES[rng.randrange(len(self.NAMES))]
            ecs = rng.choice(subnets) if rng.random() < 0.5 else None
            wire = lb.make_query(lb.fqdn(name), "A", qid=qid, edns=True, ecs=ecs)
            self.stats["sent"] += 1
            answered = None
            for _ in range(3):  # a lost datagram on loopback is retried, then counted
                try:
                    sock.sendto(wire, ("127.0.0.1", self.port))
                    while True:
                        msg = sock.recv(4096)
                        if msg[:2] == wire[:2]:
                            answered = msg
                            break
                    break
                except socket.timeout:
                    continue
            now = time.time()
            if answered is None:
                self.stats["timeouts"] += 1
                continue
            self.stats["answered"] += 1
            _, rcode, recs = lb.parse_response(answered)
            if rcode == 2:
                self.stats["servfail"] += 1
                continue
            if rcode != 0:
                self.stats["other_rcode"] += 1
                continue
            addrs = [rd for t, rd in recs if t == 1]
            # 4 records, or fewer for a small country in zones mode; never duplicates.
            distinct = len(set(addrs)) == len(addrs)
            if not (1 <= len(addrs) <= 4 and distinct) or not self.ok(addrs, now):
                self.stats["wrong"] += 1
                if len(self.examples) < 5:
                    self.examples.append(f"{lb.fqdn(name)}: {len(addrs)} records, live {self.live}")
            time.sleep(interval)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pooldns", required=True)
    ap.add_argument("--gen-feed", required=True)
    ap.add_argument("--duration", type=int, default=600)
    ap.add_argument("--servers", type=int, default=20000)
    ap.add_argument("--every", type=float, default=3.0, help="seconds between faults")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="pooldns-soak.")
    procs = []
    try:
        return run(args, tmp, procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        qlog = os.path.join(tmp, "qlog")
        if os.path.ismount(qlog):
            subprocess.run(["umount", qlog], check=False)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")


def run(args, tmp, procs):
    j = lambda *p: os.path.join(tmp, *p)  # noqa: E731
    log(f"feeds of {args.servers} servers in {tmp}")
    for name, seed, serial in (("good-a", 1, 1000001), ("good-b", 2, 1000002)):
        with open(j(name), "w") as f:
            subprocess.run([args.gen_feed, "--servers", str(args.servers), "--seed", str(seed),
                            "--serial", str(serial)], stdout=f, check=True)
    sets = {name: feed_ips(j(name)) for name in ("good-a", "good-b")}
    good_a = open(j("good-a"), "rb").read()
    with open(j("broken"), "wb") as f:
        f.write(b'{"serial": 5, "servers": [\n')
    with open(j("truncated"), "wb") as f:
        f.write(good_a[: len(good_a) // 2])
    feed = json.loads(good_a)
    feed["servers"] = feed["servers"][: len(feed["servers"]) // 3]
    feed["serial"] = 1000003
    with open(j("shrink"), "w") as f:
        json.dump(feed, f)
    # Oversized: the live feed's own servers padded past any sane size limit, so that
    # accepted or refused, the live servers stay the same.
    for name in ("good-a", "good-b"):
        with open(j(name + "-oversized"), "wb") as f:
            body = open(j(name), "rb").read()
            f.write(body.rstrip()[:-1] + b" " * (300 << 20) + b"}\n")

    bundled = open(os.path.join(ROOT, "zones/pool.ntp.org.toml")).read()
    bundled = re.sub(r'(?m)^geoip = .*$', "", bundled)
    with open(j("config-plan"), "w") as f:
        f.write(bundled)
    with open(j("config-zones"), "w") as f:
        f.write(bundled.replace('mode = "plan"', 'mode = "zones"'))
    with open(j("config-broken"), "w") as f:
        f.write("origin =\n[soa]\n")
    shutil.copy(os.path.join(ROOT, "data/dbip-country.mmdb"), j("geoip-dbip"))
    shutil.copy(os.path.join(ROOT, "tests/data/geoip/GeoIP2-Country-Test.mmdb"), j("geoip-test"))
    with open(j("geoip-garbage"), "wb") as f:
        f.write(os.urandom(4096))

    os.makedirs(j("qlog"))
    tmpfs = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", j("qlog")],
                           capture_output=True).returncode == 0
    log("query log on a 1 MiB tmpfs" if tmpfs else "no tmpfs (not root?): query log on disk")

    place(j("good-a"), j("feed.json"))
    place(j("config-plan"), j("zone.toml"))
    place(j("geoip-dbip"), j("geoip.mmdb"))
    ports = {n: int(subprocess.check_output([sys.executable, lb.__file__, "freeport"]))
             for n in ("dns", "http", "dns2", "http2")}
    feed_srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlappingFeed)
    FlappingFeed.files = {"good-a": good_a, "good-b": open(j("good-b"), "rb").read()}
    threading.Thread(target=feed_srv.serve_forever, daemon=True).start()

    common = ["--udp-workers", "1", "--tcp-max-connections", "256"]
    a = subprocess.Popen(
        [args.pooldns, "serve", "--config", j("zone.toml"), "--feed", j("feed.json"),
         "--geoip", j("geoip.mmdb"), "--listen", f"127.0.0.1:{ports['dns']}",
         "--http", f"127.0.0.1:{ports['http']}", "--state-dir", j("state"),
         "--query-log", j("qlog", "queries.log"), "--query-log-max-mb", "1", *common],
        stdout=subprocess.DEVNULL, stderr=open(j("pooldns.log"), "w"),
        env=dict(os.environ, NO_COLOR="1", RUST_LOG="info"))
    procs.append(a)
    b = subprocess.Popen(
        [args.pooldns, "serve", "--config", j("config-plan"), "--feed",
         f"http://127.0.0.1:{feed_srv.server_address[1]}/feed.json", "--feed-interval", "1",
         "--geoip", j("geoip-dbip"), "--listen", f"127.0.0.1:{ports['dns2']}",
         "--http", f"127.0.0.1:{ports['http2']}", "--state-dir", j("state2"), *common],
        stdout=subprocess.DEVNULL, stderr=open(j("pooldns-url.log"), "w"),
        env=dict(os.environ, NO_COLOR="1", RUST_LOG="info"))
    procs.append(b)
    for port in (ports["dns"], ports["dns2"]):
        for _ in range(300):
            if subprocess.run([sys.executable, lb.__file__, "probe", str(port)]).returncode == 0:
                break
            time.sleep(0.1)
        else:
            log(f"pooldns on {port} did not start; see {tmp}")
            return 1

    subprocess.run([sys.executable, lb.__file__, "queries", j("q"), "--count", "50000"],
                   check=True, stdout=subprocess.DEVNULL)
    time.sleep(2)
    # RSS and fds at the start, then after the first quarter of the run (every input has
    # been loaded, broken and swapped by then: the allocator's pools are warm), and at the
    # end; "flat" compares the end with the warm sample.
    start_stats = {"a": proc_stats(a.pid), "b": proc_stats(b.pid)}
    duration = args.duration
    warm_at = time.time() + duration / 4
    warm_stats = None
    loads = []
    for label, port, mode, qfile, rate in (
        ("udp", ports["dns"], "udp", "mix.bin", 4000), ("udp-ecs", ports["dns"], "udp", "ecs.bin", 4000),
        ("tcp", ports["dns"], "tcp", "mix.bin", 1000), ("tcp-ecs", ports["dns"], "tcp", "ecs.bin", 1000),
        ("udp-url", ports["dns2"], "udp", "ecs.bin", 1000),
    ):
        out = j(f"dnsperf-{label}.txt")
        p = subprocess.Popen(
            ["dnsperf", "-B", "-s", "127.0.0.1", "-p", str(port), "-m", mode, "-d", j("q", qfile),
             "-l", str(duration), "-Q", str(rate), "-c", "4", "-t", "5"],
            stdout=open(out, "w"), stderr=subprocess.STDOUT)
        procs.append(p)
        loads.append((label, p, out))
    checker = Checker(ports["dns"], sets, rate=200)
    checker.stop_at = time.time() + duration
    checker.start()

    feed_cycle = ["good-b", "broken", "good-a", "truncated", "shrink", "good-b", "oversized",
                  "good-a", "oversized"]
    config_cycle = ["config-zones", "config-broken", "config-plan"]
    geoip_cycle = ["geoip-test", "geoip-garbage", "geoip-dbip"]
    url_cycle = ["good-b", "500", "garbage", "good-a", "stall", "reset", "good-b", "good-a"]
    step = 0
    end = time.time() + duration - 2 * args.every
    while time.time() < end:
        version = feed_cycle[step % len(feed_cycle)]
        if version == "oversized":
            place(j(checker.live + "-oversized"), j("feed.json"))
        else:
            place(j(version), j("feed.json"))
            if version in sets:
                checker.switch(version)
        if step % 4 == 1:
            place(j(config_cycle[(step // 4) % len(config_cycle)]), j("zone.toml"))
        if step % 5 == 2:
            place(j(geoip_cycle[(step // 5) % len(geoip_cycle)]), j("geoip.mmdb"))
        if step % 7 == 3:
            for _ in range(10):
                a.send_signal(signal.SIGHUP)
                time.sleep(0.01)
        FlappingFeed.mode = url_cycle[step % len(url_cycle)]
        step += 1
        time.sleep(args.every)
        if warm_stats is None and time.time() >= warm_at:
            warm_stats = {"a": proc_stats(a.pid), "b": proc_stats(b.pid)}
    # End on good inputs.
    place(j(checker.live), j("feed.json"))
    place(j("config-plan"), j("zone.toml"))
    place(j("geoip-dbip"), j("geoip.mmdb"))
    FlappingFeed.mode = "good-a"
    for _, p, _ in loads:
        p.wait()
    checker.join()
    end_stats = {"a": proc_stats(a.pid), "b": proc_stats(b.pid)}

    ok = True
    print(f"\nsoak: {duration} s, {step} fault steps every {args.every} s, {args.servers}-server feeds")
    print(f"  {'load':<8} {'sent':>9} {'lost':>6} {'q/s':>8}  rcodes")
    lost_total = 0
    servfail = 0
    for label, _, out in loads:
        r = lb.parse_dnsperf(out)
        lost_total += r.get("lost") or 0
        m = re.search(r"SERVFAIL (\d+)", r.get("rcodes", ""))
        servfail += int(m.group(1)) if m else 0
        print(f"  {label:<8} {r.get('sent') or 0:>9} {r.get('lost') or 0:>6} "
              f"{r.get('qps') or 0:>8.0f}  {r.get('rcodes', '')}")
    s = checker.stats
    print(f"  checker: {s['sent']} asked, {s['answered']} answered, {s['timeouts']} unanswered "
          f"after 3 tries, {s['wrong']} wrong, {s['servfail']} SERVFAIL, {s['other_rcode']} other rcodes")
    for e in checker.examples:
        print(f"    {e}")
    warm_stats = warm_stats or end_stats
    for name in ("a", "b"):
        (rss0, fd0), (rssw, fdw), (rss1, fd1) = start_stats[name], warm_stats[name], end_stats[name]
        print(f"  instance {name}: RSS {rss0 / 1024:.1f} at start, {rssw / 1024:.1f} warm, "
              f"{rss1 / 1024:.1f} MiB at the end; open fds {fd0}, {fdw}, {fd1}")
        # Flat: the end within 15 % (+8 MiB) of the warm sample, fds within 4 of the start.
        if rss1 > rssw * 1.15 + 8192 or fd1 > fd0 + 4:
            ok = False
    for name, port in (("a", ports["http"]), ("b", ports["http2"])):
        text = metrics(port)
        rows = re.findall(r'pooldns_loads_total\{input="(\w+)",result="(\w+)"\} (\d+)', text)
        print(f"  instance {name} loads: " + ", ".join(f"{i} {r} {n}" for i, r, n in rows if n != "0"))
        dropped = re.search(r"pooldns_query_log_dropped_total (\d+)", text)
        written = re.search(r"pooldns_query_log_written_total (\d+)", text)
        if dropped and written and name == "a":
            print(f"  instance a query log (1 MiB tmpfs): {written.group(1)} entries written, "
                  f"{dropped.group(1)} dropped")
    reasons = {}
    for path in (j("pooldns.log"), j("pooldns-url.log")):
        for line in open(path, errors="replace"):
            if " ERROR " not in line:
                continue
            for key, pattern in (("not a feed", "not a feed"), ("cannot read", "cannot read"),
                                 ("drops more than half", "more than half"),
                                 ("too large", "larger than"), ("HTTP status", "HTTP status"),
                                 ("cannot fetch", "cannot fetch"), ("TOML", "TOML parse"),
                                 ("GeoIP", "GeoIP database")):
                if pattern in line:
                    reasons[key] = reasons.get(key, 0) + 1
                    break
            else:
                reasons["other"] = reasons.get("other", 0) + 1
    print("  refusals by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))
    if lost_total or s["wrong"] or s["servfail"] or servfail or s["timeouts"]:
        ok = False
    print("  target: 0 lost, 0 wrong, 0 SERVFAIL, RSS and fds flat: " + ("met" if ok else "MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
