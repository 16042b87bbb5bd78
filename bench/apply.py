"""Benchmark: `arq-lockdown apply` against moto (IAM enforcement on), and the same steps with the
aws CLI. Not a test: it prints figures.

For each of N runs a fresh computer UUID, home and file keychain (holding the main keys) are made
and `apply --no-relaunch` runs against moto. Time in our own code is the process's CPU time (user +
system, from getrusage): everything it computes, from start-up to exit. Time in AWS calls is the
rest of the wall time, spent waiting for moto. One more run goes through a recording proxy in
front of moto, which counts the calls by service and action. Then the same apply through a proxy
that adds 50 ms to every call (a real region's round trip), and through one that refuses the new
key for D seconds (as AWS does for a key it has just made), timing "accepted" to "verified".

  .tools/venv/bin/python bench/apply.py BINARY [RUNS] [AWS_CLI]
"""
import json
import os
import plistlib
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import moto_proxy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "scripts", "moto-fixture.py")
BUCKET = "akiaexample.comhaystacksoftwarearq"
OTHER = "7A1E5C3B-9D2F-4E8A-B6C4-1F3D5E7A9B2C"


class Recorder:
    """The calls seen since the last `take`: (label, seconds)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = []

    def add(self, label, seconds):
        with self.lock:
            self.calls.append((label, seconds))

    def take(self):
        with self.lock:
            calls, self.calls = self.calls, []
        return calls


class NewKeyGate:
    """Refuses every key but the admin's for `seconds` after its first call, the way AWS refuses
    a key it has just created; remembers when each key was first accepted and last used."""

    def __init__(self, admin_id, seconds):
        self.admin_id = admin_id
        self.seconds = seconds
        self.lock = threading.Lock()
        self.first_seen = {}
        self.last_used = {}

    def refuses(self, key_id):
        now = time.perf_counter()
        if key_id is None or key_id == self.admin_id:
            return False
        with self.lock:
            first = self.first_seen.setdefault(key_id, now)
            if now - first < self.seconds:
                return True
            return False

    def used(self, key_id):
        if key_id is not None and key_id != self.admin_id:
            with self.lock:
                self.last_used[key_id] = time.perf_counter()

    def accepted_to_verified(self):
        """Seconds from the new key's first acceptance to its last call (the last verify probe)."""
        (key_id, first), = self.first_seen.items()
        return self.last_used[key_id] - (first + self.seconds)


def refusal(is_sts):
    """The error AWS gives a key it does not know yet."""
    if is_sts:
        return (b"<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code>"
                b"<Message>The security token included in the request is invalid.</Message></Error></ErrorResponse>")
    return (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidAccessKeyId</Code>"
            b"<Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>")


def start_proxy(upstream, recorder, delay=0.0, gate=None):
    """A proxy in front of moto that records every call, adds `delay` seconds to each and lets
    `gate` refuse new keys."""

    class Recording(moto_proxy.Handler):
        def forward(self):
            started = time.perf_counter()
            body = self.read_body()
            if delay:
                time.sleep(delay)
            credential = re.search(r"Credential=([A-Z0-9]+)/", self.headers.get("Authorization", ""))
            key_id = credential and credential.group(1)
            if gate and gate.refuses(key_id):
                self.answer(403, [("Content-Type", "text/xml")], refusal(b"Action=" in body))
                recorder.add("refused", time.perf_counter() - started)
                return
            self.answer(*self.pass_on(body))
            if gate:
                gate.used(key_id)
            recorder.add(self.action(body) or f"S3 {self.command}", time.perf_counter() - started)

    return moto_proxy.serve(Recording, upstream)


def make_mac(work, admin):
    computer = str(uuid.uuid4()).upper()
    home = os.path.join(work, computer)
    os.makedirs(os.path.join(home, "Library/Arq/config"))
    with open(os.path.join(home, "Library/Arq/config/app_config.plist"), "wb") as f:
        plistlib.dump({"localS3BucketName": BUCKET, "localComputerUUID": computer}, f)
    store = os.path.join(home, "keychain.json")
    with open(store, "w") as f:
        json.dump({"Arq S3": {"account": admin["id"], "password": admin["secret"]}}, f)
    return computer, home, store


def ms(seconds):
    return f"{seconds * 1000:.1f} ms"


