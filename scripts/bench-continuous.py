#!/usr/bin/env python3
"""Continuous-mode figures: propagation latency (median and max over 50 changes) and idle
CPU per minute of client and agent, for tandem -C and, when installed, Unison's
-repeat watch, side by side. Called by `scripts/bench.sh --continuous`.

usage: bench-continuous.py TANDEM AGENT WORKDIR
"""
import os
import shutil
import statistics
import subprocess
import sys
import time

CHANGES = 50
IDLE_SECONDS = 30
TICK = os.sysconf("SC_CLK_TCK")


def wait_for(cond, deadline=30.0):
    end = time.monotonic() + deadline
    while not cond():
        if time.monotonic() > end:
            raise SystemExit("timed out")
        time.sleep(0.002)


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def tree_pids(pid):
    """The process and all its descendants."""
    out = [pid]
    for p in out:
        kids = subprocess.run(["pgrep", "-P", str(p)], capture_output=True, text=True).stdout
        out.extend(int(k) for k in kids.split())
    return out


def cpu_seconds(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / TICK


def measure(name, start, a, b, settle):
    """Starts a syncer, makes CHANGES changes on side a, and times each one's arrival."""
    proc = start()
    try:
        wait_for(lambda: read(os.path.join(b, "ready")) == "ready", 120)
        latencies = []
        for i in range(CHANGES):
            path = f"c{i:03}"
            text = f"change {i}\n"
            t0 = time.monotonic()
            with open(os.path.join(a, path), "w") as f:
                f.write(text)
            wait_for(lambda: read(os.path.join(b, path)) == text)
            latencies.append(time.monotonic() - t0)
        time.sleep(settle)  # let the last echo die down before measuring idleness
        pids = tree_pids(proc.pid)
        c0 = cpu_seconds(pids)
        time.sleep(IDLE_SECONDS)
        idle = (cpu_seconds(pids) - c0) * 60 / IDLE_SECONDS
        print(f"{name:<34} {statistics.median(latencies):8.2f} {max(latencies):8.2f} {idle:14.3f}")
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def fresh(work, name):
    a, b = os.path.join(work, name, "a"), os.path.join(work, name, "b")
    shutil.rmtree(os.path.join(work, name), ignore_errors=True)
    os.makedirs(a)
    os.makedirs(b)
    with open(os.path.join(a, "ready"), "w") as f:
        f.write("ready")
    return a, b


def main():
    tandem, agent, work = sys.argv[1:4]
    print(f"\ncontinuous mode: {CHANGES} files created one after another on one side; "
          f"latency until each is on the other side, idle CPU of all processes")
    print(f"{'':<34} {'median s':>8} {'max s':>8} {'idle CPU s/min':>14}")
    env = dict(os.environ, FILESYNC=os.path.join(work, "state-continuous"))
    for cooloff in ["0s", "1s", "3s"]:
        a, b = fresh(work, f"tandem{cooloff}")
        measure(
            f"tandem -C --cooloff {cooloff}",
            lambda: subprocess.Popen(
                [tandem, "-d", a, "-r", b, "-K", "bidi", "-C", "--cooloff", cooloff,
                 "-q", "--agent-path", agent, "-N", f"bench-{cooloff}"],
                env=env, stdout=subprocess.DEVNULL),
            a, b, settle=float(cooloff[:-1]) + 1)
    if shutil.which("unison"):
        # Debian's unison has no unison-fsmonitor: without it, -repeat watch cannot run,
        # and -repeat 1 (a full rescan every second) is the closest it gets.
        repeat = "watch" if shutil.which("unison-fsmonitor") else "1"
        a, b = fresh(work, "unison")
        uhome = os.path.join(work, "unison-home")
        os.makedirs(uhome, exist_ok=True)
        measure(
            f"unison -repeat {repeat}",
            lambda: subprocess.Popen(
                ["unison", a, b, "-batch", "-repeat", repeat, "-silent", "-auto"],
                env=dict(os.environ, UNISON=uhome), stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL),
            a, b, settle=2)
    else:
        print("(unison not installed: apt-get install unison)")


main()
