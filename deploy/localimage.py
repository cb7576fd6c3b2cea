"""Build and run the relay image with podman on a machine without a container registry.

Used by ``make test-deploy`` (tests/deploy), ``bench/relay_bench.py`` and by hand::

    python deploy/localimage.py build      # prints the image name
    python deploy/localimage.py env        # the CONTAINERS_* variables, for `export`
    python deploy/localimage.py clean      # remove the cached base, image and storage

What it does (the facts in shared/brief/containers.md, measured on the project machine):

* podman's configuration in a cache folder (``$PITBOX_DEPLOY_CACHE``, default
  ``~/.cache/pitbox-deploy``), given by ``CONTAINERS_CONF`` and ``CONTAINERS_STORAGE_CONF``:
  runtime runc (crun fails here: cgroups in hybrid mode), cgroupfs, default ulimits within
  what podman itself may set (raising limits is not permitted here), and image storage in
  the cache folder, kept between runs.
* the base image: ``debootstrap --variant=minbase bookworm`` from the Debian mirror apt
  uses on this machine (read from /etc/apt/sources.list and sources.list.d), imported with
  ``podman import``; built once, then found in the cache.
* the relay image: ``podman build --format docker`` (the docker format keeps the
  HEALTHCHECK) of the project's Containerfile with ``BASE`` set to that image, the package
  index the host's pip uses (``PIP_INDEX_URL``, ``pip config``), and the host's CA bundle as
  the ``pip_cert`` build secret when pip is configured with one.

Linux and root only (podman as root is what these machines run).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("PITBOX_DEPLOY_CACHE") or Path.home() / ".cache" / "pitbox-deploy")
BASE_IMAGE = "localhost/pitbox/bookworm-min:latest"
RELAY_IMAGE = "localhost/pitbox/relay:test"
SUITE = "bookworm"
#: podman lowers its own RLIMIT_NPROC to 32768 at start (seen with strace on the project
#: machine), so a container may not have more even when `ulimit -Hu` is higher.
PODMAN_NPROC_CAP = 32768
DEBS = ("podman", "runc", "debootstrap")


class DeployError(RuntimeError):
    """Podman or debootstrap cannot do what was asked; the message says what and why."""


def missing_tools() -> list[str]:
    return [t for t in DEBS if shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()]


def unusable_reason() -> str | None:
    """Why podman cannot run here (None when it can): not Linux, not root, tools missing."""
    if not sys.platform.startswith("linux"):
        return "podman runs on Linux only"
    if os.geteuid() != 0:
        return "podman runs as root on these machines (rootless needs subuid set-up); run as root"
    missing = missing_tools()
    if missing:
        return f"missing {' '.join(missing)}: apt-get install -y {' '.join(DEBS)}"
    return None


def _hard_limit(resource: int) -> int:
    import resource as r

    hard = r.getrlimit(resource)[1]
    return 1 << 20 if hard == r.RLIM_INFINITY else int(hard)


def podman_env(cache: Path = CACHE) -> dict[str, str]:
    """The environment for podman: CONTAINERS_CONF and CONTAINERS_STORAGE_CONF written in
    ``cache`` (runc, cgroupfs, ulimits within the hard limits, storage in the cache)."""
    import resource

    cache.mkdir(parents=True, exist_ok=True)
    nofile = _hard_limit(resource.RLIMIT_NOFILE)
    nproc = min(_hard_limit(resource.RLIMIT_NPROC), PODMAN_NPROC_CAP)
    try:
        nproc = min(nproc, int(Path("/proc/sys/kernel/pid_max").read_text()))
    except (OSError, ValueError):
        pass
    conf = cache / "containers.conf"
    _write_if_changed(conf, f"""# written by deploy/localimage.py
