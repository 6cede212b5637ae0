#!/usr/bin/env python3
"""Helpers for benches/load.sh (python3 standard library only).

Subcommands (each prints to stdout unless told otherwise):

  queries DIR         write the dnsperf query files (binary, for `dnsperf -B`) and the list of
                      (name, type) pairs they ask, plus a readable sample
  zone                write a static zone equivalent to what pooldns answers for those names
  gdnsd               write a gdnsd configuration (geoip + weighted plugins) and zone that
                      answer those names per query like pooldns
  equivalence         send every distinct query to each server, without ECS and from a few
                      client subnets, and compare rcode, answer count and response size (a
                      guard that the comparison is fair)
  freeport            print a loopback port free for UDP and TCP
  probe PORT          exit 0 when a server answers on 127.0.0.1:PORT
  ticks PID           utime+stime (clock ticks) of PID and all its descendants
  rss PID             VmRSS and VmHWM (kB) of PID
  measure -- CMD      run dnsperf, measure server CPU around it, append a JSON line
  swapper             rewrite the feed every few seconds, alternating two files, by rename
  check               query pooldns during swaps and verify every answer against both feeds
  reload-report       summarise the reload-under-load run; exit 1 when a target is missed
  report              print the result tables (medians over repetitions) and the ratios
"""

import argparse
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import time

ORIGIN = "pool.ntp.org"

# ------------------------------------------------------------------------------------------
# The query mix: (relative name, type, weight per 1000). "@" is the apex. It is shaped like
# pool traffic: mostly A for the numbered names, the apex, vendor and country names; AAAA where
# pooldns serves it (under "2.") and where it answers NODATA; NXDOMAIN; SOA/NS at the apex.

NUMBERED = [("0", "A", 110), ("1", "A", 105), ("2", "A", 100), ("3", "A", 95)]
APEX = [("@", "A", 100)]
VENDORS = [
    ("0.debian", "A", 20), ("1.debian", "A", 15), ("2.debian", "A", 15), ("3.debian", "A", 10),
    ("0.android", "A", 15), ("1.android", "A", 10), ("2.android", "A", 5),
    ("0.ubuntu", "A", 6), ("1.centos", "A", 6), ("0.openwrt", "A", 6), ("2.fedora", "A", 5),
    ("0.rhel", "A", 4), ("1.opensuse", "A", 3),
]
COUNTRIES = [
    ("de", "A", 18), ("us", "A", 18), ("fr", "A", 10), ("uk", "A", 8), ("gb", "A", 4),
    ("nl", "A", 8), ("jp", "A", 6), ("ca", "A", 5), ("au", "A", 5), ("ch", "A", 4),
    ("se", "A", 3), ("br", "A", 3), ("sg", "A", 3), ("in", "A", 3), ("za", "A", 2),
    ("0.de", "A", 8), ("1.de", "A", 5), ("2.fr", "A", 6), ("1.us", "A", 6), ("0.us", "A", 5),
    ("3.uk", "A", 3), ("0.nl", "A", 3), ("2.jp", "A", 2),
    ("europe", "A", 6), ("asia", "A", 4), ("north-america", "A", 3), ("0.europe", "A", 3),
    ("1.asia", "A", 2), ("2.south-america", "A", 1),
]
AAAA = [
    ("2", "AAAA", 50), ("2.debian", "AAAA", 8), ("2.de", "AAAA", 5), ("2.us", "AAAA", 4),
    ("2.europe", "AAAA", 3),
]
NODATA = [("0", "AAAA", 15), ("1", "AAAA", 10), ("3", "AAAA", 8), ("@", "AAAA", 12),
          ("0.debian", "AAAA", 5), ("@", "TXT", 2), ("de", "MX", 1)]
META = [("@", "SOA", 12), ("@", "NS", 12)]
# NXDOMAIN: typos, search-list accidents, names that do not exist (4.), and random labels
# (the "random subdomain" pattern; RANDOM is replaced by a fresh label per query).
NXDOMAIN = [("4", "A", 8), ("time", "A", 5), ("ntp", "A", 4), ("0.pool.ntp.org", "A", 4),
            ("xx", "A", 3), ("5.de", "A", 2), ("RANDOM", "A", 24)]

MIX = NUMBERED + APEX + VENDORS + COUNTRIES + AAAA + NODATA + META + NXDOMAIN
CATEGORY = {}
for _cat, _rows in (("A numbered", NUMBERED), ("A apex", APEX), ("A vendor", VENDORS),
                    ("A country/continent", COUNTRIES), ("AAAA answer", AAAA),
                    ("NODATA", NODATA), ("SOA/NS", META), ("NXDOMAIN", NXDOMAIN)):
    for _row in _rows:
        CATEGORY[(_row[0], _row[1])] = _cat

QTYPE = {"A": 1, "NS": 2, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28}


def fqdn(rel):
    return ORIGIN if rel == "@" else f"{rel}.{ORIGIN}"


def encode_name(name):
    out = bytearray()
    for label in name.rstrip(".").split("."):
        raw = label.encode()
        out.append(len(raw))
        out += raw
    out.append(0)
    return bytes(out)


def make_query(name, qtype, qid=0, edns=True, do=False, ecs=None, bufsize=1232, rd=False):
    """A query in wire format. ecs = (family, source prefix, address bytes) or None."""
    flags = 0x0100 if rd else 0
    ar = 1 if edns else 0
    msg = struct.pack("!HHHHHH", qid, flags, 1, 0, 0, ar)
    msg += encode_name(name) + struct.pack("!HH", QTYPE[qtype], 1)
    if edns:
        opts = b""
        if ecs is not None:
            family, prefix, addr = ecs
            nbytes = (prefix + 7) // 8
            data = struct.pack("!HBB", family, prefix, 0) + addr[:nbytes]
            opts += struct.pack("!HH", 8, len(data)) + data
        ttl = 0x8000 if do else 0
        msg += b"\x00" + struct.pack("!HHIH", 41, bufsize, ttl, len(opts)) + opts
    return msg


def random_case(rng, name):
    return "".join(c.upper() if c.isalpha() and rng.random() < 0.5 else c for c in name)


def public_v4(rng):
    """A random /24 outside private, shared, loopback, link-local, multicast, documentation
    and benchmarking space (so that GeoIP decides its country)."""
    while True:
        a, b, c = rng.randrange(1, 224), rng.randrange(256), rng.randrange(256)
        if a in (10, 100, 127) and (a != 100 or 64 <= b < 128) or a == 0:
            continue
        if (a, b) in ((169, 254), (192, 168)) or (a == 172 and 16 <= b < 32):
            continue
        if (a, b) in ((198, 18), (198, 19)) or (a, b, c) in ((192, 0, 2), (198, 51, 100),
                                                             (203, 0, 113), (192, 0, 0)):
            continue
        return bytes([a, b, c, 0])


def public_v6(rng):
    """A random /56 in the RIR-allocated 2400::/12 (APNIC), 2600::/12 (ARIN), 2a00::/12
    (RIPE), 2800::/12 (LACNIC) or 2c00::/12 (AFRINIC) blocks."""
    top = rng.choice([0x2400, 0x2600, 0x2a00, 0x2a00, 0x2800, 0x2c00])
    first = top | rng.randrange(0x10)
    rest = bytes(rng.randrange(256) for _ in range(5))
    return struct.pack("!H", first) + rest + b"\x00" * 9


