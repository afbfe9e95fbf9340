#!/usr/bin/env python3
"""Service figures for `vcw serve` (release build), printed next to reference points
measured in the same run:

* tiny jobs per second: N two-second 128x96 clips PUT back to back, timed until all done;
  reference: the same clips through `vcw scan` in one process (models loaded once).
* upload MB/s over loopback with sealing: a 43 MB 1080p clip and a 400 MB body, next to
  `vcw seal` of the same file (sealing alone, no HTTP) and curl to a /dev/null sink.
* the server's peak RSS during the 400 MB upload (constant memory: it should not grow
  with the body).

Usage: scripts/bench_service.py [N_TINY_JOBS]  (run by `make bench`)
       scripts/bench_service.py --ingest GIB  (only the upload of a GIB-GiB body; prints
       `ingest PUT_MBPS SEAL_MBPS DISK_MBPS IDLE_RSS_MB PEAK_RSS_MB` for scripts/bench;
       seal is `vcw seal` of the same file, disk is `dd conv=fsync` of it)."""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import http.server
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VCW = os.path.join(ROOT, "target/release/vcw")


def rss_kb(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class PeakRss:
    """Samples a process's RSS every 20 ms while the `with` block runs: `.idle` is the
    RSS before it, `.peak` the largest seen (KiB)."""
    def __init__(self, pid):
        self.pid = pid
        self.idle = self.peak = rss_kb(pid)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.sample)

    def sample(self):
        while not self.done.is_set():
            self.peak = max(self.peak, rss_kb(self.pid))
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()


def request(method, url, token, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def curl_put(url, token, path, consent=""):
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{speed_upload}",
         "-H", f"Authorization: Bearer {token}", "-H", f"Vcw-Consent: {consent}",
         "-T", path, url],
        check=True, capture_output=True, text=True).stdout.split()
    return int(out[0]), float(out[1]) / 1e6


