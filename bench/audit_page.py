"""Benchmark: the page `arq-lockdown audit --html --history` writes, for a fleet of N computers
seeded straight into moto (bench/audit.py's seed), in two worlds: every Mac locked down (bench/audit's
world) and none (the first day of a rollout: every Mac a row of the table), each with a year of
daily history. Not a test: it prints figures.

  - size: the page's bytes;
  - render: headless Chromium (chromium-headless-shell, kept off the network) opens a wrapper page
    that loads the page in an iframe and reads, at the iframe's load event, the time since it set
    the iframe's address, after forcing a layout (offsetHeight): fetch, parse, the page's script,
    style and layout. Median of RUNS browser launches. Also the wall time of a whole launch with
    --dump-dom, against the same for an empty page.

  .tools/venv/bin/python bench/audit_page.py BINARY [N]
"""
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import audit

RUNS = int(os.environ.get("RUNS", "5"))
# The pages are kept here, to be looked at.
KEPT = os.path.join(audit.ROOT, "target", "bench-audit-page")
BROWSER = [
    "chromium-headless-shell", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND", "--allow-file-access-from-files",
    "--window-size=1280,2000", "--dump-dom",
]
WRAPPER = """<!doctype html><meta charset="utf-8"><title>measuring</title><body><script>
var frame = document.createElement("iframe");
frame.width = 1280; frame.height = 2000;
var started = performance.now();
frame.onload = function () {
  var height = frame.contentDocument.body.offsetHeight;
  document.title = "rendered " + (performance.now() - started).toFixed(1) + " ms, " + height + " px";
};
frame.src = "PAGE";
document.body.appendChild(frame);
</script>"""


def browse(url, profile):
    started = time.perf_counter()
    done = subprocess.run(BROWSER + [f"--user-data-dir={profile}", url], capture_output=True, text=True, check=True)
    return done.stdout, time.perf_counter() - started


def render(page, work):
    wrapper = os.path.join(os.path.dirname(page), "wrapper.html")
    with open(wrapper, "w") as f:
        f.write(WRAPPER.replace("PAGE", os.path.basename(page)))
    blank = os.path.join(work, "blank.html")
    with open(blank, "w") as f:
        f.write("<!doctype html><title>blank</title>")
    rendered, walls, blanks = [], [], []
    for run in range(RUNS):
        dom, _ = browse(f"file://{wrapper}", os.path.join(work, f"profile-w{run}"))
        rendered.append(float(re.search(r"rendered ([0-9.]+) ms", dom).group(1)))
        _, wall = browse(f"file://{page}", os.path.join(work, f"profile-p{run}"))
        walls.append(wall)
        _, wall = browse(f"file://{blank}", os.path.join(work, f"profile-b{run}"))
        blanks.append(wall)
    return rendered, walls, blanks


def history(path, n, days=365):
    """A year of daily lines, as --history writes them: the rollout from none to all."""
    now = int(time.time())
    with open(path, "w") as f:
        for day in range(days, 0, -1):
            done = n * (days - day) // days
            at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - day * 86400))
            f.write(json.dumps({"time": at, "computers": n, "states": {"not-locked-down": n - done, "locked-down": done},
                                "ready_to_retire_main_keys": False, "main_keys": {"used": 1}}) + "\n")


def main():
    binary = os.path.abspath(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    moto = subprocess.Popen([sys.executable, audit.FIXTURE, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    endpoint = moto.stdout.readline().strip()
    os.makedirs(KEPT, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        locked, _, _, _ = audit.seed(endpoint, binary, f"fleet-{n}.example", n)
        rollout = f"rollout-{n}.example"
        audit.post(endpoint, "/arq-fixture/seed-fleet", {"bucket": rollout})
        for chunk in range(0, n, 500):
            computers = [{"uuid": f"00000000-0000-4000-8000-{i:012d}", "computerinfo": audit.COMPUTERINFO.format(n=i),
                          "data": True} for i in range(chunk, min(chunk + 500, n))]
            audit.post(endpoint, "/arq-fixture/seed-fleet", {"bucket": rollout, "computers": computers})
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true", AWS_ENDPOINT_URL=endpoint,
                   AWS_ACCESS_KEY_ID=locked["id"], AWS_SECRET_ACCESS_KEY=locked["secret"])
        for bucket, world in [(f"fleet-{n}.example", "every Mac locked down (bench/audit's world)"),
                              (rollout, "no Mac locked down (every Mac a row)")]:
            page = os.path.join(KEPT, f"{bucket}.html")
            history(os.path.join(work, f"audit-{bucket}.jsonl"), n)
            done = subprocess.run([binary, "audit", "--bucket", bucket, "--html", page, "--history", work],
                                  env=env, capture_output=True)
            assert done.returncode in (0, 13), done.stderr.decode()
            rows = open(page).read().count("<tr data-state=")
            rendered, walls, blanks = render(page, work)
            load = os.getloadavg()[0]
            print(f"{n} computers, {world} (load average {load:.1f} on {os.cpu_count()} cores):")
            print(f"  page          {os.path.getsize(page) / 1e6:.2f} MB, {rows} rows, 366 runs of history: {page}")
            print(f"  render        median {statistics.median(rendered):.0f} ms of {RUNS} launches "
                  f"(min {min(rendered):.0f}, max {max(rendered):.0f}): address set to load event, layout forced")
            print(f"  whole launch  median {statistics.median(walls):.2f} s with --dump-dom "
                  f"(an empty page: {statistics.median(blanks):.2f} s)")
    moto.stdin.close()
    moto.wait()


if __name__ == "__main__":
    main()