def cmd_queries(args):
    rng = random.Random(args.seed)
    os.makedirs(args.dir, exist_ok=True)
    population = [(n, t) for n, t, _ in MIX]
    weights = [w for _, _, w in MIX]
    picks = rng.choices(population, weights, k=args.count)
    subnets = [(1, 24, public_v4(rng)) if rng.random() < 0.8 else (2, 56, public_v6(rng))
               for _ in range(4000)]
    counts = {}
    plain = bytearray()
    ecs = bytearray()
    # The DO comparison (--dnssec): the same queries, all with EDNS, with and without DO.
    with_do = bytearray()
    without_do = bytearray()
    sample = []
    for i, (rel, qtype) in enumerate(picks):
        if rel == "RANDOM":
            rel = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789")
                          for _ in range(rng.randrange(6, 14)))
            cat = "NXDOMAIN"
        else:
            cat = CATEGORY[(rel, qtype)]
        counts[cat] = counts.get(cat, 0) + 1
        name = fqdn(rel)
        if rng.random() < 0.10:      # 0x20 case randomisation, as some resolvers do
            name = random_case(rng, name)
        # Without ECS: 85 % EDNS (10 % of them with DO), 15 % plain DNS.
        edns = rng.random() < 0.85
        do = edns and rng.random() < 0.10
        q = make_query(name, qtype, edns=edns, do=do)
        plain += struct.pack("!H", len(q)) + q
        # With ECS: every query has EDNS and a client subnet (80 % IPv4 /24, 20 % IPv6 /56).
        sub = rng.choice(subnets)
        q = make_query(name, qtype, edns=True, do=do, ecs=sub)
        ecs += struct.pack("!H", len(q)) + q
        for out, flag in ((with_do, True), (without_do, False)):
            q = make_query(name, qtype, edns=True, do=flag)
            out += struct.pack("!H", len(q)) + q
        if i < 40:
            family = socket.AF_INET if sub[0] == 1 else socket.AF_INET6
            sample.append(f"{name} {qtype} edns={int(edns)} do={int(do)} "
                          f"ecs={socket.inet_ntop(family, sub[2])}/{sub[1]}")
    with open(os.path.join(args.dir, "mix.bin"), "wb") as f:
        f.write(plain)
    with open(os.path.join(args.dir, "ecs.bin"), "wb") as f:
        f.write(ecs)
    with open(os.path.join(args.dir, "do.bin"), "wb") as f:
        f.write(with_do)
    with open(os.path.join(args.dir, "nodo.bin"), "wb") as f:
        f.write(without_do)
    with open(os.path.join(args.dir, "sample.txt"), "w") as f:
        f.write("\n".join(sample) + "\n")
    names = sorted({(n, t, CATEGORY[(n, t)]) for n, t, _ in MIX if n != "RANDOM"})
    with open(os.path.join(args.dir, "names.json"), "w") as f:
        json.dump(names, f)
    total = sum(counts.values())
    parts = ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in sorted(counts.items(),
                                                                       key=lambda kv: -kv[1]))
    print(f"{total} queries, {len(names)} distinct names+types plus random NXDOMAIN labels: {parts}")


# ------------------------------------------------------------------------------------------
# Feed and configuration


def load_feed(path, min_score):
    with open(path) as f:
        feed = json.load(f)
    v4, v6 = [], []
    for s in feed["servers"]:
        if s.get("netspeed", 0) > 0 and s.get("score", -1000) >= min_score:
            (v6 if ":" in s["ip"] else v4).append(s)
    return v4, v6


def load_config(path):
    import tomllib
    with open(path, "rb") as f:
        return tomllib.load(f)


def cmd_zone(args):
    """A zone with, for every name the query files ask for, 4 A (and under "2." 4 AAAA) records
    at the answer TTL, taken from the feed's eligible servers (of that country where the name is
    a country), plus the configuration's SOA, NS and static records: the same answers, in
    size and shape, that pooldns gives, only static."""
    cfg = load_config(args.config)
    answers = cfg.get("answers", {})
    ttl = answers.get("ttl", 150)
    k = answers.get("records", 4)
    min_score = answers.get("min_score", 10.0)
    aliases = cfg.get("aliases", {})
    v4, v6 = load_feed(args.feed, min_score)
    rng = random.Random(7)
    with open(args.names) as f:
        names = [(n, t) for n, t, cat in json.load(f) if cat not in ("NXDOMAIN", "NODATA")]

    def pick(servers, rel):
        labels = rel.split(".")
        cc = aliases.get(labels[-1], labels[-1])
        local = [s for s in servers if aliases.get(s.get("country"), s.get("country")) == cc]
        return [s["ip"] for s in rng.sample(local if len(local) >= k else servers, k)]

    out = zone_static_lines(cfg)
    done = set()
    for rel, qtype in names:
        if qtype not in ("A", "AAAA") or (rel, qtype) in done:
            continue
        done.add((rel, qtype))
        if qtype == "AAAA" and rel.split(".")[0] != "2":
            continue                  # pooldns serves AAAA only under "2." (NODATA elsewhere)
        for ip in pick(v4 if qtype == "A" else v6, rel):
            out.append(f"{rel} {ttl} IN {qtype} {ip}")
    with open(args.out, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"{len(done)} names with {k} records each")


def zone_static_lines(cfg):
    """$ORIGIN, $TTL, the SOA, NS and static records of the zone configuration, as zone file
    lines (the part of the zone that is the same for NSD, Knot and gdnsd)."""
    soa = cfg["soa"]
    ns = cfg["ns"]
    out = [f"$ORIGIN {ORIGIN}.", f"$TTL {soa.get('ttl', 3600)}",
           f"@ {soa.get('ttl', 3600)} IN SOA {soa['mname'].rstrip('.')}. "
           f"{soa['rname'].rstrip('.')}. 1 {soa.get('refresh', 5400)} {soa.get('retry', 5400)} "
           f"{soa.get('expire', 1209600)} {soa.get('minimum', 3600)}"]
    for n in ns["names"]:
        out.append(f"@ {ns.get('ttl', 86400)} IN NS {n.rstrip('.')}.")
    for r in cfg.get("records", []):
        value = r["value"]
        if r["type"] == "TXT":
            vals = value if isinstance(value, list) else [value]
            value = " ".join('"' + v.replace('"', '\\"') + '"' for v in vals)
        elif r["type"] in ("CNAME", "NS"):
            value = value.rstrip(".") + "."
        elif r["type"] in ("MX", "SRV"):
            parts = value.split()
            parts[-1] = parts[-1] if parts[-1].endswith(".") else parts[-1] + "."
            value = " ".join(parts)
        out.append(f"{r['name']} {r.get('ttl', 3600)} IN {r['type']} {value}")
    return out


# gdnsd with its geoip and weighted plugins: the same names, answered per query

CONTINENT_SHORT = {"AF": "africa", "AS": "asia", "EU": "europe", "NA": "north-america",
                   "OC": "oceania", "SA": "south-america"}
# The weighted plugin takes at most 64 addresses per group; 4 groups, one address from each.
GDNSD_GROUP_MAX = 64
GDNSD_WEIGHT_MAX = (1 << 20) - 1


def pooldns_countries(path):
    """Country code -> continent label, from pooldns' own table (src/continent.rs)."""
    src = open(path).read()
    table = {cc: CONTINENT_SHORT[c]
             for cc, c in re.findall(r'\("([a-z]{2})", (AF|AS|EU|NA|OC|SA),', src)}
    if len(table) < 200:
        raise SystemExit(f"lb.py gdnsd: could not read the country table of {path}")
    return table


def ramped_weight(s, min_score, full):
    """pooldns' weight of a server (table::ramped_weight): the net speed from
    full_weight_score on, linear from min_score up to there, at least 1."""
    ns, score = s["netspeed"], s["score"]
    if score >= full:
        return ns
    return min(ns, max(1, round(ns * (score - min_score) / (full - min_score))))


