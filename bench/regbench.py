#!/usr/bin/env python3
"""Registry helpers for bench/mirror.sh (Python 3 standard library only).

Subcommands (every registry is `HOST:PORT`, spoken to over TLS trusting --ca, or over plain
HTTP when --ca is not given):

  seed      SRC --ca CA --out WORKLOAD.json [--repos 16 --tags 8 ...]
            Pushes the reproducible workload into SRC and records every repository, tag,
            manifest (exact bytes) and blob in WORKLOAD.json.
  scale     SRC --ca CA --repos 10 --tags 1000
            One small image, tagged TAGS times in each of REPOS repositories scale/rNN.
  floor     SRC DST --ca CA --workload WORKLOAD.json [--jobs 6]
            The transfer floor: each unique blob GET once from SRC and PUT once (monolithic)
            into DST, cross-repository mounts for the other repositories that need it, then
            every manifest GET from SRC and PUT into DST (children by digest, then tags).
  noop      SRC DST --ca CA --list TAGS.txt [--jobs 6]
            The floor of an unchanged re-run: one HEAD per tag at SRC and one at DST,
            compared (exit 1 if any differs).
  verify    SRC DST --ca CA --list TAGS.txt --out DIGESTS.txt
            HEAD every tag at SRC and DST; writes `repo:tag digest` lines of DST; exit 1 on
            any difference or missing tag.
  tags      --workload WORKLOAD.json   prints `repo:tag` lines.

All randomness is seeded: the same arguments always produce the same digests.
"""

import argparse
import concurrent.futures as cf
import hashlib
import http.client
import json
import random
import ssl
import sys
import threading
import time
import urllib.parse

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ACCEPT = ", ".join([DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX])
MIB = 1024 * 1024
USER_AGENT = "image-mirror-bench"


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    """One keep-alive connection per thread to one registry: HTTPS trusting `ca`, or plain
    HTTP when `ca` is None."""

    def __init__(self, hostport, ca):
        self.hostport = hostport
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)
        self.ctx = ssl.create_default_context(cafile=ca) if ca else None
        self.local = threading.local()

    def conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            if self.ctx is None:
                c = http.client.HTTPConnection(self.host, self.port, timeout=300, blocksize=MIB)
            else:
                c = http.client.HTTPSConnection(
                    self.host, self.port, context=self.ctx, timeout=300, blocksize=MIB
                )
            self.local.conn = c
        return c

    def request(self, method, path, body=None, headers=None, stream=False):
        """Returns (status, headers, body bytes) or, with stream, the open response."""
        hdrs = {"User-Agent": USER_AGENT}
        hdrs.update(headers or {})
        if body is None and method in ("PUT", "POST", "PATCH"):
            hdrs.setdefault("Content-Length", "0")
        for attempt in (1, 2):
            c = self.conn()
            try:
                c.request(method, path, body=body, headers=hdrs)
                resp = c.getresponse()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A keep-alive connection the server closed: retry once on a new one
                # (only safe for bodies we can resend: bytes or none).
                c.close()
                self.local.conn = None
                if attempt == 2 or not (body is None or isinstance(body, bytes)):
                    raise
        if stream:
            return resp
        data = resp.read()
        return resp.status, resp.headers, data

    def path_of(self, location):
        u = urllib.parse.urlsplit(location)
        return u.path + ("?" + u.query if u.query else "")

    def check(self, status, want, what, data=b""):
        if status not in want:
            raise RuntimeError(f"{self.hostport}: {what}: HTTP {status} {data[:300]!r}")

    def upload(self, repo, digest, body, length=None):
        """Monolithic upload: POST a session, PUT the bytes with ?digest=."""
        st, h, d = self.request("POST", f"/v2/{repo}/blobs/uploads/")
        self.check(st, (202,), f"starting upload to {repo}", d)
        loc = self.path_of(h["Location"])
        sep = "&" if "?" in loc else "?"
        size = len(body) if length is None else length
        st, h, d = self.request(
            "PUT",
            f"{loc}{sep}digest={digest}",
            body=body,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
        self.check(st, (201,), f"uploading {digest} to {repo}", d)

    def mount(self, repo, frm, digest):
        st, h, d = self.request("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={frm}")
        if st == 201:
            return True
        if st == 202:  # not mounted: cancel the session it opened
            self.request("DELETE", self.path_of(h["Location"]))
        return False

    def blob_exists(self, repo, digest):
        st, _, _ = self.request("HEAD", f"/v2/{repo}/blobs/{digest}")
        return st == 200

    def put_manifest(self, repo, ref, media_type, data):
        st, h, d = self.request(
            "PUT", f"/v2/{repo}/manifests/{ref}", body=data, headers={"Content-Type": media_type}
        )
        self.check(st, (201,), f"putting manifest {repo}:{ref}", d)

    def get_manifest(self, repo, ref):
        st, h, d = self.request("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
        self.check(st, (200,), f"getting manifest {repo}:{ref}", d)
        return h["Content-Type"], d

    def head_manifest(self, repo, ref):
        st, h, _ = self.request("HEAD", f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
        if st == 404:
            return None
        self.check(st, (200,), f"HEAD {repo}:{ref}")
        return h["Docker-Content-Digest"]


def run_all(jobs, fn, items):
    """fn over items on `jobs` threads; the first exception is raised."""
    with cf.ThreadPoolExecutor(max_workers=jobs) as pool:
        for _ in pool.map(fn, items):
            pass


# ---------------------------------------------------------------- workload


def layer_bytes(name, size):
    return random.Random(name).randbytes(size)


def image(fmt, arch, layers, label):
    """(config bytes, manifest bytes, media type) for one single-platform image."""
    oci = fmt == "oci"
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Labels": {"bench": label}},
            "rootfs": {"type": "layers", "diff_ids": [d for d, _ in layers]},
        },
        sort_keys=True,
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST if oci else DOCKER_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
            "size": len(config),
            "digest": sha(config),
        },
        "layers": [
            {"mediaType": OCI_LAYER if oci else DOCKER_LAYER, "size": size, "digest": d}
            for d, size in layers
        ],
    }
    return config, json.dumps(manifest, indent=3).encode(), manifest["mediaType"]


