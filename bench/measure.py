"""What bench/harness.py measures with, from /proc: a process tree's CPU time and
resident memory, the whole machine's CPU time (to tell whether anything else ran), and
the services it starts and stops (each by its own pid, never by name).
"""

import os
import resource
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces), 0 = state."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()


def process_tree(pid: int) -> list[int]:
    """`pid` and every live descendant (nginx's workers, a wrapper's child)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


@dataclass
class CpuTicks:
    user: int = 0
    system: int = 0

    @property
    def total(self) -> int:
        return self.user + self.system


def cpu_ticks(pids: list[int]) -> CpuTicks:
    """utime and stime (every thread of each process), in clock ticks."""
    t = CpuTicks()
    for pid in pids:
        try:
            f = _stat_fields(pid)
        except OSError:
            continue
        t.user += int(f[11])
        t.system += int(f[12])
    return t


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def minor_faults(pids: list[int]) -> int:
    """Page faults served without I/O (/proc/PID/stat minflt): memory newly touched."""
    total = 0
    for pid in pids:
        try:
            total += int(_stat_fields(pid)[7])
        except OSError:
            continue
    return total


def io_counts(pids: list[int]) -> dict[str, int]:
    """Read and write system calls and the bytes they moved (/proc/PID/io), summed."""
    out = {"syscr": 0, "syscw": 0, "rchar": 0, "wchar": 0}
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/io").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in out:
                    out[key] += int(value)
        except OSError:
            continue
    return out


def rss_kib(pids: list[int]) -> int:
    return sum(_status_kib(p, "VmRSS") for p in pids)


def peak_rss_kib(pids: list[int]) -> int:
    """VmHWM: the peak resident size since start or since `reset_peak_rss`."""
    return sum(_status_kib(p, "VmHWM") for p in pids)


def reset_peak_rss(pids: list[int]) -> None:
    """Resets VmHWM to the current RSS (`5` > clear_refs, Linux 4.0+, needs root)."""
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            pass


@dataclass
class SystemTicks:
    """The machine's CPU time (/proc/stat `cpu` line), in clock ticks."""

    user: int
    system: int
    idle: int
    steal: int

    @staticmethod
    def read() -> "SystemTicks":
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        user, nice, system, idle, iowait, irq, softirq, steal = (f + [0] * 8)[:8]
        return SystemTicks(user + nice, system + irq + softirq, idle + iowait, steal)


@dataclass
class Window:
    """CPU time spent between two instants: by the machine, and by our own processes."""

    wall: float
    machine_user: int
    machine_busy: int
    steal: int
    ours_user: int
    ours_total: int

    def foreign_cores(self, busy: bool = False) -> float:
        """How many cores' worth of CPU went to processes that are not ours. User time
        only by default: loopback networking lands in softirq time the kernel does not
        always charge to the process that caused it."""
        if busy:
            other = self.machine_busy - self.ours_total
        else:
            other = self.machine_user - self.ours_user
        return max(0.0, other / CLK_TCK / self.wall)

    def steal_cores(self) -> float:
        return self.steal / CLK_TCK / self.wall


class Meter:
    """Starts a window; `stop()` returns it. `ours` lists the trees of every process the
    harness started (looked up again at stop, so workers that started late count)."""

    def __init__(self, ours: list[int]):
        self.roots = ours
        self.t0 = time.monotonic()
        self.sys0 = SystemTicks.read()
        self.ours0 = self._ours()

    def _ours(self) -> CpuTicks:
        pids = [p for r in self.roots for p in process_tree(r)]
        t = cpu_ticks(pids)
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        t.user += round((me.ru_utime + kids.ru_utime) * CLK_TCK)
        t.system += round((me.ru_stime + kids.ru_stime) * CLK_TCK)
        return t

    def stop(self) -> Window:
        sys1, ours1 = SystemTicks.read(), self._ours()
        return Window(
            wall=time.monotonic() - self.t0,
            machine_user=sys1.user - self.sys0.user,
            machine_busy=(sys1.user + sys1.system) - (self.sys0.user + self.sys0.system),
            steal=sys1.steal - self.sys0.steal,
            ours_user=ours1.user - self.ours0.user,
            ours_total=ours1.total - self.ours0.total,
        )


def pinned(cpus: str | None, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpus, *argv] if cpus is not None else argv


class ServiceError(RuntimeError):
    pass


@dataclass
class Service:
    """A process the harness starts, waits for and stops. `ready_url` must answer
    `ready_status` before the service counts as up."""

    name: str
    argv: list[str]
    log: Path
    ready_url: str
    ready_status: int = 200
    cpus: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def tree(self) -> list[int]:
        return process_tree(self.pid)

    def start(self, timeout: float = 60.0) -> "Service":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                pinned(self.cpus, self.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                env={**os.environ, **self.env},
            )
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError(f"{self.name} exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.ready_url, timeout=2) as r:
                    if r.status == self.ready_status:
                        return self
                    last = f"status {r.status}"
            except urllib.error.HTTPError as e:
                if e.code == self.ready_status:
                    return self
                last = f"status {e.code}"
            except OSError as e:
                last = str(e)
            time.sleep(0.1)
        self.stop()
        raise ServiceError(f"{self.name} not ready after {timeout:.0f}s ({last}):\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def port_in_use(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def raise_fd_limit(want: int = 200_000) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
