"""How fast does the classroom server stop? SIGTERM (and Ctrl+C) while the demo trains.

    python scripts/bench_exit.py [--repeats 3]

Each repeat starts a fresh `streamlit run app.py` with two training workers, opens Home in
headless Chromium, presses Run the demo, waits until training has begun, then sends SIGTERM
to the server process (what `kill`, systemd or docker send) or SIGINT to its process group
(Ctrl+C in a terminal). It times until the server and every worker have exited, and checks the
log for tracebacks and the runs folder for a half-trained run. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_browser import ROOT, SLOW, VIEW, free_port, launch_browser, wait_healthy


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def one_stop(playwright, workdir: Path, sig: signal.Signals) -> dict[str, object]:
    """Start a server, start the demo, send `sig`; seconds until everything has exited."""
    runs, log = workdir / "runs", workdir / "server.log"
    port = free_port()
    env = {**os.environ, "FATVIZ_WORKERS": "2", "FATVIZ_RUNS_DIR": str(runs)}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
             str(port), "--server.address", "127.0.0.1"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    browser = None
    try:
        wait_healthy(url, proc, log)
        browser = launch_browser(playwright)
        page = browser.new_page(viewport=VIEW)
        page.goto(url)
        button = page.get_by_role("button", name="Run the demo")
        button.wait_for(timeout=SLOW * 1000)
        deadline = time.monotonic() + SLOW
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:  # the workers are starting
            time.sleep(0.5)
        workers = _children(proc.pid)
        time.sleep(8.0)  # spawned workers import torch and warm up
        button.click()
        time.sleep(3.0)  # the demo is training now
        workers = sorted(set(workers) | set(_children(proc.pid)))
        started = time.perf_counter()
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        while any(_alive(p) for p in workers) and time.perf_counter() - started < 60:
            time.sleep(0.05)
        seconds = time.perf_counter() - started
    finally:
        if browser is not None:
            browser.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    return {"signal": sig.name, "seconds": round(seconds, 2), "workers": len(workers),
            "tracebacks": text.count("Traceback"), "saved_runs": len(list(runs.glob("**/run.pt")))}


def main(argv: list[str] | None = None) -> int:
    """Time the stops and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    rows = []
    with sync_playwright() as pw:
        for sig in (signal.SIGTERM, signal.SIGINT):
            for _ in range(args.repeats):
                with tempfile.TemporaryDirectory() as tmp:
                    rows.append(one_stop(pw, Path(tmp), sig))
    print(f"{'signal':<8}{'seconds':>9}{'workers':>9}{'tracebacks':>12}{'saved runs':>12}")
    for r in rows:
        print(f"{r['signal']:<8}{r['seconds']:>9.2f}{r['workers']:>9}{r['tracebacks']:>12}{r['saved_runs']:>12}")
    summary = {sig: {"median_s": statistics.median(r["seconds"] for r in rows if r["signal"] == sig),
                     "worst_s": max(r["seconds"] for r in rows if r["signal"] == sig)}
               for sig in ("SIGTERM", "SIGINT")}
    print(json.dumps({"stops": rows, "summary": summary, "target_s": 3.0}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