def cmd_seed(a):
    reg = Registry(a.src, a.ca)
    base_size = int(a.base_mib * MIB)
    app_size = int(a.app_mib * MIB)
    archs_all = ["amd64", "arm64"]
    repos = [f"app{i:02d}" for i in range(a.repos)]
    # A third of the repositories (every third one) are multi-arch; formats alternate.
    multi = {r for i, r in enumerate(repos) if i % 3 == 2}
    fmt = {r: ("oci" if i % 2 == 0 else "docker") for i, r in enumerate(repos)}
    t0 = time.time()

    # Shared base layers: two per architecture, uploaded once, mounted everywhere else.
    base = {}  # arch -> [(digest, size)]
    home = {}  # digest -> repository it was uploaded to
    base_jobs = []
    for arch in archs_all:
        users = [r for r in repos if arch == "amd64" or r in multi]
        if not users:
            continue
        base[arch] = []
        for k in range(2):
            data = layer_bytes(f"base-{arch}-{k}", base_size)
            d = sha(data)
            base[arch].append((d, len(data)))
            home[d] = users[0]
            base_jobs.append((users[0], d, data))
    run_all(a.jobs, lambda j: reg.upload(j[0], j[1], j[2]), base_jobs)

    record = {"repos": {}, "blobs": {}}  # blobs: digest -> {"size", "home"}
    for arch, ls in base.items():
        for d, s in ls:
            record["blobs"][d] = {"size": s, "home": home[d]}
    lock = threading.Lock()

    def seed_repo(repo):
        archs = archs_all if repo in multi else ["amd64"]
        for arch in archs:
            for d, _ in base[arch]:
                if home[d] != repo and not reg.mount(repo, home[d], d):
                    raise RuntimeError(f"mount of {d} into {repo} refused")
        tags = []
        blobs = {d: s for arch in archs for d, s in base[arch]}
        for t in range(a.tags):
            tag = f"v1.{t}"
            children = []
            for arch in archs:
                app = layer_bytes(f"app-{repo}-{tag}-{arch}", app_size)
                ad = sha(app)
                reg.upload(repo, ad, app)
                layers = base[arch] + [(ad, len(app))]
                config, man, mt = image(fmt[repo], arch, layers, f"{repo}:{tag}/{arch}")
                cd = sha(config)
                reg.upload(repo, cd, config)
                blobs[ad] = len(app)
                blobs[cd] = len(config)
                children.append((arch, man, mt))
            if repo in multi:
                for arch, man, mt in children:
                    reg.put_manifest(repo, sha(man), mt, man)
                oci = fmt[repo] == "oci"
                index = {
                    "schemaVersion": 2,
                    "mediaType": OCI_INDEX if oci else DOCKER_LIST,
                    "manifests": [
                        {
                            "mediaType": mt,
                            "size": len(man),
                            "digest": sha(man),
                            "platform": {"architecture": arch, "os": "linux"},
                        }
                        for arch, man, mt in children
                    ],
                }
                top = json.dumps(index, indent=3).encode()
                top_mt = index["mediaType"]
                kids = [{"digest": sha(m), "mediaType": mt, "manifest": m.decode()} for _, m, mt in children]
            else:
                _, top, top_mt = children[0]
                kids = []
            reg.put_manifest(repo, tag, top_mt, top)
            tags.append(
                {"tag": tag, "digest": sha(top), "mediaType": top_mt, "manifest": top.decode(), "children": kids}
            )
        with lock:
            record["repos"][repo] = {"tags": tags, "blobs": blobs}
            for d, s in blobs.items():
                record["blobs"].setdefault(d, {"size": s, "home": repo})

    run_all(a.jobs, seed_repo, repos)
    record["repos"] = dict(sorted(record["repos"].items()))
    with open(a.out, "w") as f:
        json.dump(record, f)
    total = sum(b["size"] for b in record["blobs"].values())
    images = sum(len(r["tags"]) for r in record["repos"].values())
    print(
        f"seeded {len(repos)} repositories, {images} tags ({len(multi)} multi-arch repositories), "
        f"{len(record['blobs'])} unique blobs, {total / MIB:.1f} MiB, in {time.time() - t0:.1f} s",
        file=sys.stderr,
    )