def gdnsd_groups(servers, k, rng):
    """The addrs of one weighted resource (one family): k groups of at most 64 servers each,
    a uniform random subset when there are more, weights = pooldns' weights / 100 (gdnsd's
    range is 1 .. 2^20-1), the groups' weight sums made exactly equal (the largest member of
    each lighter group gets the difference) so that grouped-multi mode always takes every
    group and answers k addresses, one weighted pick per group."""
    cap = k * GDNSD_GROUP_MAX
    subset = servers if len(servers) <= cap else rng.sample(servers, cap)
    items = sorted(((max(1, round(w / 100)), ip) for ip, w in subset), reverse=True)
    groups = [[] for _ in range(min(k, len(items)))]
    sums = [0] * len(groups)
    for w, ip in items:               # largest first into the lightest group that has room
        g = min((i for i in range(len(groups)) if len(groups[i]) < GDNSD_GROUP_MAX),
                key=lambda i: sums[i])
        groups[g].append([ip, w])
        sums[g] += w
    top = max(sums)
    for g, total in zip(groups, sums):
        need = top - total
        for member in g:              # the heaviest first (sorted above)
            add = min(need, GDNSD_WEIGHT_MAX - member[1])
            member[1] += add
            need -= add
        if need:
            raise SystemExit("lb.py gdnsd: cannot balance the weighted groups")
    return groups


def vscf_addrs(groups, indent):
    pad = " " * indent
    out = []
    for i, g in enumerate(groups):
        out.append(f"{pad}g{i} => {{")
        out += [f"{pad}  s{j} => [ {ip}, {w} ]" for j, (ip, w) in enumerate(g)]
        out.append(f"{pad}}}")
    return out


def mmdb_decode(buf, off, base):
    """(value, next offset) of one MaxMind DB data field at buf[off] (maps, arrays, strings,
    unsigned ints, pointers: what country databases hold); base = data section start."""
    ctrl = buf[off]
    off += 1
    typ = ctrl >> 5
    if typ == 1:                      # pointer
        ss = (ctrl >> 3) & 3
        v = ctrl & 7
        extra = (0, 2048, 526336, 0)[ss]
        raw = int.from_bytes(buf[off:off + ss + 1], "big")
        ptr = (raw if ss == 3 else (v << (8 * (ss + 1))) | raw) + extra
        return mmdb_decode(buf, base + ptr, base)[0], off + ss + 1
    if typ == 0:
        typ = 7 + buf[off]
        off += 1
    size = ctrl & 31
    if size >= 29:
        n = size - 28
        size = (29, 285, 65821)[n - 1] + int.from_bytes(buf[off:off + n], "big")
        off += n
    if typ == 2:
        return buf[off:off + size].decode(), off + size
    if typ in (5, 6, 9, 10):
        return int.from_bytes(buf[off:off + size], "big"), off + size
    if typ == 7:
        d = {}
        for _ in range(size):
            k, off = mmdb_decode(buf, off, base)
            d[k], off = mmdb_decode(buf, off, base)
        return d, off
    if typ == 11:
        a = []
        for _ in range(size):
            v, off = mmdb_decode(buf, off, base)
            a.append(v)
        return a, off
    if typ == 14:
        return bool(size), off
    if typ == 3:
        return struct.unpack("!d", buf[off:off + 8])[0], off + 8
    if typ == 4:
        return bytes(buf[off:off + size]), off + size
    raise SystemExit(f"lb.py: MaxMind DB field type {typ} not handled")


