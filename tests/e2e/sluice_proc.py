"""Running a real `sluice serve` process for the end-to-end tests.

See conftest.py for the fixtures built on this."""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "target" / "fast" / "sluice"
BUILD_HINT = "build it with: cargo build --profile fast -p sluice"

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

LOG_TAIL_BYTES = 40_000

# The settings the broker accepts, as (logical name, flag, toml key, env var).
SETTINGS = {
    "data_dir": ("--data-dir", "data_dir", "SLUICE_DATA_DIR"),
    "listen": ("--listen", "listen", "SLUICE_LISTEN"),
    "advertise": ("--advertise", "advertise", "SLUICE_ADVERTISE"),
    "http_listen": ("--http-listen", "http_listen", "SLUICE_HTTP_LISTEN"),
    "auto_create_topics_enable": (
        "--auto-create-topics-enable",
        "auto_create_topics_enable",
        "SLUICE_AUTO_CREATE_TOPICS_ENABLE",
    ),
    "num_partitions": ("--num-partitions", "num_partitions", "SLUICE_NUM_PARTITIONS"),
    "message_max_bytes": (
        "--message-max-bytes",
        "message_max_bytes",
        "SLUICE_MESSAGE_MAX_BYTES",
    ),
    "otlp_http_listen": ("--otlp-http-listen", "otlp_http_listen", "SLUICE_OTLP_HTTP_LISTEN"),
    "otlp_grpc_listen": ("--otlp-grpc-listen", "otlp_grpc_listen", "SLUICE_OTLP_GRPC_LISTEN"),
}


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports handed to brokers, moto and PostgreSQL come from below the kernel's
# ephemeral range, one after another. A port the kernel picked for `bind(0)`
# and that we then closed is free for the kernel to hand to the next outgoing
# connection (a client of any test), which then collides with the broker
# started on it a moment later ("Address already in use" in CI). Ports below
# the ephemeral range are never picked for outgoing connections, and the
# counter never hands one out twice in a run.
_PORT_LOW = 10000
_PORT_HIGH = max(_PORT_LOW + 1000, _ephemeral_low())
_next_port = _PORT_LOW + (os.getpid() * 7919) % (_PORT_HIGH - _PORT_LOW)


def free_port() -> int:
    global _next_port
    span = _PORT_HIGH - _PORT_LOW
    for _ in range(span):
        port = _next_port
        _next_port = _PORT_LOW + (_next_port + 1 - _PORT_LOW) % span
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError(f"no free port in {_PORT_LOW}..{_PORT_HIGH}")