def cmd_scale(a):
    """One small image tagged many times in each repository (seeded on SRC only; the
    caller copies the storage directory to make an identical destination)."""
    reg = Registry(a.src, a.ca)
    layer = layer_bytes("scale-layer", 4096)
    ld = sha(layer)
    config, man, mt = image("docker", "amd64", [(ld, len(layer))], "scale")
    repos = [f"scale{i:02d}" for i in range(a.repos)]
    t0 = time.time()
    for r in repos:
        if r == repos[0]:
            reg.upload(r, ld, layer)
            reg.upload(r, sha(config), config)
        else:
            reg.mount(r, repos[0], ld)
            reg.mount(r, repos[0], sha(config))
    work = [(r, f"t{t:05d}") for r in repos for t in range(a.tags)]
    run_all(a.jobs, lambda w: reg.put_manifest(w[0], w[1], mt, man), work)
    with open(a.out, "w") as f:
        for r, t in work:
            f.write(f"{r}:{t}\n")
    print(f"scale: {len(work)} tags of {sha(man)} in {time.time() - t0:.1f} s", file=sys.stderr)


# ---------------------------------------------------------------- floor


def cmd_floor(a):
    src = Registry(a.src, a.ca)
    dst = Registry(a.dst, a.ca)
    w = json.load(open(a.workload))
    blobs = w["blobs"]

    def move(digest):
        b = blobs[digest]
        resp = src.request("GET", f"/v2/{b['home']}/blobs/{digest}", stream=True)
        if resp.status != 200:
            raise RuntimeError(f"GET blob {digest}: {resp.status}")
        # The open response is the request body: streamed in 1 MiB blocks, never held.
        dst.upload(b["home"], digest, resp, length=b["size"])
        resp.read()  # drain (already at EOF) so the connection is reusable

    # Biggest first, so the long transfers do not end up alone at the tail.
    run_all(a.jobs, move, sorted(blobs, key=lambda d: -blobs[d]["size"]))
    mounts = [
        (repo, d)
        for repo, r in w["repos"].items()
        for d in r["blobs"]
        if blobs[d]["home"] != repo
    ]

    def mount(m):
        repo, d = m
        if not dst.mount(repo, blobs[d]["home"], d):
            raise RuntimeError(f"mount of {d} into {repo} refused")

    run_all(a.jobs, mount, mounts)

    children = [(repo, c["digest"]) for repo, r in w["repos"].items() for t in r["tags"] for c in t["children"]]
    tags = [(repo, t["tag"]) for repo, r in w["repos"].items() for t in r["tags"]]

    def copy_manifest(m):
        repo, ref = m
        mt, data = src.get_manifest(repo, ref)
        dst.put_manifest(repo, ref, mt, data)

    run_all(a.jobs, copy_manifest, children)
    run_all(a.jobs, copy_manifest, tags)


