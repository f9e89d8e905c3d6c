"""Connecting the driver to Ray: a fresh local Ray without `--address`, a checked cluster with it.

`ray.init()` with no address attaches to the cluster named in `/tmp/ray/ray_current_cluster` when one was ever
started with `ray start` on the machine, even a dead one, and then retries for many minutes; `address="local"`
always starts a fresh local Ray. With an address, the GCS port is tried first (a few seconds), so a wrong or dead
address is one line naming it, not a long hang; a cluster that refuses the driver's token is one line naming the
token setting (Ray 2.60's `ray start --head` turns token authentication on).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import ray

from xlamaml.search.console import quiet_ray, ray_logging_level, verbose
from xlamaml.trainables.errors import XlamamlError

CONNECT_SECONDS = 5.0
TOKEN_HINT = ("set RAY_AUTH_MODE=token and give this process the cluster's token (the head's ~/.ray/auth_token, "
              "or RAY_AUTH_TOKEN)")


class RayConnectError(XlamamlError, ConnectionError):
    """A Ray cluster address that cannot be reached or joined."""


def current_cluster_file() -> Path:
    """Return where `ray start --head` writes the GCS address ($RAY_TMPDIR, else $TMPDIR, else /tmp; then ray/)."""
    root = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    return Path(root, "ray", "ray_current_cluster")


def resolve_address(address: str) -> str:
    """Return the GCS `host:port` that `address` names ("auto": the running cluster's, as Ray finds it)."""
    if address != "auto":
        return address
    env = os.environ.get("RAY_ADDRESS")
    if env:
        return env
    path = current_cluster_file()
    if not path.is_file():
        raise RayConnectError(f"--address auto: no Ray cluster was started on this machine ({path} is missing); "
                              f"expected `ray start --head` first, or leave --address out for a local Ray")
    return path.read_text().strip()


def check_reachable(address: str, seconds: float = CONNECT_SECONDS) -> None:
    """Return None once a TCP connection to the GCS at `address` opens within `seconds`; else RayConnectError."""
    gcs = resolve_address(address)
    host, _, port = gcs.rpartition(":")
    if not host or not port.isdigit():
        raise RayConnectError(f"--address {address}: expected HOST:PORT (e.g. 127.0.0.1:6379) or auto; got {gcs!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=seconds):
            pass
    except OSError as e:
        named = address if gcs == address else f"{address} ({gcs})"
        raise RayConnectError(f"--address {named}: no Ray cluster answers there ({e.strerror or e}); expected a "
                              f"running head (`ray start --head`) at that address") from None


def init_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Join the cluster at `address` (checked first), or start a fresh local Ray; once per process."""
    if ray.is_initialized():
        return
    quiet_ray()
    # The workers' own output (progress bars, log lines) reaches this console only with `xlamaml -v`.
    if not address:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=verbose(),
                 logging_level=ray_logging_level())
        return
    if not address.startswith("ray://"):  # Ray Client addresses are not GCS ports
        check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=verbose(), logging_level=ray_logging_level())
    except Exception as e:  # Ray raises several types here; the message says which problem it was
        text = " ".join(str(e).split()) or type(e).__name__
        if "auth" in text.lower() or "Authentication" in type(e).__name__:
            raise RayConnectError(f"--address {address}: the cluster refused this driver's token ({text[:200]}); "
                                  f"{TOKEN_HINT}") from None
        # The port answered, yet Ray could not join: with token authentication a wrong or missing token looks
        # just like this from Python (the reason is only in Ray's C++ log), so the line names the token too.
        raise RayConnectError(f"--address {address}: the cluster answers but refused to be joined ({text[:200]}); "
                              f"if it uses token authentication, {TOKEN_HINT}") from None