def _set_pdeathsig():
    """Child side of Popen: die with SIGKILL if the pytest process dies, so a
    crashed or killed test run never leaves a broker behind."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def _cli_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def sluice_bin_path() -> Path:
    return Path(os.environ.get("SLUICE_BIN", str(DEFAULT_BIN)))


def check_sluice_bin() -> Path:
    path = sluice_bin_path()
    if not path.is_file():
        pytest.fail(
            f"sluice binary not found at {path} (set SLUICE_BIN or {BUILD_HINT})",
            pytrace=False,
        )
    if not os.access(path, os.X_OK):
        pytest.fail(f"sluice binary {path} is not executable ({BUILD_HINT})", pytrace=False)
    return path


class BrokerError(AssertionError):
    pass


class SluiceBroker:
    """One `sluice serve` process with fixed ports and data dir.

    mode decides how the settings are passed: "flags" (command-line flags),
    "toml" (a --config file) or "env" (SLUICE_* variables).
    """

    def __init__(
        self,
        binary: Path,
        workdir: Path,
        name: str = "broker",
        mode: str = "flags",
        settings: Optional[dict] = None,
        extra_args: Optional[list] = None,
        extra_env: Optional[dict] = None,
    ) -> None:
        assert mode in ("flags", "toml", "env"), mode
        self.binary = binary
        self.workdir = workdir
        self.name = name
        self.mode = mode
        workdir.mkdir(parents=True, exist_ok=True)
        self.kafka_port = free_port()
        self.http_port = free_port()
        self.data_dir = workdir / "data"
        self.settings = {
            "data_dir": str(self.data_dir),
            "listen": f"127.0.0.1:{self.kafka_port}",
            "http_listen": f"127.0.0.1:{self.http_port}",
            # The OTLP receivers' default ports would collide between the
            # brokers of a test; tests that use them pass their own.
            "otlp_http_listen": "off",
            "otlp_grpc_listen": "off",
        }
        if settings:
            self.settings.update(settings)
        # Settings may override the ports / data dir; keep ours in sync.
        self.kafka_port = int(self.settings["listen"].rsplit(":", 1)[1])
        self.http_port = int(self.settings["http_listen"].rsplit(":", 1)[1])
        self.data_dir = Path(self.settings["data_dir"])
        self.extra_args = list(extra_args or [])
        self.extra_env = dict(extra_env or {})
        self.log_path = workdir / f"{name}.log"
        self.config_path = workdir / f"{name}.toml"
        self.proc: Optional[subprocess.Popen] = None
        self._log_fh = None
        self.starts = 0
        self.argv, self.env = self._build_command()

    # -- command line ------------------------------------------------------

    def _build_command(self):
        argv = [str(self.binary), "serve"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env.setdefault("RUST_BACKTRACE", "1")
        if self.mode == "flags":
            for key, value in self.settings.items():
                argv += [SETTINGS[key][0], _cli_value(value)]
        elif self.mode == "toml":
            lines = [f"{SETTINGS[k][1]} = {_toml_value(v)}" for k, v in self.settings.items()]
            self.config_path.write_text("\n".join(lines) + "\n")
            argv += ["--config", str(self.config_path)]
        else:
            for key, value in self.settings.items():
                env[SETTINGS[key][2]] = _cli_value(value)
        argv += self.extra_args
        env.update(self.extra_env)
        return argv, env

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # -- process control ---------------------------------------------------

    def start(self, wait: bool = True) -> "SluiceBroker":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self._log_fh = open(self.log_path, "ab", buffering=0)
        env_note = ""
        if self.mode == "env":
            env_note = " ".join(
                f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()) if k.startswith("SLUICE_")
            ) + " "
        self._log_fh.write(
            f"===== [e2e] start #{self.starts} at {time.strftime('%H:%M:%S')}: "
            f"{env_note}{shlex.join(self.argv)}\n".encode()
        )
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=str(self.workdir),
            preexec_fn=_set_pdeathsig,
        )
        if wait:
            self.wait_ready()
        return self

    def is_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.http_port}/healthz"
        last = "no attempt yet"
        healthy = False
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(
                    f"{self.name} exited with code {self.proc.returncode} before it was "
                    f"ready\n--- broker log ---\n{self.log_tail()}"
                )
            if not healthy:
                try:
                    with urllib.request.urlopen(url, timeout=1.0) as resp:
                        if resp.status == 200:
                            healthy = True
                        else:
                            last = f"/healthz answered {resp.status}"
                except urllib.error.HTTPError as e:
                    last = f"/healthz answered {e.code}"
                except (OSError, urllib.error.URLError) as e:
                    last = f"/healthz: {e}"
            if healthy:
                try:
                    socket.create_connection(("127.0.0.1", self.kafka_port), timeout=1.0).close()
                    return
                except OSError as e:
                    last = f"kafka port {self.kafka_port}: {e}"
            time.sleep(0.05)
        raise BrokerError(
            f"{self.name} not ready within {timeout:.0f}s (last: {last})\n"
            f"--- broker log ---\n{self.log_tail()}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait; returns the exit code. Raises if it takes too long."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self._close_log()
            raise BrokerError(
                f"{self.name} did not exit within {timeout:.0f}s of SIGTERM (killed)\n"
                f"--- broker log ---\n{self.log_tail()}"
            )
        self._close_log()
        return rc

    def kill9(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, "broker not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._close_log()

    def restart(self, wait: bool = True) -> "SluiceBroker":
        """Start again on the same data dir and ports (after stop/kill9)."""
        assert self.proc is None or self.proc.poll() is not None, "still running"
        return self.start(wait=wait)

    def _close_log(self) -> None:
        if self._log_fh is not None:
            try:
                self._log_fh.close()
            except OSError:
                pass
            self._log_fh = None

    # -- observation -------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return "<no log file>"

    def log_tail(self, limit: int = LOG_TAIL_BYTES) -> str:
        text = self.log_text()
        if len(text) > limit:
            return f"... ({len(text) - limit} earlier chars cut) ...\n" + text[-limit:]
        return text

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return -1

    def assert_alive(self, context: str = "") -> None:
        if not self.is_alive():
            raise BrokerError(
                f"{self.name} died{(' ' + context) if context else ''}: exit code "
                f"{self.proc.returncode}\n--- broker log ---\n{self.log_tail()}"
            )