[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
""")
    storage = cache / "storage.conf"
    _write_if_changed(storage, f"""# written by deploy/localimage.py
[storage]
driver = "overlay"
graphroot = "{cache / 'storage'}"
runroot = "/run/pitbox-deploy"
""")
    env = dict(os.environ)
    env.update(CONTAINERS_CONF=str(conf), CONTAINERS_STORAGE_CONF=str(storage))
    return env


def build_ulimits(env: dict[str, str]) -> list[str]:
    """``--ulimit`` options for ``podman build`` (its RUN steps do not read default_ulimits)."""
    text = Path(env["CONTAINERS_CONF"]).read_text()
    return [arg for kind in ("nofile", "nproc") for arg in ("--ulimit", re.search(rf'"({kind}=[0-9:]+)"', text)[1])]


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def podman(args: Sequence[str], env: dict[str, str], *, check: bool = True, timeout: float = 600,
           capture: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``podman ARGS``; :class:`DeployError` with its stderr when it fails and ``check``."""
    proc = subprocess.run(["podman", *args], env=env, text=True, timeout=timeout,
                          stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None)
    if check and proc.returncode != 0:
        raise DeployError(f"podman {' '.join(args[:3])} … failed ({proc.returncode}): {(proc.stderr or '').strip()[-2000:]}")
    return proc


def debian_mirror() -> str:
    """The Debian mirror apt uses here (the first ``deb`` source that is not a security or
    updates suite), else deb.debian.org."""
    found: list[str] = []
    apt = Path("/etc/apt")
    for path in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*"))]:
        if not path.is_file() or not path.name.endswith((".list", ".sources")):
            continue
        text = path.read_text(errors="replace")
        if path.name.endswith(".list"):
            for line in text.splitlines():
                parts = re.sub(r"\[[^\]]*\]", "", line.split("#", 1)[0]).split()
                if len(parts) >= 3 and parts[0] == "deb":
                    found.append(f"{parts[1]} {parts[2]}")
        else:
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, flags=re.M))
                if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
                    for uri in fields.get("URIs", "").split():
                        for suite in fields.get("Suites", "").split():
                            found.append(f"{uri} {suite}")
    for entry in found:
        uri, suite = entry.split()
        if "security" not in uri and not suite.endswith(("-security", "-updates", "-backports")):
            return uri
    return "http://deb.debian.org/debian"


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    import fcntl

    with open(cache / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def image_exists(name: str, env: dict[str, str]) -> bool:
    return podman(["image", "exists", name], env, check=False).returncode == 0


def base_image(env: dict[str, str], cache: Path = CACHE, log=print) -> str:
    """The Debian bookworm minbase image, made with debootstrap and ``podman import`` the
    first time (about 60 s), then found in the cache."""
    if image_exists(BASE_IMAGE, env):
        return BASE_IMAGE
    rootfs = cache / "rootfs.tmp"
    shutil.rmtree(rootfs, ignore_errors=True)
    mirror = debian_mirror()
    t0 = time.monotonic()
    log(f"debootstrap --variant=minbase {SUITE} from {mirror} …")
    proc = subprocess.run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
    if proc.returncode != 0:
        shutil.rmtree(rootfs, ignore_errors=True)
        raise DeployError(f"debootstrap {SUITE} {mirror} failed: {proc.stdout[-2000:]}")
    log(f"debootstrap: {time.monotonic() - t0:.0f} s; podman import …")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    try:
        imp = subprocess.run(["podman", "import", "-", BASE_IMAGE], stdin=tar.stdout, env=env, text=True,
                             capture_output=True, timeout=600)
    finally:
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
        shutil.rmtree(rootfs, ignore_errors=True)
    if imp.returncode != 0:
        raise DeployError(f"podman import failed: {imp.stderr[-2000:]}")
    return BASE_IMAGE


def pip_settings() -> tuple[str | None, str | None]:
    """(index URL, CA bundle) the host's pip uses: ``PIP_INDEX_URL`` / ``PIP_CERT``, else
    its configuration files (``pip config get``), else None."""
    index = os.environ.get("PIP_INDEX_URL") or None
    cert = os.environ.get("PIP_CERT") or None
    for key, current in (("global.index-url", index), ("global.cert", cert)):
        if current is None:
            proc = subprocess.run([sys.executable, "-m", "pip", "config", "get", key], capture_output=True, text=True)
            value = proc.stdout.strip() if proc.returncode == 0 else None
            if key == "global.index-url":
                index = value or None
            else:
                cert = value or None
    if cert is not None and not Path(cert).is_file():
        cert = None
    return index, cert


def build_image(env: dict[str, str], base: str | None = None, tag: str = RELAY_IMAGE, cache: Path = CACHE,
                log=print) -> str:
    """Build the project's Containerfile on ``base`` (default: the debootstrap image);
    returns ``tag``. Layers are cached: a rebuild with unchanged code takes seconds."""
    with _locked(cache):
        base = base or base_image(env, cache, log)
        index, cert = pip_settings()
        args = ["build", "--format", "docker", *build_ulimits(env), "--build-arg", f"BASE={base}", "-t", tag,
                "-f", str(ROOT / "Containerfile")]
        if index:
            args += ["--build-arg", f"PIP_INDEX_URL={index}"]
        if cert:
            args += ["--secret", f"id=pip_cert,src={cert}"]
        t0 = time.monotonic()
        log(f"podman build (BASE={base}) …")
        podman([*args, str(ROOT)], env, timeout=1200)
        log(f"podman build: {time.monotonic() - t0:.0f} s")
        podman(["image", "prune", "-f"], env, check=False)  # layers of older builds
    return tag


def remove_container(name: str, env: dict[str, str]) -> None:
    podman(["rm", "-f", "-t", "0", name], env, check=False)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else "build"
    reason = unusable_reason()
    if reason is not None:
        print(f"localimage: {reason}", file=sys.stderr)
        return 2
    env = podman_env()
    if command == "build":
        print(build_image(env, log=lambda m: print(m, file=sys.stderr)))
    elif command == "env":
        print(f"export CONTAINERS_CONF={env['CONTAINERS_CONF']} CONTAINERS_STORAGE_CONF={env['CONTAINERS_STORAGE_CONF']}")
    elif command == "clean":
        for image in (RELAY_IMAGE, BASE_IMAGE):
            podman(["rmi", "-f", image], env, check=False)
        podman(["system", "reset", "-f"], env, check=False)
        shutil.rmtree(CACHE, ignore_errors=True)
    else:
        print("usage: python deploy/localimage.py [build|env|clean]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