def main():
    binary = os.path.abspath(sys.argv[1])
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    aws_cli = sys.argv[3] if len(sys.argv) > 3 else None
    moto = subprocess.Popen([sys.executable, FIXTURE, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    endpoint = moto.stdout.readline().strip()
    seeded = subprocess.run([sys.executable, FIXTURE, "seed", endpoint, BUCKET, OTHER],
                            capture_output=True, text=True, check=True)
    admin = json.loads(seeded.stdout)["admin"]
    recorder = Recorder()
    proxy = start_proxy(endpoint, recorder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=proxy, AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")

    def timed(command, environment):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, env=environment, check=True, capture_output=True)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return wall, cpu

    direct = dict(env, AWS_ENDPOINT_URL=endpoint)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for _ in range(runs):
            _, home, store = make_mac(work, admin)
            command = [binary, "apply", "--arq-home", home, "--credential-store", f"file:{store}", "--no-relaunch"]
            wall, cpu = timed(command, direct)
            rerun_wall, rerun_cpu = timed(command, direct)
            rows.append({"wall": wall, "cpu": cpu, "rerun": rerun_wall})
        _, home, store = make_mac(work, admin)
        command = [binary, "apply", "--arq-home", home, "--credential-store", f"file:{store}", "--no-relaunch"]
        recorder.take()
        subprocess.run(command, env=env, check=True, capture_output=True)
        calls = recorder.take()
        subprocess.run(command, env=env, check=True, capture_output=True)
        rerun_calls = len(recorder.take())

        walls = [r["wall"] for r in rows]
        print(f"apply against moto, {runs} runs (a fresh computer each):")
        print(f"  wall time     median {ms(statistics.median(walls))} (min {ms(min(walls))}, max {ms(max(walls))})")
        print(f"  our own code  median {ms(statistics.median(r['cpu'] for r in rows))} (CPU time of the process)")
        print(f"  in AWS calls  median {ms(statistics.median(r['wall'] - r['cpu'] for r in rows))} (the rest: waiting for moto)")
        counts = {}
        for label, _ in calls:
            counts[label] = counts.get(label, 0) + 1
        print(f"  AWS calls per run: {len(calls)}: " + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
        print(f"  re-run with nothing to do: median {ms(statistics.median(r['rerun'] for r in rows))}, AWS calls: {rerun_calls}")

        slow = start_proxy(endpoint, Recorder(), delay=0.050)
        slow_walls = []
        for _ in range(runs):
            _, home, store = make_mac(work, admin)
            command = [binary, "apply", "--arq-home", home, "--credential-store", f"file:{store}", "--no-relaunch"]
            slow_walls.append(timed(command, dict(env, AWS_ENDPOINT_URL=slow))[0])
        print(f"  through a proxy adding 50 ms to every call: median {ms(statistics.median(slow_walls))}")

        print("a new key refused for D seconds (as AWS does at first), time from accepted to verified:")
        for seconds in (2, 5, 9):
            lags = []
            for _ in range(3):
                gate = NewKeyGate(admin["id"], seconds)
                gated = start_proxy(endpoint, Recorder(), gate=gate)
                _, home, store = make_mac(work, admin)
                command = [binary, "apply", "--arq-home", home, "--credential-store", f"file:{store}", "--no-relaunch"]
                subprocess.run(command, env=dict(env, AWS_ENDPOINT_URL=gated), check=True, capture_output=True)
                lags.append(gate.accepted_to_verified())
            print(f"  D = {seconds} s: median {ms(statistics.median(lags))} (max {ms(max(lags))}, 3 runs)")

        if aws_cli:
            cli_walls, cli_calls = [], 0
            for _ in range(runs):
                computer, home, store = make_mac(work, admin)
                script = ["bash", os.path.join(ROOT, "bench", "apply-awscli.sh"), BUCKET, computer, OTHER, store]
                cli_env = dict(direct, AWS_ACCESS_KEY_ID=admin["id"], AWS_SECRET_ACCESS_KEY=admin["secret"], AWS=aws_cli)
                cli_walls.append(timed(script, cli_env)[0])
            computer, home, store = make_mac(work, admin)
            cli_env = dict(env, AWS_ACCESS_KEY_ID=admin["id"], AWS_SECRET_ACCESS_KEY=admin["secret"], AWS=aws_cli)
            recorder.take()
            subprocess.run(["bash", os.path.join(ROOT, "bench", "apply-awscli.sh"), BUCKET, computer, OTHER, store],
                           env=cli_env, check=True, capture_output=True)
            cli_calls = len(recorder.take())
            print(f"the same steps with the aws CLI (bench/apply-awscli.sh), {runs} runs:")
            print(f"  wall time     median {ms(statistics.median(cli_walls))}, AWS calls per run: {cli_calls}")
            print(f"  aws CLI / arq-lockdown: {statistics.median(cli_walls) / statistics.median(walls):.1f}x")
    moto.stdin.close()
    moto.wait()


if __name__ == "__main__":
    main()
