"""A private JupyterLab server for ``pitbox live-demo``, the browser tests and the bench.

:class:`JupyterServer` starts ``jupyter lab`` (which also serves Voilà pages through its
server extension, ``/voila/render/<notebook>``) with its own runtime, config, workspace and
IPython folders, so it never reopens somebody's notebooks or starts their kernels; the port
is picked by the OS (unless given) and read from the server's runtime file.
:func:`inject_parameters` copies a notebook with a papermill-style ``injected-parameters``
cell after its ``parameters`` cell.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pitbox.errors import PitboxError


class HarnessError(PitboxError):
    """The JupyterLab server could not be started or did not answer."""


def inject_parameters(src: str | os.PathLike[str], dst: str | os.PathLike[str], **params: Any) -> Path:
    """Copy notebook ``src`` to ``dst`` with a code cell tagged ``injected-parameters``
    (assigning ``params``) right after the cell tagged ``parameters``, as papermill does."""
    nb = json.loads(Path(src).read_text(encoding="utf-8"))
    cells = nb["cells"]
    at = next((i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if at is None:
        raise HarnessError(f"{src}: expected a code cell tagged 'parameters'")
    source = "".join(f"{k} = {v!r}\n" for k, v in params.items())
    cells.insert(at + 1, {"cell_type": "code", "execution_count": None, "id": f"injected-{secrets.token_hex(4)}",
                          "metadata": {"tags": ["injected-parameters"]}, "outputs": [], "source": source})
    out = Path(dst)
    out.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return out


class JupyterServer:
    """``jupyter lab`` on 127.0.0.1, an OS-picked port (or ``port``) and a random token, serving ``root``.

    ``JupyterServer(root, home).start()``; ``.url``, ``.token``, ``.lab_url(path)``,
    ``.voila_url(path)``; ``.stop()`` (SIGTERM, then SIGKILL). ``home`` holds the server's
    own runtime/config/workspace/IPython folders and its log (``jupyter.log``). ``env``
    adds environment variables for the server and its kernels."""

    def __init__(self, root: str | os.PathLike[str], home: str | os.PathLike[str], *,
                 env: Mapping[str, str] | None = None, start_timeout_s: float = 120.0, port: int = 0,
                 token: str | None = None):
        self.root = Path(root)
        self.requested_port = int(port)
        self.home = Path(home)
        self.extra_env = dict(env or {})
        self.start_timeout_s = start_timeout_s
        self.token = token or secrets.token_hex(16)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self._log: Any = None

    @property
    def log_path(self) -> Path:
        return self.home / "jupyter.log"

    def dirs(self) -> dict[str, str]:
        names = {"JUPYTER_RUNTIME_DIR": "runtime", "JUPYTER_CONFIG_DIR": "config",
                 "JUPYTERLAB_WORKSPACES_DIR": "workspaces", "IPYTHONDIR": "ipython", "JUPYTER_DATA_DIR": "data"}
        out = {}
        for var, name in names.items():
            (self.home / name).mkdir(parents=True, exist_ok=True)
            out[var] = str(self.home / name)
        return out

    def environment(self) -> dict[str, str]:
        env = {**os.environ, **self.dirs(), **self.extra_env}
        # the venv's share/jupyter (JupyterLab's app, anywidget's and Voilà's static files) stays
        # visible through sys.prefix; JUPYTER_DATA_DIR only adds a private user folder
        env["JUPYTER_PLATFORM_DIRS"] = "1"
        env["PYTHONUNBUFFERED"] = "1"
        bin_dir = str(Path(sys.executable).parent)
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
        return env

    def start(self) -> JupyterServer:
        self.root.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        # no news pop-up over the notebook (it would cover what the tests read)
        labconfig = Path(env["JUPYTER_CONFIG_DIR"]) / "labconfig"
        labconfig.mkdir(parents=True, exist_ok=True)
        (labconfig / "page_config.json").write_text(json.dumps(
            {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
        runtime = Path(env["JUPYTER_RUNTIME_DIR"])
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={self.requested_port}", "--ServerApp.ip=127.0.0.1",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               "--LabApp.expose_app_in_browser=True", "--ServerApp.open_browser=False",
               "--ServerApp.shutdown_no_activity_timeout=0",
               "--VoilaConfiguration.show_tracebacks=True"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + self.start_timeout_s
        while self.port is None:
            if self.proc.poll() is not None:
                raise HarnessError(f"jupyter lab exited with {self.proc.returncode}; log: {self.log_tail()}")
            for f in runtime.glob(f"jpserver-{self.proc.pid}.json"):
                try:
                    self.port = int(json.loads(f.read_text())["port"])
                except (ValueError, KeyError, OSError):
                    pass
            if self.port is None:
                if time.monotonic() > deadline:
                    self.stop()
                    raise HarnessError(f"jupyter lab did not start within {self.start_timeout_s} s; "
                                       f"log: {self.log_tail()}")
                time.sleep(0.1)  # polls a file no event announces
        # jupyter_server writes that file before it listens (its socket is bound by a callback
        # once the event loop runs): under load a client that came at once was refused. Ready
        # is when it answers.
        while not self._answers():
            if self.proc.poll() is not None:
                raise HarnessError(f"jupyter lab exited with {self.proc.returncode}; log: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise HarnessError(f"jupyter lab did not answer on {self.url} within {self.start_timeout_s} s; "
                                   f"log: {self.log_tail()}")
            time.sleep(0.1)  # polls a port no event announces
        return self

    def _answers(self) -> bool:
        """True when the server answers ``GET /api/status`` (with the token)."""
        import urllib.error

        try:
            self.api("status")
            return True
        except (OSError, urllib.error.URLError, ValueError):  # refused, reset, not yet JSON
            return False

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lab_url(self, path: str) -> str:
        """The notebook ``path`` (relative to root) in JupyterLab, with a fresh workspace."""
        return f"{self.url}/lab/tree/{path}?reset&token={self.token}"

    def voila_url(self, path: str) -> str:
        return f"{self.url}/voila/render/{path}?token={self.token}"

    def api(self, path: str) -> Any:
        """GET ``/api/<path>`` as JSON (sessions, kernels)."""
        import urllib.request

        req = urllib.request.Request(f"{self.url}/api/{path}", headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback only
            return json.loads(r.read())

    def shutdown_kernels(self) -> None:
        """Shut down every running kernel (``DELETE /api/kernels/<id>``)."""
        import urllib.request

        for k in self.api("kernels"):
            req = urllib.request.Request(f"{self.url}/api/kernels/{k['id']}", method="DELETE",
                                         headers={"Authorization": f"token {self.token}"})
            with urllib.request.urlopen(req, timeout=30):  # noqa: S310 - loopback only
                pass

    def kernel_pids(self) -> dict[str, int]:
        """Kernel id -> process id of the server's kernels (from their command lines)."""
        import psutil

        if self.proc is None:
            return {}
        out: dict[str, int] = {}
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                cmdline = " ".join(child.cmdline())
            except psutil.Error:
                continue
            if "ipykernel" in cmdline and "kernel-" in cmdline:
                kid = cmdline.split("kernel-")[-1].split(".json")[0]
                out[kid] = child.pid
        return out

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            _terminate_group(proc, timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> JupyterServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _terminate_group(proc: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM the process group a child leads (it and the kernels it started), then SIGKILL."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGTERM)
        else:  # pragma: no cover - Windows
            proc.terminate()
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover
            proc.kill()
        proc.wait(timeout)
    except ProcessLookupError:
        pass
    if hasattr(os, "killpg"):
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # kernels that outlived the server
        except (ProcessLookupError, PermissionError):
            pass
