"""Policy checkpoint files: the format's name and version, reading a file with
``torch.load(weights_only=True)`` behind one error boundary, writing it atomically, checking
its format and its spaces against the env's, and loading weights (re-exported by
:mod:`tianshou_offline.recording.policies`).
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import gymnasium as gym
import numpy as np

if TYPE_CHECKING:
    from torch import nn


from tianshou_offline.errors import (
    DatasetFormatError,
    DataValidationError,
    SourceNotFoundError,
    TianshouOfflineError,
    UnsafeDataError,
    raised_within,
)

CHECKPOINT_FORMAT = "tianshou-offline-policy"
CHECKPOINT_VERSION = 2
"""The newest checkpoint version read and written. Version 2 added the continuous policies
(``net.type == "continuous"``); MLP and Atari checkpoints are still written as version 1, so
that older readers load them."""

POLICY_CHOICES = "'random', 'scripted' (the CartPole-v1 expert) or a policy checkpoint file"

AtariHead = Literal["q", "quantiles", "bcq", "logits"]
"""How an Atari checkpoint acts: ``argmax`` of Q-values (``"q"``), of quantile means
(``"quantiles"``), of Q over BCQ's allowed actions (``"bcq"``, a two-headed net: Q, imitation
logits) or of policy logits (``"logits"``; for a two-headed CRR net, the first head)."""

ActFn = Callable[[Any], Any]
"""Maps one observation to one action."""


# --------------------------------------------------------------------------------------
# reading and writing checkpoint files
# --------------------------------------------------------------------------------------


def _write(payload: dict[str, Any], path: Path) -> Path:
    """``torch.save`` atomically (:func:`~tianshou_offline.data.atomic.atomic_output`),
    replacing ``path`` (a checkpoint is saved again and again during training: it always
    replaces the previous one)."""
    from tianshou_offline.data.atomic import atomic_output, torch_save

    with atomic_output(path, overwrite=True, tag="ckpt") as tmp:
        torch_save(payload, tmp)
    return path


def _describe_bytes(p: Path) -> str:
    """What a file that ``torch.load`` cannot read looks like, for the message."""
    with open(p, "rb") as fh:
        head = fh.read(64)
    if not head:
        return "an empty file"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file (a dataset? datasets go to -o, policies to --policy)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"binary data starting with {head[:8]!r}"
    shown = " ".join(text.split())[:40]
    return f"text ({shown!r}…)" if shown else "blank text"


def _read(p: Path, expected: str = POLICY_CHOICES) -> Any:
    """The checkpoint's payload, loaded weights-only; ``expected`` says, for a missing file,
    what the caller takes.

    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: a directory, or not a ``torch.save`` file.
    :raises UnsafeDataError: it holds pickled objects other than tensors and plain data.
    """
    import pickle

    import torch

    if not p.exists():
        raise SourceNotFoundError(f"{p}: no such policy checkpoint (expected {expected})")
    if p.is_dir():
        raise DatasetFormatError(f"{p}: is a directory; expected a weights-only policy checkpoint")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch's weights-only unpickler refused an object
        if "weights only" in str(e).lower():
            names = re.findall(r"GLOBAL ([\w.]+)", str(e))
            what = f" (e.g. {names[0]})" if names else ""
            raise UnsafeDataError(
                f"{p}: not a weights-only policy checkpoint: it holds pickled objects{what}, "
                "which are never unpickled here; expected a file of tensors and plain data "
                "written by save_policy_checkpoint"
            ) from e
        found = _describe_bytes(p)
        raise DatasetFormatError(
            f"{p}: not a weights-only policy checkpoint: found {found}; expected a torch.save "
            "file written by save_policy_checkpoint (or a Tianshou Atari policy.pth)"
        ) from e
    except Exception as e:  # text, truncated archives, …: torch raises many types
        if not raised_within(e, ("torch", "zipfile", "pickle")):  # not the file's fault
            raise
        found = _describe_bytes(p) if not zipfile.is_zipfile(p) else "a damaged torch.save file"
        raise DatasetFormatError(
            f"{p}: not a weights-only policy checkpoint: found {found} "
            f"({type(e).__name__}); expected a torch.save file written by "
            "save_policy_checkpoint (or a Tianshou Atari policy.pth)"
        ) from e


def read_policy_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The weights of a policy file: a checkpoint's ``state_dict``, or the file itself when it
    is a bare ``state_dict`` (``torch.save(policy.state_dict())``). For code that rebuilds the
    policy itself (``--resume-path`` of the MuJoCo examples).

    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: not a weights-only ``torch.save`` file of tensors.
    """
    p = Path(path)
    payload = _read(p)
    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        payload = payload.get("state_dict")
    if not isinstance(payload, dict):
        raise DatasetFormatError(
            f"{p}: holds a {type(payload).__name__}; expected a policy checkpoint or state_dict"
        )
    return payload


# --------------------------------------------------------------------------------------
# the checkpoint's spaces against the env's
# --------------------------------------------------------------------------------------


def _check_format(p: Path, payload: Any) -> None:
    """:raises DatasetFormatError: ``payload`` is not a policy checkpoint's dict."""
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else None
        raise DatasetFormatError(
            f"{p}: field 'format' is {found!r}; expected {CHECKPOINT_FORMAT!r} "
            "(a checkpoint written by save_policy_checkpoint)"
        )


def _one_line(space: gym.Space[Any]) -> str:
    return " ".join(str(space).split())


