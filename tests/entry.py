"""Run the entry points as real processes (as a user does), optionally with
an armed fault point (src/faults.py) or killed at a chosen moment."""
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_CONFIG = os.path.join(ROOT, "default_config_cpu.yaml")


def env_with(fault=None, **extra):
    env = dict(os.environ, GLOG_v="3", PYTHONPATH=ROOT, **extra)
    env.pop("MS_ZOO_FAULT", None)
    if fault:
        env["MS_ZOO_FAULT"] = fault
    return env


def run(script, *args, fault=None, timeout=300, cwd=None, env=None, **popen):
    """``CompletedProcess`` of ``python <script> args`` from the repository root."""
    cmd = [sys.executable, os.path.join(ROOT, script), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd or ROOT,
                          env=env or env_with(fault), **popen)


def start(script, *args, fault=None, env=None):
    """A running ``python <script> args`` (stdout and stderr piped)."""
    cmd = [sys.executable, os.path.join(ROOT, script), *map(str, args)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env or env_with(fault))


def killed(result):
    return result.returncode == -signal.SIGKILL


def one_line_error(result, code):
    """The process failed with ``code`` and printed one ``error:`` line and no
    traceback; returns that line."""
    assert result.returncode == code, (result.returncode, result.stdout[-2000:], result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def wait_for(predicate, timeout=120, every=0.1):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(every)
    return False
