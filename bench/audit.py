"""Benchmark: `arq-lockdown audit` on fleets of N computers seeded straight into moto, against a
plain concurrent client making the same computerinfo GETs. Not a test: it prints figures.

For each N a fresh moto (scripts/moto-fixture.py serve, IAM enforcement off) is seeded through the
fixture's /arq-fixture/seed-fleet (moto's backends directly, no AWS calls): a bucket with N
computers (computerinfo, data, S3-Glacier data) and N scoped users under /arq-lockdown/ with their
tags, inline policy and a key, plus the fleet's main key (recorded on every user as the key each
lockdown replaced) and an admin. Then:
  - `audit --json` straight to moto, RUNS times: the median wall time;
  - once more through a counting proxy: IAM calls by action, S3 listing pages and other S3 calls;
  - a plain client: CONCURRENCY threads with keep-alive connections GETting every
    `<UUID>/computerinfo` (signed, with the same Range header) from the same moto, RUNS times:
    the median;
  - `audit --json --inventory FILE`, FILE a Jamf export in which every Mac reports its own key
    (so every computer stays locked-down): the median wall time, and its IAM calls counted.

  .tools/venv/bin/python bench/audit.py BINARY [N ...]
"""
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import moto_proxy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "scripts", "moto-fixture.py")
RUNS = int(os.environ.get("RUNS", "3"))
# The same as audit's own bound on computerinfo reads (src/audit/read.rs).
CONCURRENCY = 32
RANGE = "bytes=0-65535"
TEMPLATE_UUID = "00000000-0000-4000-8000-000000000000"

COMPUTERINFO = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict><key>computerName</key><string>Mac {n}</string><key>userName</key><string>user{n}</string></dict></plist>
"""


def post(endpoint, path, payload):
    request = urllib.request.Request(endpoint + path, data=json.dumps(payload).encode(), method="POST")
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def seed(endpoint, binary, bucket, n):
    """N locked-down computers and the keys the run needs; returns (admin, main key id, seconds)."""
    started = time.perf_counter()
    policy = subprocess.run([binary, "policy", "--bucket", bucket, "--computer-uuid", TEMPLATE_UUID, "--compact"],
                            check=True, capture_output=True, text=True).stdout.strip()
    keys = post(endpoint, "/arq-fixture/seed-fleet", {"bucket": bucket, "admins": ["bench-admin", "bench-main"]})
    main = keys["admins"]["bench-main"]["id"]
    uuids = [str(uuid.uuid4()).upper() for _ in range(n)]
    key_ids = {}
    for chunk in range(0, n, 500):
        computers = []
        for i, computer in enumerate(uuids[chunk:chunk + 500], start=chunk):
            computers.append({
                "uuid": computer,
                "computerinfo": COMPUTERINFO.format(n=i),
                "data": True,
                "glacier": True,
                "user": {
                    "tags": {
                        "arq-lockdown:computer-uuid": computer,
                        "arq-lockdown:bucket": bucket,
                        "arq-lockdown:computer-name": f"Mac {i}",
                        "arq-lockdown:policy-options": "default",
                        "arq-lockdown:replaced-key": main,
                    },
                    "policies": {"arq-lockdown": policy.replace(TEMPLATE_UUID, computer)},
                    "keys": [{"created_days_ago": 3, "last_used_days_ago": 1}],
                },
            })
        seeded = post(endpoint, "/arq-fixture/seed-fleet", {"bucket": bucket, "computers": computers})
        key_ids.update(seeded["keys"])
    return keys["admins"]["bench-admin"], main, uuids, key_ids, time.perf_counter() - started


def jamf_export(path, bucket, uuids, key_ids):
    """The inventory as Jamf's advanced search exports it: each Mac's extension attribute line."""
    import csv
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Computer Name", "Serial Number", "Arq Lockdown"])
        for i, computer in enumerate(uuids):
            line = f"locked-down key={key_ids[computer][0]} computer={computer} bucket={bucket} user=user{i}"
            writer.writerow([f"Mac {i}", f"C02BENCH{i:05d}", line])


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.calls = {}

    def add(self, label):
        with self.lock:
            self.calls[label] = self.calls.get(label, 0) + 1


def start_proxy(upstream, counter):
    """A proxy in front of moto that counts every call: IAM by action, S3 listings and objects."""

    class Counting(moto_proxy.Handler):
        def forward(self):
            body = self.read_body()
            self.answer(*self.pass_on(body))
            action = self.action(body)
            if action:
                counter.add(("IAM" if "Version=2010-05-08" in body.decode("utf-8", "replace") else "STS", action))
            elif "list-type=2" in self.path:
                counter.add(("S3", "ListObjectsV2 page"))
            elif self.path.split("?")[0].endswith("/computerinfo"):
                counter.add(("S3", "GetObject computerinfo"))
            else:
                counter.add(("S3", f"{self.command} {self.path.split('?')[1] if '?' in self.path else 'other'}"))

    return moto_proxy.serve(Counting, upstream)


def plain_client(endpoint, bucket, uuids, key):
    """Every computerinfo GET, signed (SigV4, as moto wants even without enforcement), from
    CONCURRENCY threads with keep-alive connections; the wall time."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    signer = S3SigV4Auth(Credentials(key["id"], key["secret"]), "s3", "us-east-1")
    host = endpoint.split("://", 1)[1]
    pending = list(uuids)
    lock = threading.Lock()
    failures = []

    def worker():
        connection = http.client.HTTPConnection(host)
        while True:
            with lock:
                if not pending:
                    return
                computer = pending.pop()
            path = f"/{bucket}/{computer}/computerinfo"
            signed = AWSRequest(method="GET", url=endpoint + path, headers={"Range": RANGE})
            signer.add_auth(signed)
            connection.request("GET", path, headers=dict(signed.headers.items()))
            response = connection.getresponse()
            response.read()
            if response.status not in (200, 206):
                failures.append(response.status)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    assert not failures, failures[:5]
    return wall