def _squeezed(shape: Sequence[int] | None) -> tuple[int, ...]:
    return tuple(int(d) for d in (shape or ()) if int(d) != 1)


def _obs_mismatch(found: tuple[int, ...] | gym.Space[Any], env: gym.Space[Any]) -> str | None:
    """None when observations of ``env`` fit a policy made for ``found`` (a shape, or a
    space), else ``"found …; expected …"``. Bounds are not compared (the same env's bounds
    differ between versions); sizes of 1 are ignored (``(1, 84, 84)`` is ``(84, 84)``)."""
    if isinstance(found, gym.Space) and not isinstance(found, gym.spaces.Box):
        if type(found) is type(env) and found == env:
            return None
        return f"is {_one_line(found)}; expected {_one_line(env)}"
    shape = tuple(found.shape or ()) if isinstance(found, gym.spaces.Box) else found
    if not isinstance(env, gym.spaces.Box):
        return f"has shape {shape}; expected {_one_line(env)}"
    if _squeezed(shape) != _squeezed(env.shape):
        return f"has shape {shape}; expected shape {tuple(env.shape or ())}"
    return None


def _act_mismatch(found: gym.Space[Any], env: gym.Space[Any]) -> str | None:
    """None when ``env``'s actions are the policy's (kind, size, start, bounds), else
    ``"found …; expected …"``."""
    expected = f"expected {_one_line(env)}"
    if isinstance(found, gym.spaces.Discrete) and isinstance(env, gym.spaces.Discrete):
        if int(found.n) == int(env.n) and int(found.start) == int(env.start):
            return None
        return f"is {_one_line(found)}; {expected}"
    if isinstance(found, gym.spaces.Box) and isinstance(env, gym.spaces.Box):
        if tuple(found.shape or ()) != tuple(env.shape or ()):
            return f"is {_one_line(found)}; {expected} (another action size)"
        same = np.allclose(found.low, env.low, equal_nan=True) and np.allclose(
            found.high, env.high, equal_nan=True
        )
        if same:
            return None
        return f"is {_one_line(found)}; {expected} (other action bounds)"
    return f"is {_one_line(found)}; {expected}"


def _check(p: Path, field: str, mismatch: str | None, env_name: str | None, what: str) -> None:
    if mismatch is None:
        return
    env = f"{env_name}'s {what}" if env_name else f"the env's {what}"
    raise DataValidationError(
        f"{p}: field {field!r} {mismatch} ({env}): the policy was made for another environment"
    )


def stored_spaces(
    p: Path,
    payload: Mapping[str, Any],
    observation_space: gym.Space[Any] | None,
    action_space: gym.Space[Any] | None,
    env_name: str | None,
) -> tuple[gym.Space[Any], gym.Space[Any]]:
    """The observation and action spaces a checkpoint stores, each checked against the given
    one (when given).

    :raises KeyError: a space is missing (see :func:`malformed_net`).
    :raises DataValidationError: a space is not the given one.
    """
    from tianshou_offline.data.format import space_from_dict

    obs_space = space_from_dict(payload["observation_space"])
    act_space = space_from_dict(payload["action_space"])
    if observation_space is not None:
        _check(p, "observation_space", _obs_mismatch(obs_space, observation_space), env_name,
               "observations")  # fmt: skip
    if action_space is not None:
        _check(p, "action_space", _act_mismatch(act_space, action_space), env_name, "actions")
    return obs_space, act_space


@contextmanager
def malformed_net(p: Path) -> Iterator[None]:
    """What rebuilding a checkpoint's networks raises about its description (a missing key,
    a value of the wrong type) becomes one :class:`DatasetFormatError` naming the file; our
    own typed errors pass unchanged."""
    try:
        yield
    except TianshouOfflineError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise DatasetFormatError(
            f"{p}: field 'net' is malformed ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:200]}); expected the description written by "
            "save_policy_checkpoint"
        ) from e


def _load_weights(p: Path, module: nn.Module, state: Any) -> None:
    if not isinstance(state, dict):
        raise DatasetFormatError(
            f"{p}: field 'state_dict' is a {type(state).__name__}; expected tensors by name"
        )
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise DatasetFormatError(
            f"{p}: field 'state_dict' does not fit the networks of field 'net' "
            f"({' '.join(str(e).split())[:240]})"
        ) from e


def read_policy_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The payload of a checkpoint written by :func:`save_policy_checkpoint` or
    :func:`save_atari_checkpoint` (see the module doc), read weights-only, its ``format``,
    ``version`` and ``net`` checked — for code that dispatches on ``net["type"]``.

    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: not such a checkpoint (or one of a newer version).
    :raises UnsafeDataError: it holds pickled objects.
    """
    p = Path(path)
    payload = _read(p)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else None
        raise DatasetFormatError(
            f"{p}: field 'format' is {found!r}; expected {CHECKPOINT_FORMAT!r} "
            "(a checkpoint written by save_policy_checkpoint)"
        )
    version = payload.get("version", 0)
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise DatasetFormatError(
            f"{p}: field 'version' is {version!r}; expected at most {CHECKPOINT_VERSION} "
            "(written by a newer tianshou-offline?)"
        )
    if not isinstance(payload.get("net"), dict):
        raise DatasetFormatError(
            f"{p}: field 'net' is {type(payload.get('net')).__name__}; expected the network "
            "description written by save_policy_checkpoint"
        )
    return payload