def read_list(path):
    out = []
    for line in open(path):
        line = line.strip()
        if line:
            repo, tag = line.rsplit(":", 1)
            out.append((repo, tag))
    return out


def compare(a, write=None):
    src = Registry(a.src, a.ca)
    dst = Registry(a.dst, a.ca)
    items = read_list(a.list)
    bad = []
    lines = {}

    def one(item):
        repo, tag = item
        s = src.head_manifest(repo, tag)
        d = dst.head_manifest(repo, tag)
        lines[item] = d
        if s is None or s != d:
            bad.append(f"{repo}:{tag}: source {s}, destination {d}")

    run_all(a.jobs, one, items)
    if write:
        with open(write, "w") as f:
            for repo, tag in items:
                f.write(f"{repo}:{tag} {lines[(repo, tag)]}\n")
    for b in sorted(bad)[:10]:
        print(f"MISMATCH {b}", file=sys.stderr)
    if bad:
        print(f"{len(bad)} of {len(items)} tags differ", file=sys.stderr)
        return 1
    return 0


def cmd_noop(a):
    return compare(a)


def cmd_verify(a):
    rc = compare(a, write=a.out)
    if rc == 0:
        print(f"verified: {sum(1 for _ in open(a.out))} tags, destination digest = source digest", file=sys.stderr)
    return rc


def cmd_ping(a):
    """Waits until the registry answers GET /v2/ over TLS."""
    deadline = time.time() + a.timeout
    while True:
        try:
            st, _, _ = Registry(a.src, a.ca).request("GET", "/v2/")
            if st == 200:
                return 0
        except OSError:
            pass
        if time.time() > deadline:
            print(f"{a.src} did not answer in {a.timeout} s", file=sys.stderr)
            return 1
        time.sleep(0.05)


def cmd_tags(a):
    w = json.load(open(a.workload))
    for repo, r in w["repos"].items():
        for t in r["tags"]:
            print(f"{repo}:{t['tag']}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("seed")
    s.add_argument("src")
    s.add_argument("--ca")
    s.add_argument("--out", required=True)
    s.add_argument("--repos", type=int, default=16)
    s.add_argument("--tags", type=int, default=8)
    s.add_argument("--base-mib", type=float, default=8)
    s.add_argument("--app-mib", type=float, default=2)
    s.add_argument("--jobs", type=int, default=6)
    s = sub.add_parser("scale")
    s.add_argument("src")
    s.add_argument("--ca")
    s.add_argument("--out", required=True)
    s.add_argument("--repos", type=int, default=10)
    s.add_argument("--tags", type=int, default=1000)
    s.add_argument("--jobs", type=int, default=8)
    for name in ("floor", "noop", "verify"):
        s = sub.add_parser(name)
        s.add_argument("src")
        s.add_argument("dst")
        s.add_argument("--ca")
        s.add_argument("--jobs", type=int, default=6)
        if name == "floor":
            s.add_argument("--workload", required=True)
        else:
            s.add_argument("--list", required=True)
        if name == "verify":
            s.add_argument("--out", required=True)
    s = sub.add_parser("ping")
    s.add_argument("src")
    s.add_argument("--ca")
    s.add_argument("--timeout", type=float, default=15)
    s = sub.add_parser("tags")
    s.add_argument("--workload", required=True)
    a = p.parse_args()
    rc = {"seed": cmd_seed, "scale": cmd_scale, "floor": cmd_floor, "noop": cmd_noop,
          "verify": cmd_verify, "tags": cmd_tags, "ping": cmd_ping}[a.cmd](a)
    sys.exit(rc or 0)


if __name__ == "__main__":
    main()
