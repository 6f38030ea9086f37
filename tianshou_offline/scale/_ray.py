"""The one place that imports Ray (lazily) and connects to it.

:func:`ray_session` uses a Ray instance this process already started (``ray.init`` called by
the caller, e.g. a test or a notebook) and leaves it running; otherwise it starts or joins
one — ``address=None``: a new local instance on this machine; an address (``auto``,
``ray://head:10001``, ``head:6379``): that cluster — and shuts the connection down at the end.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import types
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from tianshou_offline.errors import ClusterError, MissingDependencyError

log = logging.getLogger(__name__)

K = TypeVar("K")


def import_ray() -> Any:
    """The ``ray`` module.

    :raises MissingDependencyError: Ray is not installed (the ``ray`` extra).
    """
    try:
        import ray
    except ImportError as e:
        raise MissingDependencyError(
            f"Ray is not installed ({e}); install the extra: pip install 'tianshou-offline[ray]'"
        ) from e
    return ray


@contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Ray, connected (see the module doc); yields the ``ray`` module.

    :param address: None: a local instance on this machine; else the cluster's address.
    :param num_cpus: CPUs of a new local instance (default: all cores); ignored for a cluster.
    :raises ClusterError: the cluster at ``address`` cannot be reached.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING}
    if address:
        kwargs["address"] = address
    else:
        kwargs.update(num_cpus=num_cpus, include_dashboard=False)
    # A new local instance: Ray (>= 2.5x) turns token authentication on by default and warns
    # that it did unless RAY_AUTH_MODE says so; saying it keeps the same protection without
    # the warning. A cluster's own setting (an address) and the user's variable are left alone.
    auth_mode = None if address or "RAY_AUTH_MODE" in os.environ else "token"
    if auth_mode is not None:
        os.environ["RAY_AUTH_MODE"] = auth_mode
    try:
        try:
            ray.init(**kwargs)
        except (ConnectionError, TimeoutError, ValueError, RuntimeError) as e:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise ClusterError(
                f"cannot connect to {where}: {' '.join(str(e).split())[:300]} (start the head "
                "with `ray start --head`; pass its address, e.g. --address auto on a node of it)"
            ) from e
        try:
            yield ray
        finally:
            ray.shutdown()
    finally:
        if auth_mode is not None:
            os.environ.pop("RAY_AUTH_MODE", None)


def as_completed(
    refs: Mapping[Any, K],
) -> Generator[tuple[K, Any, BaseException | None], None, None]:
    """Each task of ``refs`` (Ray object ref → the caller's key) as it finishes:
    ``(key, result, None)``, or ``(key, None, error)`` with the ``RayError`` it ended with.

    Closing the iterator before the end — Ctrl-C while it waits, or an exception in the
    caller's loop — cancels the tasks still running; iterate it in ``contextlib.closing``
    inside the Ray session, so that the cancel happens before the session ends.
    """
    ray = import_ray()
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                try:
                    value = ray.get(ref)
                except ray.exceptions.RayError as e:
                    yield refs[ref], None, e
                else:
                    yield refs[ref], value, None
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


def task_error(e: BaseException) -> BaseException:
    """The exception a Ray task raised (Ray wraps it: ``RayTaskError.cause``), else ``e`` (a
    worker that died, a cancelled task)."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, BaseException) else e


def error_message(e: BaseException) -> str:
    """One line for a task's failure: the task's own exception, or Ray's (shortened)."""
    cause = task_error(e)
    if cause is not e:
        return f"{type(cause).__name__}: {cause}"
    return f"{type(e).__name__}: {' '.join(str(e).split())[:500]}"


def node_name() -> str:
    """This machine's host name (named in the errors of tasks that run on it)."""
    return socket.gethostname()


def no_tensorflow() -> None:
    """Keep TensorBoard (imported by Tianshou) from importing TensorFlow in a Ray worker:
    TensorBoard's documented marker module ``tensorboard.compat.notf`` (as the CLI does)."""
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
