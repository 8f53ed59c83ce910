"""Helpers shared by the benchmark scripts: timing child processes, interleaving, the machine.

Standard library only: imported by bench/run.py (the template's dev env) and by the
scripts that run inside a baked repo's venv (bench/data_hash.py, bench/scaling.py, ...).
"""

import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def run_timed(cmd: list[str], cwd: str | Path | None = None, env: dict | None = None,
              check: bool = True, timeout: float | None = None) -> dict:
    """Run a command; return its wall time, exit code, peak RSS and output.

    The peak RSS is the child's own ru_maxrss from wait4 (KiB on Linux), so it counts
    neither this process nor earlier children. Output goes through temp files, so a
    chatty child cannot block on a full pipe while we wait for it.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL)
        deadline = None if timeout is None else began + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG if deadline else 0)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        wall = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = {"cmd": cmd, "wall_s": wall, "rc": proc.returncode,
                  "maxrss_mb": usage.ru_maxrss / 1024, "user_s": usage.ru_utime,
                  "sys_s": usage.ru_stime,
                  "stdout": out.read().decode(errors="replace"),
                  "stderr": err.read().decode(errors="replace")}
    if check and result["rc"] != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {result['rc']}:\n"
                           f"{result['stderr'][-4000:]}")
    return result


def interleaved(arms: dict[str, Callable[[int], float | dict]], reps: int,
                log: Callable[[str], None] = print) -> dict[str, list]:
    """Run every arm `reps` times, alternating their order (A B, B A, A B, ...), so slow
    drift of a shared machine's load falls on every arm alike. Returns the results per arm."""
    names = list(arms)
    results: dict[str, list] = {name: [] for name in names}
    for rep in range(reps):
        order = names if rep % 2 == 0 else names[::-1]
        for name in order:
            value = arms[name](rep)
            results[name].append(value)
            shown = value if isinstance(value, (int, float)) else value.get("wall_s", "")
            shown = shown if isinstance(shown, str) else f"{shown:.3f}"
            log(f"  rep {rep + 1}/{reps} {name}: {shown}")
    return results


def median(values: list[float]) -> float:
    return statistics.median(values)


def paired_ratios(a: list[float], b: list[float]) -> list[float]:
    """a[i] / b[i] for runs made side by side."""
    return [x / y for x, y in zip(a, b, strict=True)]


def summary(values: list[float]) -> dict:
    return {"median": median(values), "min": min(values), "max": max(values), "n": len(values),
            "values": values}


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def rss_mb() -> float | None:
    """This process's current resident set size (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def host() -> dict:
    return {"hostname": socket.gethostname(), "cpu_model": cpu_model(),
            "cpus": os.cpu_count(), "memory_gib": memory_gib(),
            "os": f"{platform.system()} {platform.release()}", "machine": platform.machine(),
            "python": platform.python_version(), "loadavg": os.getloadavg()}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