class Sink(http.server.BaseHTTPRequestHandler):
    """Reads and discards a PUT body: what plain HTTP over loopback costs."""
    def do_PUT(self):
        left = int(self.headers["Content-Length"])
        while left:
            left -= len(self.rfile.read(min(left, 1 << 20)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    ingest_gib = float(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[1] == "--ingest" else None
    n = int(sys.argv[1]) if len(sys.argv) > 1 and ingest_gib is None else 20
    tmp = tempfile.mkdtemp(prefix="vcw-bench-")
    data = os.path.join(tmp, "data")
    token = subprocess.run([VCW, "token", "create", "--role", "admin", "--data-dir", data],
                           check=True, capture_output=True, text=True).stdout.strip()
    env = dict(os.environ, VCW__SERVER__QUEUE_CAPACITY="100000",
               VCW__SERVER__RATE_BURST="100000", VCW__SERVER__RATE_PER_SECOND="100000",
               VCW__LIMITS__MAX_FILE_SIZE=str(1 << 34))
    server = subprocess.Popen([VCW, "serve", "--data-dir", data, "--listen", "127.0.0.1:0",
                               "--workers", "2"], stdout=subprocess.PIPE, env=env, text=True,
                              stderr=subprocess.DEVNULL)
    base = next(w for w in server.stdout.readline().split() if w.startswith("http://"))
    # The subject's consent token, from the local issuer `vcw serve` just created.
    consent = subprocess.run([VCW, "consent", "issue", "--subject", "bench", "--ttl", "1d",
                              "--data-dir", data], check=True, capture_output=True,
                             text=True).stdout.strip()
    try:
        if ingest_gib is not None:
            return ingest(base, token, consent, tmp, server, ingest_gib)
        # Tiny jobs.
        clip = os.path.join(tmp, "tiny.mp4")
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                        "testsrc=duration=2:size=128x96:rate=10", "-pix_fmt", "yuv420p", clip],
                       check=True)
        body = open(clip, "rb").read()
        ids = [f"{i:032x}" for i in range(1, n + 1)]
        # Warm up (models load on the first job of each worker).
        for wid in ("f" * 32, "e" * 32):
            request("PUT", f"{base}/v1/videos/{wid}", token, body, {"Vcw-Consent": consent})
        for wid in ("f" * 32, "e" * 32):
            while json.loads(request("GET", f"{base}/v1/videos/{wid}", token)[1])["state"] != "done":
                time.sleep(0.05)
        start = time.monotonic()
        for i in ids:
            status, _ = request("PUT", f"{base}/v1/videos/{i}", token, body, {"Vcw-Consent": consent})
            assert status == 202, status
        pending = set(ids)
        while pending:
            for i in list(pending):
                state = json.loads(request("GET", f"{base}/v1/videos/{i}", token)[1])["state"]
                if state in ("done", "failed", "dead"):
                    assert state == "done", state
                    pending.discard(i)
            time.sleep(0.05)
        service_rate = n / (time.monotonic() - start)
        start = time.monotonic()
        subprocess.run([VCW, "scan", "--json"] + [clip] * n, check=True, capture_output=True)
        scan_rate = n / (time.monotonic() - start)
        print(f"tiny jobs (2 s 128x96): vcw serve {service_rate:.1f} jobs/s (2 workers, "
              f"upload+scan+seal+store) | vcw scan, one process: {scan_rate:.1f} videos/s")

        # Uploads.
        big = os.path.join(tmp, "big.bin")
        with open(big, "wb") as f:
            f.write(body[:32])  # an ftyp box: accepted as a container, fails in the job
            chunk = os.urandom(1 << 20)
            for _ in range(400):
                f.write(chunk)
        subprocess.run([VCW, "keys", "init", "--data-dir", os.path.join(tmp, "seal")],
                       check=True, capture_output=True)
        sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
        threading.Thread(target=sink.serve_forever, daemon=True).start()
        sink_url = f"http://127.0.0.1:{sink.server_address[1]}/x"
        hd = os.path.join(ROOT, "samples/generated/1080p_2min.mp4")
        uploaded = []
        for name, path in (("400 MB body", big), ("1080p_2min.mp4 (43 MB)", hd)):
            # Measure with the workers idle: a running job's decoding would dominate RSS.
            while json.loads(request("GET", f"{base}/readyz", token)[1]) and any(
                    json.loads(request("GET", f"{base}/v1/videos/{v}", token)[1])["state"]
                    in ("queued", "running") for v in uploaded):
                time.sleep(0.2)
            vid = os.urandom(16).hex()
            uploaded.append(vid)
            with PeakRss(server.pid) as rss:
                status, mbps = curl_put(f"{base}/v1/videos/{vid}", token, path, consent)
            assert status == 202, status
            _, sink_mbps = curl_put(sink_url, token, path)
            t0 = time.monotonic()
            subprocess.run([VCW, "seal", path, os.path.join(tmp, "sealed"), "--subject", "b",
                            "--data-dir", os.path.join(tmp, "seal")], check=True,
                           capture_output=True)
            seal_mbps = os.path.getsize(path) / 1e6 / (time.monotonic() - t0)
            os.remove(os.path.join(tmp, "sealed"))
            print(f"upload {name}: vcw PUT {mbps:.0f} MB/s (sealed to disk) | vcw seal alone "
                  f"{seal_mbps:.0f} MB/s | curl to a discarding sink {sink_mbps:.0f} MB/s; "
                  f"server RSS {rss.idle // 1024} MB idle, {rss.peak // 1024} MB peak during upload")
    finally:
        server.terminate()
        server.wait(timeout=120)
        subprocess.run(["rm", "-rf", tmp])


def ingest(base, token, consent, tmp, server, gib):
    """One upload of `gib` GiB (random bytes behind an ftyp box: accepted, and the job
    fails fast) next to `vcw seal` of the same file, with the server's RSS sampled."""
    path = os.path.join(tmp, "body.bin")
    with open(path, "wb") as f:
        f.write(bytes.fromhex("0000001c66747970") + b"isom" + bytes(16))
        chunk = os.urandom(1 << 20)
        for _ in range(int(gib * 1024)):
            f.write(chunk)
    subprocess.run([VCW, "keys", "init", "--data-dir", os.path.join(tmp, "seal")],
                   check=True, capture_output=True)
    with PeakRss(server.pid) as rss:
        status, put_mbps = curl_put(f"{base}/v1/videos/{os.urandom(16).hex()}", token, path,
                                    consent)
    assert status == 202, status
    t0 = time.monotonic()
    subprocess.run([VCW, "seal", path, os.path.join(tmp, "sealed"), "--subject", "b",
                    "--data-dir", os.path.join(tmp, "seal")], check=True, capture_output=True)
    seal_mbps = os.path.getsize(path) / 1e6 / (time.monotonic() - t0)
    # What the disk allows: the same bytes copied and fsynced, nothing else.
    t0 = time.monotonic()
    subprocess.run(["dd", f"if={path}", f"of={os.path.join(tmp, 'dd.bin')}", "bs=4M",
                    "conv=fsync", "status=none"], check=True)
    disk_mbps = os.path.getsize(path) / 1e6 / (time.monotonic() - t0)
    print(f"ingest {put_mbps:.0f} {seal_mbps:.0f} {disk_mbps:.0f} {rss.idle // 1024} "
          f"{rss.peak // 1024}")


if __name__ == "__main__":
    main()