def main():
    binary = os.path.abspath(sys.argv[1])
    sizes = [int(n) for n in sys.argv[2:]] or [1000, 5000]
    for n in sizes:
        moto = subprocess.Popen([sys.executable, FIXTURE, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        endpoint = moto.stdout.readline().strip()
        bucket = f"fleet-{n}.example"
        admin, main, uuids, key_ids, seeded = seed(endpoint, binary, bucket, n)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
                   AWS_ACCESS_KEY_ID=admin["id"], AWS_SECRET_ACCESS_KEY=admin["secret"])
        command = [binary, "audit", "--bucket", bucket, "--json"]

        def audit(url, extra=()):
            started = time.perf_counter()
            done = subprocess.run(command + list(extra), env=dict(env, AWS_ENDPOINT_URL=url), capture_output=True)
            wall = time.perf_counter() - started
            assert done.returncode in (0, 13), done.stderr.decode()
            report = json.loads(done.stdout)
            assert report["summary"]["computers"] == n, report["summary"]
            assert report["summary"]["states"]["locked-down"] == n, report["summary"]
            return wall

        audit(endpoint)  # warm moto's caches as the plain client's first run does
        audit_walls = [audit(endpoint) for _ in range(RUNS)]
        plain_walls = [plain_client(endpoint, bucket, uuids, admin) for _ in range(RUNS)]
        counter = Counter()
        audit(start_proxy(endpoint, counter))

        iam = {action: count for (service, action), count in counter.calls.items() if service == "IAM"}
        s3 = {action: count for (service, action), count in counter.calls.items() if service == "S3"}
        pages = s3.get("ListObjectsV2 page", 0)
        gets = s3.get("GetObject computerinfo", 0)
        other = sum(count for action, count in s3.items() if action not in ("ListObjectsV2 page", "GetObject computerinfo"))
        audit_wall, plain_wall = statistics.median(audit_walls), statistics.median(plain_walls)
        print(f"{n} computers (seeded in {seeded:.1f} s):")
        print(f"  audit         median {audit_wall:.2f} s of {RUNS} runs (min {min(audit_walls):.2f}, max {max(audit_walls):.2f})")
        print(f"  IAM calls     {sum(iam.values())}: " + ", ".join(f"{a} x{c}" for a, c in sorted(iam.items())))
        print(f"  S3 calls      {sum(s3.values())}: {gets} computerinfo GETs ({gets / n:.3f} per computer), "
              f"{pages} listing pages, {other} other (" + ", ".join(
                  f"{a} x{c}" for a, c in sorted(s3.items()) if a not in ("ListObjectsV2 page", "GetObject computerinfo")) + ")")
        print(f"  plain client  median {plain_wall:.2f} s ({CONCURRENCY} threads, the same {n} GETs)")
        print(f"  audit / plain client: {audit_wall / plain_wall:.2f}x (goal: at most 1.5x)")
        inventory = os.path.join(os.path.dirname(binary), f"bench-inventory-{n}.csv")
        jamf_export(inventory, bucket, uuids, key_ids)
        with_inventory = ["--inventory", inventory]
        inventory_walls = [audit(endpoint, with_inventory) for _ in range(RUNS)]
        counter = Counter()
        audit(start_proxy(endpoint, counter), with_inventory)
        iam = {action: count for (service, action), count in counter.calls.items() if service == "IAM"}
        print(f"  audit --inventory median {statistics.median(inventory_walls):.2f} s of {RUNS} runs; "
              f"IAM calls {sum(iam.values())}: " + ", ".join(f"{a} x{c}" for a, c in sorted(iam.items())))
        os.remove(inventory)
        moto.stdin.close()
        moto.wait()


if __name__ == "__main__":
    main()