def mmdb_encode(v, typ=None):
    def head(t, size):
        if size < 29:
            b, extra = size, b""
        elif size < 285:
            b, extra = 29, bytes([size - 29])
        elif size < 65821:
            b, extra = 30, (size - 285).to_bytes(2, "big")
        else:
            b, extra = 31, (size - 65821).to_bytes(3, "big")
        if t <= 7:
            return bytes([(t << 5) | b]) + extra
        return bytes([b, t - 7]) + extra
    if isinstance(v, str):
        raw = v.encode()
        return head(2, len(raw)) + raw
    if isinstance(v, dict):
        return head(7, len(v)) + b"".join(mmdb_encode(k) + mmdb_encode(x, typ.get(k) if
                                                                       isinstance(typ, dict) else None)
                                          for k, x in v.items())
    if isinstance(v, list):
        return head(11, len(v)) + b"".join(mmdb_encode(x) for x in v)
    if isinstance(v, int):
        t = typ or 9
        raw = v.to_bytes((v.bit_length() + 7) // 8, "big")
        return head(t, len(raw)) + raw
    raise SystemExit(f"lb.py: cannot encode {v!r}")


def mmdb_for_gdnsd(src, dst, continent_of, aliases):
    """Rewrites a country database of the flat shape {"country_code": "DE"} (DB-IP, what
    pooldns reads) into MaxMind's GeoIP2-Country shape {"continent": {"code": "EU"},
    "country": {"iso_code": "DE"}}, which gdnsd's geoip plugin needs: the same search tree
    (so exactly the same networks), new data records, the continent from pooldns' own table
    so that gdnsd's continent level is pooldns' continent."""
    buf = open(src, "rb").read()
    marker = b"\xab\xcd\xefMaxMind.com"
    mpos = buf.rindex(marker)
    meta, _ = mmdb_decode(buf, mpos + len(marker), mpos + len(marker))
    nodes, rs = meta["node_count"], meta["record_size"]
    if rs not in (24, 28, 32):
        raise SystemExit(f"lb.py: record size {rs} not handled")
    tree_len = nodes * rs // 4
    base = tree_len + 16
    code_of = {"africa": "AF", "asia": "AS", "europe": "EU", "north-america": "NA",
               "oceania": "OC", "south-america": "SA"}
    new_data = bytearray()
    remap = {}

    def record(old):
        off = old - nodes - 16
        if off not in remap:
            rec, _ = mmdb_decode(buf, base + off, base)
            cc = rec.get("country_code") or (rec.get("country") or {}).get("iso_code")
            lc = (cc or "").lower()
            cont = continent_of.get(aliases.get(lc, lc))
            new = {}
            if cont:
                new["continent"] = {"code": code_of[cont]}
            if cc:
                new["country"] = {"iso_code": cc.upper()}
            remap[off] = nodes + 16 + len(new_data)
            new_data.extend(mmdb_encode(new))
        return remap[off]

    tree = bytearray(buf[:tree_len])
    if rs == 24:
        for i in range(0, tree_len, 3):
            v = int.from_bytes(tree[i:i + 3], "big")
            if v > nodes:
                tree[i:i + 3] = record(v).to_bytes(3, "big")
    elif rs == 32:
        for i in range(0, tree_len, 4):
            v = int.from_bytes(tree[i:i + 4], "big")
            if v > nodes:
                tree[i:i + 4] = record(v).to_bytes(4, "big")
    else:
        for n in range(nodes):
            i = n * 7
            left = (((tree[i + 3] >> 4) & 15) << 24) | int.from_bytes(tree[i:i + 3], "big")
            right = ((tree[i + 3] & 15) << 24) | int.from_bytes(tree[i + 4:i + 7], "big")
            left = record(left) if left > nodes else left
            right = record(right) if right > nodes else right
            tree[i:i + 3] = (left & 0xFFFFFF).to_bytes(3, "big")
            tree[i + 3] = ((left >> 24) << 4) | (right >> 24)
            tree[i + 4:i + 7] = (right & 0xFFFFFF).to_bytes(3, "big")
    if max(remap.values(), default=0) >= 1 << rs:
        raise SystemExit("lb.py: the rewritten database does not fit its record size")
    meta["database_type"] = "GeoIP2-Country"
    meta["description"] = {"en": "pooldns bench: " + os.path.basename(src) +
                           " with continents (lb.py gdnsd)"}
    meta.setdefault("languages", ["en"])
    types = {"binary_format_major_version": 5, "binary_format_minor_version": 5,
             "ip_version": 5, "record_size": 5, "node_count": 6, "build_epoch": 9}
    with open(dst, "wb") as f:
        f.write(bytes(tree) + b"\x00" * 16 + bytes(new_data) + marker
                + mmdb_encode(meta, types))
    return len(remap)


def cmd_gdnsd(args):
    """Writes a gdnsd configuration directory (ARGS.dir/config and zones/pool.ntp.org) that
    answers the query file's names like pooldns in balance.mode = "zones": the apex, numbered
    and vendor names through geoip (the client's country, else its continent, else
    everyone), country and continent names through weighted directly; each a weighted pick of
    k of the eligible servers of that zone."""
    cfg = load_config(args.config)
    answers = cfg.get("answers", {})
    ttl = answers.get("ttl", 150)
    k = answers.get("records", 4)
    min_score = answers.get("min_score", 10.0)
    full = answers.get("full_weight_score", min_score)
    aliases = cfg.get("aliases", {})
    vendors = set(cfg.get("vendors", []))
    numbered = answers.get("numbered", 4)
    continent_of = pooldns_countries(args.countries)
    v4, v6 = load_feed(args.feed, min_score)
    rng = random.Random(13)

    # Eligible servers (ip, weight) per zone and family, aliases applied (gb -> uk).
    zones = {}
    for fam, servers in (("v4", v4), ("v6", v6)):
        for s in servers:
            cc = aliases.get(s.get("country"), s.get("country"))
            entry = (s["ip"], ramped_weight(s, min_score, full))
            zones.setdefault(("global", fam), []).append(entry)
            if cc in continent_of:
                zones.setdefault((cc, fam), []).append(entry)
                zones.setdefault((continent_of[cc], fam), []).append(entry)
    continents = sorted(set(CONTINENT_SHORT.values()))

    def chain(zone):                  # pooldns' fallback chain of a zone
        if zone in continent_of:
            return [zone, continent_of[zone], "global"]
        return [zone, "global"] if zone != "global" else ["global"]

    def servers_for(zone, fam):
        """The first zone of the chain with at least k servers of the family (pooldns takes
        the first with one; see benches/README.md)."""
        for z in chain(zone):
            if len(zones.get((z, fam), ())) >= k:
                return z, zones[(z, fam)]
        raise SystemExit(f"lb.py gdnsd: fewer than {k} eligible {fam} servers in the feed")

    # Datacenters: every country with at least k eligible servers (of either family), the
    # continents and "global".
    countries = sorted(cc for cc in continent_of if cc not in aliases
                       and any(len(zones.get((cc, f), ())) >= k for f in ("v4", "v6")))
    dcs = countries + continents + ["global"]

    def dc_of(cc):
        cc = aliases.get(cc, cc)
        return cc if cc in countries else continent_of.get(cc, "global")

    # The names: geo (apex, numbered, vendor), country or continent; "2." names with AAAA.
    with open(args.names) as f:
        names = sorted({n for n, t, cat in json.load(f) if cat not in ("NXDOMAIN",)})
    plan = {}
    for rel in names:
        labels = [] if rel == "@" else rel.split(".")
        if labels and labels[0].isdigit() and int(labels[0]) < numbered:
            labels = labels[1:]
        dual = rel.split(".")[0] == "2"
        if not labels or (len(labels) == 1 and labels[0] in vendors):
            plan[rel] = ("geo", None, dual)
        elif len(labels) == 1 and aliases.get(labels[0], labels[0]) in continent_of:
            plan[rel] = ("zone", aliases.get(labels[0], labels[0]), dual)
        elif len(labels) == 1 and labels[0] in continents:
            plan[rel] = ("zone", labels[0], dual)
    # Weighted resources: one per zone and kind (v4 only, or v4 + v6 for "2." names).
    needed = {(dc, dual) for dc in dcs for dual in (False, True)}
    needed |= {(z, dual) for kind, z, dual in plan.values() if kind == "zone"}
    res_name = lambda z, dual: ("d_" if dual else "a_") + z.replace("-", "_")  # noqa: E731
    os.makedirs(os.path.join(args.dir, "zones"), exist_ok=True)
    mmdb = os.path.join(os.path.abspath(args.dir), "geoip.mmdb")
    mmdb_for_gdnsd(args.geoip, mmdb, continent_of, aliases)
    lines = ["# Generated by benches/load/lb.py gdnsd for benches/load.sh --compare.",
             "options => {",
             f"  listen => [ 127.0.0.1:{args.port} ]",
             f"  udp_threads => {args.workers}",
             f"  tcp_threads => {args.workers}",
             # the largest gdnsd accepts (pooldns asks for 4 MiB)
             "  udp_rcvbuf => 1048576",
             "  udp_sndbuf => 1048576",
             f'  run_dir => "{args.dir}/run"',
             f'  state_dir => "{args.dir}/state"',
             "}",
             "plugins => {",
             "  weighted => {",
             "    multi => true"]
    sizes = {}
    for z, dual in sorted(needed):
        lines.append(f"    {res_name(z, dual)} => {{")
        for fam in (("v4", "v6") if dual else ("v4",)):
            src, servers = servers_for(z, fam)
            groups = gdnsd_groups(servers, k, rng)
            sizes[(z, fam)] = (src, len(servers), sum(len(g) for g in groups))
            lines.append(f"      addrs_{fam} => {{")
            lines += vscf_addrs(groups, 8)
            lines.append("      }")
        lines.append("    }")
    lines += ["  }",
              "  geoip => {",
              "    maps => {",
              "      world => {",
              f'        geoip2_db => "{mmdb}"',
              "        datacenters => [ " + ", ".join(f'"{d}"' for d in dcs) + " ]",
              "        map => {",
              '          default => [ "global" ]']
    # The database written for gdnsd has pooldns' continent of every country (which puts
    # e.g. ru, tr and cy in europe), so each country with a datacenter sits under its
    # continent, and the rest of a continent goes to the continent's datacenter.
    for code in sorted(CONTINENT_SHORT):
        cont = CONTINENT_SHORT[code]
        lines.append(f"          {code} => {{")
        lines.append(f'            default => [ "{cont}" ]')
        for cc in sorted(continent_of):
            if continent_of[cc] == cont and cc != "uk":   # uk: GeoIP says GB
                dc = dc_of(cc)
                if dc != cont:
                    lines.append(f'            {cc.upper()} => [ "{dc}" ]')
        lines.append("          }")
    lines += ["        }", "      }", "    }", "    resources => {"]
    for dual in (False, True):
        lines.append(f"      geo_{'dual' if dual else 'a'} => {{")
        lines.append("        map => world")
        lines.append("        dcmap => {")
        lines += [f'          "{d}" => "%weighted!{res_name(d, dual)}"' for d in dcs]
        lines += ["        }", "      }"]
    lines += ["    }", "  }", "}"]
    with open(os.path.join(args.dir, "config"), "w") as f:
        f.write("\n".join(lines) + "\n")
    # The zone: the static part as for NSD and Knot, the pool names as DYNA (TTL fixed at
    # the answer TTL: MAX/MIN both ttl).
    zone = zone_static_lines(cfg)
    for rel in names:
        if rel not in plan:
            continue
        kind, z, dual = plan[rel]
        target = (f"geoip!geo_{'dual' if dual else 'a'}" if kind == "geo"
                  else f"weighted!{res_name(z, dual)}")
        zone.append(f"{rel} {ttl}/{ttl} DYNA {target}")
    with open(os.path.join(args.dir, "zones", ORIGIN), "w") as f:
        f.write("\n".join(zone) + "\n")
    big = sum(1 for (z, fam), (_, n, used) in sizes.items() if used < n)
    print(f"{len(dcs)} datacenters ({len(countries)} countries, {len(continents)} continents, "
          f"global), {len(needed)} weighted resources of {k} groups, {len(plan)} DYNA names; "
          f"{big} of {len(sizes)} address sets cut to a random {k * GDNSD_GROUP_MAX}")
    return 0


# ------------------------------------------------------------------------------------------
# DNS over UDP (for the equivalence guard and the swap check)


def skip_name(msg, off):
    while True:
        n = msg[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1 + n


def parse_response(msg):
    """(id, rcode, [(type, rdata bytes)] of the answer section)."""
    qid, flags, qd, an, _ns, _ar = struct.unpack("!HHHHHH", msg[:12])
    off = 12
    for _ in range(qd):
        off = skip_name(msg, off) + 4
    records = []
    for _ in range(an):
        off = skip_name(msg, off)
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
        off += 10
        records.append((rtype, msg[off:off + rdlen]))
        off += rdlen
    return qid, flags & 0xF, records


def ask(port, wire, timeout=2.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(wire, ("127.0.0.1", port))
        return s.recv(4096)
    except OSError:
        return None
    finally:
        s.close()


def cmd_equivalence(args):
    """Every distinct query once without ECS and once from each of --ecs client subnets (so
    that the servers that geolocate, pooldns and gdnsd-geo, answer from country, continent
    and global zones), to every server: the rcode and the number of answer records must be
    those of the first server. Size differences are listed for the queries without ECS."""
    with open(args.names) as f:
        names = [(n, t) for n, t, _ in json.load(f)]
    names.append(("nx-equivalence-check", "A"))
    servers = [(label, int(port)) for label, port in (s.split("=") for s in args.server)]
    rng = random.Random(5)
    subnets = [None] + [(1, 24, public_v4(rng)) if i % 4 else (2, 56, public_v6(rng))
                        for i in range(args.ecs)]
    bad = 0
    rows = []
    for rel, qtype in names:
        for sub in subnets:
            wire = make_query(fqdn(rel), qtype, qid=4242, edns=True, ecs=sub)
            got = []
            for label, port in servers:
                r = ask(port, wire)
                if r is None:
                    got.append((label, None, None, None))
                else:
                    _, rcode, recs = parse_response(r)
                    got.append((label, rcode, len(recs), len(r)))
            ref = got[0]
            where = ""
            if sub is not None:
                family = socket.AF_INET if sub[0] == 1 else socket.AF_INET6
                where = f" (ECS {socket.inet_ntop(family, sub[2])}/{sub[1]})"
            if any(g[1] != ref[1] or g[2] != ref[2] for g in got[1:]):
                bad += 1
                rows.append(f"  {fqdn(rel)} {qtype}{where}: " + ", ".join(
                    f"{label} rcode={rc} answers={n} size={sz}" for label, rc, n, sz in got))
            elif sub is None and len({g[3] for g in got}) > 1:
                rows.append(f"  (size only) {fqdn(rel)} {qtype}: " + ", ".join(
                    f"{label} {sz} B" for label, _, _, sz in got))
    print(f"equivalence: {len(names)} distinct queries, each without ECS and from {args.ecs} "
          f"client subnets; {bad} with a different rcode or answer count")
    for r in rows[:args.max_rows]:
        print(r)
    if len(rows) > args.max_rows:
        print(f"  ... {len(rows) - args.max_rows} more")
    return 1 if bad else 0


# ------------------------------------------------------------------------------------------
# Processes


def cmd_freeport(args):
    for _ in range(200):
        port = random.randrange(53000, 54000) if args.start is None else args.start
        if args.start is not None:
            args.start += 1
        try:
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.bind(("127.0.0.1", port))
            t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            t.bind(("127.0.0.1", port))
            u.close()
            t.close()
            print(port)
            return 0
        except OSError:
            continue
    return 1


def proc_table():
    table = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2:].split()
        table[int(pid)] = (int(rest[1]), int(rest[11]) + int(rest[12]))
    return table


def cmd_ticks(args):
    print(tree_ticks(args.pid)[0])


def cmd_rss(args):
    vals = {}
    with open(f"/proc/{args.pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                vals[line.split(":")[0]] = int(line.split()[1])
    print(vals.get("VmRSS", 0), vals.get("VmHWM", 0))


# ------------------------------------------------------------------------------------------
# dnsperf results


def parse_dnsperf(path):
    text = open(path, errors="replace").read()
    r = {}

    def num(pattern, cast=float):
        m = re.search(pattern, text)
        return cast(m.group(1)) if m else None

    r["sent"] = num(r"Queries sent:\s+(\d+)", int)
    r["completed"] = num(r"Queries completed:\s+(\d+)", int)
    r["lost"] = num(r"Queries lost:\s+(\d+)", int)
    r["interrupted"] = num(r"Queries interrupted:\s+(\d+)", int) or 0
    r["runtime"] = num(r"Run time \(s\):\s+([\d.]+)")
    r["qps"] = num(r"Queries per second:\s+([\d.]+)")
    m = re.search(r"Average Latency \(s\):\s+([\d.]+) \(min ([\d.]+), max ([\d.]+)\)", text)
    if m:
        r["lat_avg"], r["lat_min"], r["lat_max"] = (float(x) for x in m.groups())
    r["lat_sd"] = num(r"Latency StdDev \(s\):\s+([\d.]+)")
    m = re.search(r"Average packet size:\s+request (\d+), response (\d+)", text)
    if m:
        r["req_size"], r["resp_size"] = int(m.group(1)), int(m.group(2))
    m = re.search(r"Response codes:\s+(.*)", text)
    r["rcodes"] = m.group(1).strip() if m else ""
    # Per-response latencies (dnsperf -v): "> NOERROR name type 0.000123"
    lats = [float(line.rsplit(None, 1)[1]) for line in text.splitlines()
            if line.startswith("> ") and not line.startswith("> T ")
            and re.match(r"^> \S+ .* [\d.]+$", line)]
    if lats:
        lats.sort()
        n = len(lats)
        for p in (50, 90, 99, 99.9):
            r[f"p{p}"] = lats[min(n - 1, int(n * p / 100))]
    # Interval statistics (dnsperf -S 1): "<unix time>: <qps>" lines
    iv = [(float(t), float(q)) for t, q in re.findall(r"(?m)^(\d+\.\d+): ([\d.]+)$", text)]
    if iv:
        r["interval_qps"] = iv
    return r


def machine_busy():
    """(busy, total) clock ticks of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    total = sum(v[:8])
    return total - idle, total


def tree_pids(root):
    table = proc_table()
    want = {root}
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _) in table.items():
            if ppid in want and pid not in want:
                want.add(pid)
                changed = True
    return want, table


def tree_ticks(root):
    want, table = tree_pids(root)
    return sum(table[p][1] for p in want if p in table), sorted(p for p in want if p in table)


def run_ns(pids):
    """Nanoseconds on a CPU of every thread of `pids`, by thread id, from
    /proc/PID/task/TID/schedstat: exact, where utime+stime come in clock ticks (10 ms)."""
    out = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    out[int(tid)] = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return out


def ps_cpu_seconds(pids):
    """The same CPU time as seen by ps (cputimes = utime+stime in whole seconds)."""
    try:
        out = subprocess.run(["ps", "-o", "cputimes=", "-p", ",".join(map(str, pids))],
                             capture_output=True, text=True, check=False).stdout
        return sum(int(x) for x in out.split())
    except (OSError, ValueError):
        return None


def cmd_measure(args):
    """Runs dnsperf (the command after --) and measures around it: the server's CPU (utime +
    stime of the server process and its descendants, /proc/PID/stat), the same by ps, dnsperf's
    own CPU (wait4 rusage) and the rest of the machine's CPU (/proc/stat), so that noise from
    other work shows. Appends one JSON line to --runs and prints a one-line summary."""
    clk = os.sysconf("SC_CLK_TCK")
    cmd = args.command[1:] if args.command and args.command[0] == "--" else args.command
    ticks0, pids = tree_ticks(args.pid)
    ps0 = ps_cpu_seconds(pids)
    ns0 = run_ns(pids)
    busy0, total0 = machine_busy()
    t0 = time.time()
    with open(args.out, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)

        def stop(signum, _frame):
            proc.terminate()
            sys.exit(128 + signum)
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        _, status, ru = os.wait4(proc.pid, 0)
    t1 = time.time()
    busy1, total1 = machine_busy()
    ticks1, pids1 = tree_ticks(args.pid)
    ns1 = run_ns(pids1)
    ps1 = ps_cpu_seconds(pids1)
    alive = os.path.exists(f"/proc/{args.pid}")
    r = parse_dnsperf(args.out)
    r.update(server=args.server, run=args.run, rep=args.rep, rate=args.rate,
             dnsperf_status=os.waitstatus_to_exitcode(status), server_alive=alive)
    wall = t1 - t0
    ticks_cpu = (ticks1 - ticks0) / clk
    # Threads' run time in ns, which at 5,000 q/s is 40 times finer than a tick. A thread
    # that ended during the run takes its time out of this sum but not out of the ticks:
    # when the two disagree by more than the ticks' own rounding, the ticks count.
    run_cpu = sum(ns - ns0.get(tid, 0) for tid, ns in ns1.items()) / 1e9
    exact = abs(run_cpu - ticks_cpu) <= 2.0 / clk + 0.05 * ticks_cpu
    cpu = run_cpu if exact else ticks_cpu
    r["cpu_from"] = "schedstat" if exact else "ticks"
    r["ticks_cpu_s"] = ticks_cpu
    perf_cpu = ru.ru_utime + ru.ru_stime
    r["wall_s"] = wall
    r["cpu_s"] = cpu
    r["cpu_pct"] = 100.0 * cpu / wall
    r["dnsperf_cpu_pct"] = 100.0 * perf_cpu / wall
    ncpu = os.cpu_count() or 1
    machine = (busy1 - busy0) / clk
    r["machine_pct"] = 100.0 * machine / wall            # out of ncpu * 100
    r["others_pct"] = 100.0 * max(0.0, machine - cpu - perf_cpu) / wall
    r["ncpu"] = ncpu
    done = r.get("completed") or 0
    r["q_per_cpu_s"] = done / cpu if cpu > 0 else None
    r["us_per_query"] = 1e6 * cpu / done if done else None
    if ps0 is not None and ps1 is not None:
        r["ps_cpu_s"] = ps1 - ps0
    with open(args.runs, "a") as f:
        f.write(json.dumps(r) + "\n")
    lat = ""
    if "p50" in r:
        lat = f", p50 {r['p50'] * 1e3:.3f} ms, p99 {r['p99'] * 1e3:.3f} ms"
    print(f"  {args.run:<10} {args.server:<9} {fmt(r.get('qps'), '.0f')} q/s, lost "
          f"{r.get('lost')}, server CPU {r['cpu_pct']:.1f}% ({fmt(r['q_per_cpu_s'], '.0f')} "
          f"q/CPU-s){lat}; dnsperf CPU {r['dnsperf_cpu_pct']:.0f}%, other work "
          f"{r['others_pct']:.0f}%")
    if r.get("completed") is None:
        print(f"  dnsperf printed no statistics (exit {r['dnsperf_status']}); see {args.out}")
    if not alive:
        print(f"  the server (pid {args.pid}) is gone")
        return 1
    return 0


def cmd_probe(args):
    """Exit 0 once the server answers an SOA query for the origin."""
    r = ask(args.port, make_query(ORIGIN, "SOA", qid=7, edns=False), timeout=args.timeout)
    return 0 if r is not None else 1


# ------------------------------------------------------------------------------------------
# Reload under load


def cmd_swapper(args):
    """Every `every` seconds copy the next source feed to a temporary name beside the live
    feed and rename it over the live feed; log the time of each rename."""
    sources = args.source
    d = os.path.dirname(os.path.abspath(args.feed))
    tmp = os.path.join(d, ".feed.swap.tmp")
    start = time.time()
    end = start + args.duration
    i = 1            # the live feed starts as sources[0]
    with open(args.log, "w") as log:
        while True:
            time.sleep(max(0.0, start + i * args.every - time.time()))
            if time.time() > end:
                break
            src = sources[i % len(sources)]
            with open(src, "rb") as f, open(tmp, "wb") as g:
                g.write(f.read())
                g.flush()
                os.fsync(g.fileno())
            os.rename(tmp, args.feed)
            log.write(f"{time.time():.6f} {src}\n")
            log.flush()
            i += 1


def eligible_sets(path, min_score, aliases):
    with open(path) as f:
        feed = json.load(f)
    all4, all6, by_cc = set(), set(), {}
    for s in feed["servers"]:
        if s.get("netspeed", 0) <= 0 or s.get("score", -1000) < min_score:
            continue
        ip = s["ip"]
        packed = socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
        (all6 if ":" in ip else all4).add(packed)
        zones = s.get("zones") or [s.get("country", "")]
        for z in zones:
            z = aliases.get(z, z)
            by_cc.setdefault(z, set()).add(packed)
    return all4, all6, by_cc


def cmd_check(args):
    cfg = load_config(args.config)
    min_score = cfg.get("answers", {}).get("min_score", 10.0)
    k = cfg.get("answers", {}).get("records", 4)
    aliases = cfg.get("aliases", {})
    # In plan mode a country name answers from the plan's sources (other countries too),
    # and every answer has k records (sources of fewer servers are filled up).
    plan_mode = cfg.get("balance", {}).get("mode") == "plan"
    feeds = [eligible_sets(p, min_score, aliases) for p in args.feed]
    union4 = set().union(*(f[0] for f in feeds))
    union6 = set().union(*(f[1] for f in feeds))
    rng = random.Random(11)
    subnets = [(1, 24, public_v4(rng)) for _ in range(200)]
    # (relative name, type, country or None)
    asks = [("0", "A", None), ("1", "A", None), ("2", "A", None), ("3", "A", None),
            ("@", "A", None), ("0.debian", "A", None), ("de", "A", "de"), ("us", "A", "us"),
            ("0.de", "A", "de"), ("2.fr", "A", "fr"), ("uk", "A", "uk"), ("gb", "A", "uk"),
            ("2", "AAAA", None)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    pending = {}
    stats = dict(sent=0, answered=0, timeouts=0, bad_rcode=0, bad_count=0, not_in_union=0,
                 mixed_tables=0, wrong_country=0, a_records=0)
    examples = []
    qid = 0
    start = time.time()
    end = start + args.duration
    interval = 1.0 / args.rate

    def handle(msg):
        qid_, rcode, recs = parse_response(msg)
        item = pending.pop(qid_, None)
        if item is None:
            return
        stats["answered"] += 1
        rel, qtype, cc, has_ecs = item[1]
        if rcode != 0:
            stats["bad_rcode"] += 1
            examples.append(f"{fqdn(rel)} {qtype}: rcode {rcode}")
            return
        want = 1 if qtype == "A" else 28
        addrs = [rd for t, rd in recs if t == want]
        stats["a_records"] += len(addrs)
        # Without ECS (a loopback client: the global pool) and for big named countries the
        # answer has k distinct records; with ECS the client's country may have fewer
        # eligible servers than k, and then the answer has them all (1 .. k).
        if plan_mode:
            cc = None
            want_ok = len(addrs) == k
        else:
            want_ok = (1 <= len(addrs) <= k) if has_ecs and cc is None else len(addrs) == k
        if not want_ok or len(set(addrs)) != len(addrs):
            stats["bad_count"] += 1
            examples.append(f"{fqdn(rel)} {qtype}: {len(addrs)} records")
        union = union4 if qtype == "A" else union6
        if any(a not in union for a in addrs):
            stats["not_in_union"] += 1
            examples.append(f"{fqdn(rel)} {qtype}: address not in either feed")
        sets = [f[0] if qtype == "A" else f[1] for f in feeds]
        if not any(all(a in s for a in addrs) for s in sets):
            stats["mixed_tables"] += 1
        if cc is not None and not any(all(a in f[2].get(cc, ()) for a in addrs) for f in feeds):
            stats["wrong_country"] += 1
            examples.append(f"{fqdn(rel)} {qtype}: not all from {cc}")

    next_send = start
    while True:
        now = time.time()
        if now >= next_send and now < end:
            qid = (qid + 1) & 0xFFFF
            while qid in pending:
                qid = (qid + 1) & 0xFFFF
            rel, qtype, cc = asks[rng.randrange(len(asks))]
            ecs = rng.choice(subnets) if rng.random() < 0.3 else None
            wire = make_query(fqdn(rel), qtype, qid=qid, edns=True, ecs=ecs)
            try:
                sock.sendto(wire, ("127.0.0.1", args.port))
                pending[qid] = (now, (rel, qtype, cc, ecs is not None))
                stats["sent"] += 1
            except BlockingIOError:
                pass
            next_send += interval
        while True:
            try:
                msg = sock.recv(4096)
            except BlockingIOError:
                break
            handle(msg)
        for q, (t, _) in list(pending.items()):
            if now - t > args.timeout:
                del pending[q]
                stats["timeouts"] += 1
        if now >= end and not pending:
            break
        time.sleep(min(0.0005, max(0.0, next_send - time.time())))
    stats["duration_s"] = round(time.time() - start, 1)
    stats["examples"] = examples[:10]
    print(json.dumps(stats))


def ts_of(line):
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z", line)
    if not m:
        return None
    from datetime import datetime, timezone
    s = m.group(1)
    if "." in s:
        head, frac = s.split(".")
        s = head + "." + frac[:6].ljust(6, "0")
        fmt = "%Y-%m-%dT%H:%M:%S.%f"
    else:
        fmt = "%Y-%m-%dT%H:%M:%S"
    return datetime.strptime(s, fmt).replace(tzinfo=timezone.utc).timestamp()


def reload_log(path):
    """From pooldns' log: startup build_ms, and per "feed loaded" line its build_ms and
    (time, serial)."""
    builds, loaded, refused, loads = [], [], [], []
    startup = None
    for line in open(path, errors="replace"):
        line = ANSI.sub("", line)
        m = re.search(r"build_ms=([\d.]+)", line)
        if "table built" in line and m:
            startup = float(m.group(1))
        elif "feed loaded" in line and m:
            builds.append(float(m.group(1)))
            load = re.search(r"load_ms=([\d.]+)", line)
            if load:
                loads.append(float(load.group(1)))
            serial = re.search(r"serial=(\d+)", line)
            loaded.append((ts_of(line), int(serial.group(1)) if serial else None))
        elif "keeps serving" in line or "refused" in line:
            refused.append(line.strip())
    return startup, builds, loaded, refused, loads


def stats3(xs, unit=""):
    if not xs:
        return "-"
    xs = sorted(xs)
    return (f"min {xs[0]:.0f}{unit}, median {xs[len(xs) // 2]:.0f}{unit}, "
            f"max {xs[-1]:.0f}{unit}")


def cmd_reload_report(args):
    """Summarises the reload-under-load run and checks it against the targets; exit 1 when
    an answer was lost or wrong, a swap failed, or a target was missed."""
    startup, builds, loaded, refused, loads = reload_log(args.log)
    # Each rename is matched with the first "feed loaded" after it that carries the serial of
    # the feed it put in place (the two feeds have different serials), so a reload of the
    # previous rename that finishes late is not taken for it.
    serials = {}
    swaps = []
    for line in open(args.swaps):
        if not line.strip():
            continue
        t, src = line.split(None, 1)
        src = src.strip()
        if src not in serials:
            with open(src) as f:
                m = re.search(r'"serial":\s*(\d+)', f.read(200))
            serials[src] = int(m.group(1)) if m else None
        swaps.append((float(t), serials[src]))
    lat = []
    for t, serial in swaps:
        after = [x for x, s in loaded if x is not None and x >= t and s in (serial, None)]
        if after:
            lat.append(1000 * (min(after) - t))
    rss = [tuple(int(x) for x in line.split()) for line in open(args.rss) if line.strip()]
    run = [json.loads(line) for line in open(args.runs) if line.strip()]
    run = [r for r in run if r["run"] == "reload"][-1]
    check = json.loads(open(args.check).read())
    iv = [q for _, q in run.get("interval_qps", [])][1:-1]   # the first and last are partial
    print()
    print(f"Reload under load: {args.servers} servers, the feed rewritten every {args.every:g} s "
          f"(rename over the live file, alternating two feeds), {run['wall_s']:.0f} s of "
          f"saturating UDP load")
    print(f"  swaps                  {len(swaps)} renames, {len(builds)} 'feed loaded', "
          f"{len(refused)} refused or failed")
    if loads:
        print(f"  feed load (load_ms)    {stats3(loads, ' ms')}   (read, parse and check)")
    print(f"  table build (build_ms) {stats3(builds, ' ms')}   (at startup: "
          f"{fmt(startup, '.0f')} ms)")
    print(f"  rename -> table live   {stats3(lat, ' ms')}   (watch event + 50 ms settle "
          f"delay + read + parse + validate + build + swap; plus waiting for a reload still "
          f"running)")
    if rss:
        print(f"  memory                 VmRSS before {rss[0][0] / 1024:.0f} MB, max "
              f"{max(r[0] for r in rss) / 1024:.0f} MB, after {rss[-1][0] / 1024:.0f} MB; "
              f"VmHWM {rss[-1][1] / 1024:.0f} MB")
    print(f"  dnsperf                {fmt(run.get('qps'), '.0f')} q/s (per second "
          f"{fmt(min(iv) if iv else None, '.0f')} .. {fmt(max(iv) if iv else None, '.0f')}), "
          f"lost {run.get('lost')} of {run.get('sent')}, server CPU {run['cpu_pct']:.0f}%, "
          f"other work on the machine {run['others_pct']:.0f}%")
    print(f"  answers checked        {check['sent']} sent during the swaps, {check['answered']} "
          f"answered, {check['timeouts']} timed out; wrong rcode {check['bad_rcode']}, "
          f"wrong record count {check['bad_count']}, address in neither feed "
          f"{check['not_in_union']}, mixing two feeds {check['mixed_tables']}, outside the "
          f"asked country {check['wrong_country']}")
    for e in check.get("examples", []):
        print(f"    e.g. {e}")
    hwm = rss[-1][1] / 1024 if rss else None
    # A signed zone's targets (issue 15): build and signing under 2 s, under 600 MB.
    build_ms, rss_mb = (2000, 600) if args.signed else (1000, 300)
    verdicts = [
        ("every rename swapped in a new table", len(builds) >= len(swaps) and not refused),
        (f"table build < {build_ms} ms (max)", bool(builds) and max(builds) < build_ms),
        (f"rename -> live < {build_ms} ms (max)", len(lat) == len(swaps) and max(lat) < build_ms),
        (f"RSS (VmHWM) < {rss_mb} MB", hwm is not None and hwm < rss_mb),
        ("no dnsperf query lost", run.get("lost") == 0),
        ("no check query lost", check["timeouts"] == 0 and check["answered"] == check["sent"]),
        ("every checked answer right", check["bad_rcode"] + check["bad_count"]
         + check["not_in_union"] + check["mixed_tables"] + check["wrong_country"] == 0),
    ]
    failed = 0
    for label, ok in verdicts:
        print(f"  [{'PASS' if ok else 'FAIL'}] {label}")
        failed += not ok
    return 1 if failed else 0


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def fmt(v, spec):
    if v is None:
        m = re.match(r"\d+", spec)
        return "-".rjust(int(m.group(0)) if m else 1)
    return format(v, spec)


METRICS = ["qps", "lost", "lat_avg", "p50", "p99", "p99.9", "lat_max", "cpu_pct", "cpu_s",
           "q_per_cpu_s", "us_per_query", "resp_size", "ps_cpu_s", "others_pct",
           "dnsperf_cpu_pct"]


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def cmd_report(args):
    runs = [json.loads(line) for line in open(args.runs) if line.strip()]
    runs = [r for r in runs if r["run"] != "reload"]
    if not runs:
        return 0
    servers, kinds = [], []
    for r in runs:
        if r["server"] not in servers:
            servers.append(r["server"])
        if r["run"] not in kinds:
            kinds.append(r["run"])
    agg = {}
    for kind in kinds:
        for srv in servers:
            rs = [r for r in runs if r["run"] == kind and r["server"] == srv]
            if rs:
                a = {m: median([r.get(m) for r in rs]) for m in METRICS}
                a["n"] = len(rs)
                a["rate"] = rs[0].get("rate")
                a["ticks"] = any(r.get("cpu_from") == "ticks" for r in rs)
                agg[(kind, srv)] = a
    reps = max(a["n"] for a in agg.values())
    print()
    print("Results" + (f" (median of {reps} repetitions)" if reps > 1 else ""))
    print("  CPU s = server CPU seconds during the run, over the server and its child processes: "
          "its threads' run time in ns")
    print("  (/proc/PID/task/TID/schedstat), or utime+stime in clock ticks (/proc/PID/stat) in "
          "rows marked ~, where a thread")
    print("  ended during the run and the two disagree;")
    print("  ps s = the same from ps (cputimes, whole seconds); CPU % = CPU s / wall time (100 = "
          "one core); q/CPU-s = answered")
    print("  queries per server CPU-second; us/q = server CPU per query; dnsperf% and other% = "
          "CPU of dnsperf and of everything")
    print(f"  else on the machine ({runs[0].get('ncpu')} cores) during the run. dnsperf reports "
          "avg/max latency; p50/p99 come from")
    print("  dnsperf -v per-query latencies, recorded only in the fixed-rate run (printing them "
          "at saturation would load dnsperf).")
    if "gdnsd-geo" in servers:
        print("  gdnsd-geo = gdnsd with its geoip and weighted plugins: per query a GeoIP lookup "
              "(apex, numbered and vendor names)")
        print("  and a weighted pick of 4 addresses, like pooldns; NSD and Knot serve a static "
              "zone of the same size.")
    if "echo" in servers:
        print("  echo = examples/udp_echo, the floor of any UDP server here: a recvmmsg/sendmmsg "
              "loop that sends each query back")
        print("  with QR set and parses nothing; its responses are the queries, so smaller than "
              "real answers (resp B), and it has no TCP.")
    head = (f"  {'run':<13} {'server':<9} {'q/s':>8} {'lost':>5} {'avg ms':>7} {'p50 ms':>7} "
            f"{'p99 ms':>7} {'max ms':>7} {'CPU s':>7} {'ps s':>4} {'CPU %':>6} {'q/CPU-s':>8} "
            f"{'us/q':>6} "
            f"{'resp B':>6} {'dnsperf%':>8} {'other%':>6}")
    print(head)
    print("  " + "-" * (len(head) - 2))
    ms = lambda x: None if x is None else x * 1000  # noqa: E731
    for kind in kinds:
        for srv in servers:
            a = agg.get((kind, srv))
            if not a:
                continue
            label = kind
            if a.get("rate") and kind.startswith("rate"):
                base = "rate-ecs" if kind.startswith("rate-ecs") else "rate"
                label = f"{base} {a['rate'] / 1000:g}k"
            print(f"  {label:<13} {srv:<9} {fmt(a['qps'], '8.0f')} {fmt(a['lost'], '5.0f')} "
                  f"{fmt(ms(a['lat_avg']), '7.3f')} {fmt(ms(a['p50']), '7.3f')} "
                  f"{fmt(ms(a['p99']), '7.3f')} {fmt(ms(a['lat_max']), '7.1f')} "
                  f"{fmt(a['cpu_s'], '6.2f')}{'~' if a['ticks'] else ' '} "
                  f"{fmt(a['ps_cpu_s'], '4.0f')} "
                  f"{fmt(a['cpu_pct'], '6.1f')} {fmt(a['q_per_cpu_s'], '8.0f')} "
                  f"{fmt(a['us_per_query'], '6.2f')} {fmt(a['resp_size'], '6.0f')} "
                  f"{fmt(a['dnsperf_cpu_pct'], '8.0f')} {fmt(a['others_pct'], '6.0f')}")
    if len(servers) > 1 and servers[0] == "pooldns":
        others = servers[1:]
        print()
        print("Ratios pooldns / other: q/s and q/CPU-s (higher is better for pooldns), CPU % and "
              "us/q at the fixed rate (lower is better)")
        head = f"  {'run':<14} {'metric':<10}" + "".join(f" {'/ ' + o:>11}" for o in others)
        print(head)
        print("  " + "-" * (len(head) - 2))
        for kind in kinds:
            p = agg.get((kind, "pooldns"))
            if not p:
                continue
            metrics = [("qps", "q/s"), ("q_per_cpu_s", "q/CPU-s")]
            if p.get("rate"):
                metrics = [("cpu_pct", "CPU %"), ("us_per_query", "us/q"),
                           ("q_per_cpu_s", "q/CPU-s")]
            for key, label in metrics:
                cells = ""
                for o in others:
                    a, b = p.get(key), agg.get((kind, o), {}).get(key)
                    cells += f" {fmt(a / b if a and b else None, '11.2f')}"
                print(f"  {kind:<14} {label:<10}{cells}")
        signed = [(agg.get((f"udp-{x}", "pd-signed")) or {}).get("q_per_cpu_s")
                  for x in ("do", "nodo")]
        if all(signed):
            print(f"  pd-signed (a signed zone), the same queries with and without DO: "
                  f"DO=1 / DO=0 q/CPU-s = {signed[0] / signed[1]:.2f}")
        if "echo" in others:
            print("  / echo: pooldns against the trivial UDP echo server (the floor; its answers "
                  "are the queries, smaller than")
            print("  pooldns' answers, see resp B above; '-' for tcp, which it does not serve).")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("queries")
    p.add_argument("dir")
    p.add_argument("--count", type=int, default=100000)
    p.add_argument("--seed", type=int, default=1)
    p = sub.add_parser("zone")
    p.add_argument("--feed", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--names", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("gdnsd")
    p.add_argument("--feed", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--names", required=True)
    p.add_argument("--geoip", required=True)
    p.add_argument("--countries", required=True, help="pooldns' src/continent.rs")
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workers", type=int, required=True)
    p = sub.add_parser("equivalence")
    p.add_argument("--names", required=True)
    p.add_argument("--server", action="append", required=True, help="label=port")
    p.add_argument("--max-rows", type=int, default=12)
    p.add_argument("--ecs", type=int, default=8, help="client subnets per query (1 in 4 IPv6)")
    p = sub.add_parser("freeport")
    p.add_argument("--start", type=int)
    p = sub.add_parser("probe")
    p.add_argument("port", type=int)
    p.add_argument("--timeout", type=float, default=0.5)
    p = sub.add_parser("ticks")
    p.add_argument("pid", type=int)
    p = sub.add_parser("rss")
    p.add_argument("pid", type=int)
    p = sub.add_parser("measure")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--server", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--rep", type=int, default=1)
    p.add_argument("--rate", type=int)
    p.add_argument("--out", required=True)
    p.add_argument("--runs", required=True)
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("swapper")
    p.add_argument("--feed", required=True)
    p.add_argument("--source", action="append", required=True)
    p.add_argument("--every", type=float, default=3.0)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--log", required=True)
    p = sub.add_parser("check")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--feed", action="append", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--rate", type=float, default=1000)
    p.add_argument("--timeout", type=float, default=2.0)
    p = sub.add_parser("reload-report")
    p.add_argument("--signed", action="store_true",
                   help="the measured server signs its zone: 2 s and 600 MB targets")
    p.add_argument("--log", required=True)
    p.add_argument("--swaps", required=True)
    p.add_argument("--rss", required=True)
    p.add_argument("--runs", required=True)
    p.add_argument("--check", required=True)
    p.add_argument("--servers", type=int, required=True)
    p.add_argument("--every", type=float, required=True)
    p = sub.add_parser("report")
    p.add_argument("runs")
    args = ap.parse_args()
    fn = globals()["cmd_" + args.cmd.replace("-", "_")]
    sys.exit(fn(args) or 0)


if __name__ == "__main__":
    main()
