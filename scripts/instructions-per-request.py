#!/usr/bin/env python3
"""The relay's CPU cost per request, as instructions counted by callgrind: repeatable whatever
else the machine does (wall-clock benchmarks on a shared 2-core machine are not), so two builds
compare exactly. Not a test; prints one line per engine.

    scripts/instructions-per-request.py --crs target/release/crs \
        --mock target/release/mock-upstream [--requests 2000] [--engine embedded|redis|both]

The relay runs twice under `valgrind --tool=callgrind`: set up (admin sign-in, one account,
one key) and a warm-up of sequential keep-alive requests (Anthropic Messages, non-stream, the
same body as `benches/relay_load.rs`), then the same plus N more requests; the difference of
the two totals over N is one request's cost, background work (usage recording) included.
"""

import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BODY = json.dumps(
    {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hello"}],
    }
)
PASSWORD = "bench-admin-password"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited: {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} never listened on {port}")


def post(conn, path, body, headers=None):
    h = {"content-type": "application/json"}
    h.update(headers or {})
    conn.request("POST", path, body=json.dumps(body) if not isinstance(body, str) else body, headers=h)
    r = conn.getresponse()
    data = r.read()
    return r.status, data


def measure(crs, mock_port, engine, requests, warmup):
    tmp = tempfile.mkdtemp(prefix="crs-ipr-")
    env = dict(os.environ)
    port = free_port()
    redis = None
    env.update(
        HOST="127.0.0.1",
        PORT=str(port),
        DATA_DIR=os.path.join(tmp, "data"),
        ADMIN_USERNAME="admin",
        ADMIN_PASSWORD=PASSWORD,
        ENCRYPTION_KEY="bench-encryption-key-0123456789abcdef",
        LOG_LEVEL="warn",
        PRICING_FILE=os.path.join(ROOT, "resources/model-pricing/model_prices_and_context_window.json"),
        SITE_ROOT=tmp,
        # Usage written in one batch when the relay stops (as under load, where batches are
        # large): batch sizes would otherwise depend on timing, which valgrind changes.
        ACCOUNTING_FLUSH_MS="600000",
    )
    env.pop("REDIS_URL", None)
    if engine == "redis":
        rport = free_port()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(rport), "--save", "", "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )
        wait_port(rport, redis, "redis-server")
        env["REDIS_URL"] = f"redis://127.0.0.1:{rport}"
    out = os.path.join(tmp, "callgrind.out")
    relay = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", crs],
        cwd=tmp,
        env=env,
        stdout=open(os.path.join(tmp, "relay.log"), "w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port, relay, "crs")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        status, data = post(conn, "/web/auth/login", {"username": "admin", "password": PASSWORD})
        token = json.loads(data)["token"]
        auth = {"authorization": f"Bearer {token}"}
        status, data = post(
            conn,
            "/admin/claude-console-accounts",
            {"name": "bench", "apiUrl": f"http://127.0.0.1:{mock_port}", "apiKey": "sk-ant-bench", "priority": 1},
            auth,
        )
        assert status == 200, data
        status, data = post(conn, "/admin/api-keys", {"name": "bench"}, auth)
        key = json.loads(data)["data"]["apiKey"]
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}

        def run(n):
            for _ in range(n):
                status, data = post(conn, "/v1/messages", BODY, headers)
                if status != 200:
                    sys.exit(f"relay answered {status}: {data[:200]!r}")

        run(warmup + requests)
        time.sleep(1)  # what the requests left to do in the background
    finally:
        relay.terminate()
        relay.wait()
        if redis:
            redis.terminate()
            redis.wait()
    total = 0
    for name in os.listdir(tmp):
        if name.startswith("callgrind.out"):
            with open(os.path.join(tmp, name)) as f:
                for line in f:
                    m = re.match(r"(?:summary|totals): (\d+)", line)
                    if m:
                        total = max(total, int(m.group(1)))
    return total


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--crs", default=os.path.join(ROOT, "target/release/crs"))
    a.add_argument("--mock", default=os.path.join(ROOT, "target/release/mock-upstream"))
    a.add_argument("--requests", type=int, default=2000)
    a.add_argument("--warmup", type=int, default=200)
    a.add_argument("--engine", default="both", choices=["embedded", "redis", "both"])
    args = a.parse_args()
    mock_port = free_port()
    mock = subprocess.Popen([args.mock, f"127.0.0.1:{mock_port}"], stdout=subprocess.DEVNULL)
    try:
        wait_port(mock_port, mock, "mock-upstream")
        for engine in ["embedded", "redis"] if args.engine == "both" else [args.engine]:
            base = measure(args.crs, mock_port, engine, 0, args.warmup)
            total = measure(args.crs, mock_port, engine, args.requests, args.warmup)
            per = (total - base) / args.requests
            print(f"{engine}: {per:,.0f} instructions per request ({args.requests} requests; runs of {base:,} and {total:,})")
    finally:
        mock.terminate()


if __name__ == "__main__":
    main()
