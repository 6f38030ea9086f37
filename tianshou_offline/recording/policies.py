"""Policies that drive recording: random, the built-in scripted CartPole expert, and
weights-only policy checkpoints (read with ``torch.load(weights_only=True)``: never
unpickled).

Every policy the package saves replays with ``tianshou-offline record --policy FILE``
(:func:`make_policy`). A checkpoint is a ``torch.save``d dict of plain data and tensors::

    {"format": "tianshou-offline-policy", "version": 1 | 2,
     "net": {...},                      # what rebuilds the networks (below)
     "observation_space": {...},        # gymnasium spaces as JSON (data.format.space_to_dict);
     "action_space": {...},             #   version 2 always, version 1 MLP files optionally
     "action": {...},                   # version 1: the action space in short (below)
     "state_dict": {name: tensor}}

``net`` is one of

- ``{"type": "continuous", "policy": "DeterministicPolicy" | "GaussianPolicy" |
  "CriticWeightedPolicy" | "BCQPolicy",
  "normalize_obs": bool, "obs_norm_eps": float, "action_scaling": bool,
  "squash": bool, "deterministic_eval": bool,   # GaussianPolicy (and CriticWeightedPolicy)
  "num_action_samples": int, "temperature": float,   # CriticWeightedPolicy's num_sampled_actions
  "num_candidate_actions": int,                 # BCQPolicy's num_sampled_actions
  "modules": {attribute: module spec}}`` (version 2, :func:`save_policy_checkpoint` given a
  policy of :mod:`tianshou_offline.algorithms`): the policy is rebuilt with its class,
  flags, spaces and networks, and ``state_dict`` is the policy's own (networks and
  :class:`~tianshou_offline.algorithms.ObsNormalizer` statistics). A module spec is
  ``{"type": "DeterministicActor" | "GaussianActor" | "VAE" | "Perturbation" |
  "CriticEnsemble", "obs_dim": D, "act_dim": A, "hidden_sizes": [...], ...}`` with the
  class's other constructor arguments (``conditioned_std``, ``log_std_bounds``,
  ``tanh_mean``; ``latent_dim``, ``latent_clip``; ``phi``; ``num_critics``, ``layer_norm``).
  The policy acts with its action outside training steps (Tianshou's
  ``Policy.compute_action``: the actor's output, a Gaussian's mode; BCQ's best of its sampled
  candidates and CRR's critic-weighted pick, from a generator seeded by ``seed``) scaled to
  the action space's bounds.
- ``{"type": "mlp", "state_shape": [4], "action_shape": 2, "hidden_sizes": [64, 64]}``
  (version 1): a Tianshou ``Net`` with ``"action": {"type": "discrete", "n": 2, "start": 0}``
  (argmax of its outputs) or ``{"type": "continuous", "low": [...], "high": [...],
  "shape": [...]}`` (the output in the env's units, clipped to the bounds).
- ``{"type": "discrete", "policy": "QValuePolicy" | "DiscreteBCQPolicy" |
  "DiscreteActorPolicy", "model": {"type": "QNet" | "QuantileQNet" | "DualHeadNet",
  "num_actions": A, "hidden_sizes": [...], "num_quantiles": N, "trunk": {"type": "mlp",
  "obs_dim": D, "hidden_sizes": [...]} | {"type": "atari", "in_channels": C, "height": H,
  "width": W, "scale_obs": bool}}, "eps_inference": float, "deterministic_eval": bool,
  "logits_index": int | None, "unlikely_action_threshold": float}`` (version 2,
  :func:`save_policy_checkpoint` given a discrete policy of :mod:`tianshou_offline.algorithms`:
  DQN-style and CQL's quantile networks, BCQ, imitation, CRR; MLP or Atari trunks):
  :func:`load_discrete_policy` rebuilds it as that policy (what off-policy evaluation needs:
  action probabilities on batches), ``record --policy`` replays it.
- ``{"type": "atari", ...}`` (version 1, :func:`save_atari_checkpoint`, e.g. by
  ``examples/atari/atari_*.py``): the Nature-DQN conv trunk with a Q, quantile, BCQ or
  logits head.

:func:`load_policy_checkpoint` also reads the ``state_dict`` files Tianshou's own Atari DQN /
QR-DQN examples save (``policy.pth``, e.g. from ``atari_qrdqn.py``), weights only; the
architecture is inferred from the tensor shapes.

Before a policy acts, its observation and action spaces are checked against the env's
(:class:`~tianshou_offline.errors.DataValidationError` naming the file, the field, what
was found and what was expected): the observation shape, the action space's kind, size and
bounds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import gymnasium as gym
import numpy as np

from tianshou_offline.recording._atari_weights import (
    _atari_act_fn,
    _build_atari_net,
    _check_tianshou_atari,
    _tianshou_atari_state,
    save_atari_checkpoint,
)
from tianshou_offline.recording._checkpoint_files import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    POLICY_CHOICES,
    ActFn,
    AtariHead,
    _act_mismatch,
    _check,
    _check_format,
    _load_weights,
    _obs_mismatch,
    _read,
    _write,
    malformed_net,
    read_policy_checkpoint,
    read_policy_state_dict,
    stored_spaces,
)
from tianshou_offline.recording._continuous_specs import (
    _build_policy,
    _continuous_act_fn,
    _continuous_payload,
    _discrete_act_fn,
)
from tianshou_offline.recording._discrete_specs import (
    _discrete_from_payload,
    _discrete_payload,
)

if TYPE_CHECKING:
    from tianshou.utils.net.common import Net

    from tianshou_offline.algorithms import ContinuousPolicy, DiscretePolicy

from tianshou_offline.errors import (
    DatasetFormatError,
    DataValidationError,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CONTINUOUS_CHECKPOINT",
    "POLICY_CHOICES",
    "ActFn",
    "AtariHead",
    "ScriptedCartPoleExpert",
    "build_mlp_net",
    "load_continuous_policy",
    "load_discrete_policy",
    "load_policy_checkpoint",
    "make_policy",
    "random_policy",
    "read_policy_checkpoint",
    "read_policy_state_dict",
    "save_atari_checkpoint",
    "save_policy_checkpoint",
]

CONTINUOUS_CHECKPOINT = (
    "a checkpoint of a continuous-action policy (policy.pt of the MuJoCo examples, or a "
    "policy of tianshou_offline.algorithms saved with save_policy_checkpoint)"
)
"""What :func:`load_continuous_policy` reads, in its error messages."""
"""What ``--policy`` accepts, for messages."""


class ScriptedCartPoleExpert:
    """A hand-written CartPole-v1 controller (return 500 without noise) with ε-noise.

    :param eps: probability of replacing the action by a uniformly random one.
    :param seed: seed of the noise generator.
    """

    def __init__(self, eps: float = 0.25, seed: int = 0) -> None:
        self.eps = eps
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: np.ndarray) -> int:
        x, x_dot, theta, theta_dot = (float(v) for v in obs)
        action = int(theta + 0.3 * theta_dot + 0.02 * x + 0.1 * x_dot > 0)
        if self.rng.random() < self.eps:
            action = int(self.rng.integers(2))
        return action


def random_policy(space: gym.Space[Any], seed: int | None = None) -> ActFn:
    space.seed(seed)
    return lambda _obs: space.sample()


# --------------------------------------------------------------------------------------
# MLP policies (Tianshou Net)
# --------------------------------------------------------------------------------------


def _action_spec(space: gym.Space[Any]) -> dict[str, Any]:
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "continuous",
            "low": space.low.astype(float).ravel().tolist(),
            "high": space.high.astype(float).ravel().tolist(),
            "shape": list(space.shape),
        }
    raise ValueError(f"policy checkpoints support Discrete and Box actions, not {space}")


def _action_space_of(action: Mapping[str, Any]) -> gym.Space[Any]:
    """The action space a version-1 ``"action"`` field describes."""
    if action["type"] == "discrete":
        if "n" not in action:  # the oldest files: the size is the net's action_shape
            raise KeyError("n")
        return gym.spaces.Discrete(int(action["n"]), start=int(action.get("start", 0)))
    shape = tuple(int(x) for x in action["shape"])
    low = np.asarray(action["low"], dtype=np.float32).reshape(shape)
    high = np.asarray(action["high"], dtype=np.float32).reshape(shape)
    return gym.spaces.Box(low, high, shape=shape, dtype=np.float32)


@overload
def save_policy_checkpoint(
    path: str | os.PathLike[str], net: ContinuousPolicy | DiscretePolicy
) -> Path: ...
@overload
def save_policy_checkpoint(
    path: str | os.PathLike[str],
    net: Net,
    *,
    state_shape: Sequence[int],
    action_space: gym.Space[Any],
    hidden_sizes: Sequence[int],
    observation_space: gym.Space[Any] | None = None,
) -> Path: ...
def save_policy_checkpoint(
    path: str | os.PathLike[str],
    net: Net | ContinuousPolicy | DiscretePolicy,
    *,
    state_shape: Sequence[int] | None = None,
    action_space: gym.Space[Any] | None = None,
    hidden_sizes: Sequence[int] | None = None,
    observation_space: gym.Space[Any] | None = None,
) -> Path:
    """Save a policy's weights with what rebuilds it, so that
    ``tianshou-offline record --policy PATH`` replays it (written atomically).

    - A policy of :mod:`tianshou_offline.algorithms` (``DeterministicPolicy``,
      ``GaussianPolicy``, ``BCQPolicy`` with the package's networks): pass it alone; its
      spaces, flags and network sizes are read from it (version 2). Likewise a discrete
      policy (``QValuePolicy``, ``DiscreteBCQPolicy``, ``DiscreteActorPolicy`` on MLP or Atari
      trunks; version 2, ``net.type`` ``"discrete"``).
    - A Tianshou MLP ``Net`` (e.g. the actor of Tianshou's ``ImitationPolicy``): pass
      ``state_shape``, ``action_space`` and ``hidden_sizes`` (version 1);
      ``observation_space`` is stored too when given.

    :raises ValueError: a network this format cannot describe.
    """
    from tianshou_offline.algorithms import ContinuousPolicy, DiscretePolicy
    from tianshou_offline.recording.dt_policies import dt_payload, is_dt_policy

    p = Path(path)
    if isinstance(net, ContinuousPolicy | DiscretePolicy):
        import torch

        # the payload is checked by rebuilding the network, whose initial weights come from
        # a generator of its own: a checkpoint written during training (the best policy)
        # must not change the random numbers the run draws next (exact resume)
        with torch.random.fork_rng(devices=[]):
            if is_dt_policy(net):
                checked = dt_payload(net)
            elif isinstance(net, ContinuousPolicy):
                checked = _continuous_payload(net)
            else:
                checked = _discrete_payload(net)
        return _write(checked, p)
    if state_shape is None or action_space is None or hidden_sizes is None:
        raise ValueError("an MLP Net needs state_shape, action_space and hidden_sizes")
    from tianshou_offline.data.format import space_to_dict

    action_shape: int | list[int] = (
        int(action_space.n)
        if isinstance(action_space, gym.spaces.Discrete)
        else list(action_space.shape or ())
    )
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "net": {
            "type": "mlp",
            "state_shape": [int(x) for x in state_shape],
            "action_shape": action_shape,
            "hidden_sizes": [int(h) for h in hidden_sizes],
        },
        "action": _action_spec(action_space),
        "action_space": space_to_dict(action_space),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
    }
    if observation_space is not None:
        payload["observation_space"] = space_to_dict(observation_space)
    return _write(payload, p)


def build_mlp_net(p: Path, payload: Mapping[str, Any]) -> Net:
    """The Tianshou ``Net`` of a version-1 MLP checkpoint's ``payload`` (read from ``p``),
    weights loaded, in eval mode."""
    from tianshou.utils.net.common import Net

    spec = payload["net"]
    net = Net(
        state_shape=tuple(int(x) for x in spec["state_shape"]),
        action_shape=spec["action_shape"],
        hidden_sizes=tuple(int(h) for h in spec["hidden_sizes"]),
    )
    _load_weights(p, net, payload["state_dict"])
    net.eval()
    return net


def _mlp_act_fn(p: Path, payload: Mapping[str, Any]) -> ActFn:
    import torch

    action = payload["action"]
    net = build_mlp_net(p, payload)
    start = int(action.get("start", 0))
    if action["type"] == "discrete":

        @torch.no_grad()
        def act_discrete(obs: Any) -> int:
            out, _ = net(torch.as_tensor(np.asarray(obs, dtype=np.float32)[None]))
            return int(out.argmax(dim=-1).item()) + start

        return act_discrete
    shape = tuple(int(x) for x in action["shape"])
    low = np.asarray(action["low"], dtype=np.float32).reshape(shape)
    high = np.asarray(action["high"], dtype=np.float32).reshape(shape)

    @torch.no_grad()
    def act_continuous(obs: Any) -> np.ndarray:
        out, _ = net(torch.as_tensor(np.asarray(obs, dtype=np.float32)[None]))
        clipped: np.ndarray = np.clip(out.numpy()[0].reshape(shape), low, high)
        return clipped

    return act_continuous


# --------------------------------------------------------------------------------------
# loading any checkpoint
# --------------------------------------------------------------------------------------


def load_policy_checkpoint(
    path: str | os.PathLike[str],
    *,
    scale_obs: bool | None = None,
    num_actions: int | None = None,
    observation_space: gym.Space[Any] | None = None,
    action_space: gym.Space[Any] | None = None,
    env_name: str | None = None,
    seed: int | None = None,
) -> ActFn:
    """Load a policy checkpoint as an obs → action function: one written by
    :func:`save_policy_checkpoint` / :func:`save_atari_checkpoint`, or a Tianshou Atari
    DQN / QR-DQN ``state_dict`` (weights only in every case).

    :param scale_obs: Atari nets only: divide pixels by 255 (default: the checkpoint's own
        setting; unscaled for Tianshou checkpoints, as Tianshou's ``--scale-obs 0`` default).
    :param num_actions: the env's number of actions; tells a Tianshou QR-DQN checkpoint
        (``A × N`` outputs) from a DQN one (``A`` outputs). Default: ``action_space.n``.
    :param observation_space: the env's; when given (with ``action_space``), the
        checkpoint's spaces are checked against them before anything is built.
    :param action_space: the env's.
    :param env_name: names the env in mismatch messages (e.g. ``"Pendulum-v1"``).
    :param seed: seed of a stochastic policy's random draws (BCQ's candidate actions).
    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: not a policy checkpoint (or a damaged one).
    :raises DataValidationError: the checkpoint's spaces are not the env's.
    """
    p = Path(path)
    if num_actions is None and isinstance(action_space, gym.spaces.Discrete):
        num_actions = int(action_space.n)
    payload = _read(p)
    if isinstance(payload, dict) and payload.get("format") is None:
        tianshou_net = _tianshou_atari_state(payload)
        if tianshou_net is not None:
            model, in_shape, outputs = tianshou_net
            _check_tianshou_atari(p, in_shape, outputs, observation_space, action_space, env_name)
            return _atari_act_fn(
                model, "tianshou", None, scale_obs=bool(scale_obs), num_actions=num_actions
            )
        if any(isinstance(k, str) and k.startswith("obs_normalizer.") for k in payload):
            raise DatasetFormatError(
                f"{p}: field 'format' is missing: a bare policy state_dict (e.g. "
                "torch.save(policy.state_dict())), without the sizes and flags that rebuild the "
                f"policy; expected {CHECKPOINT_FORMAT!r} (write it with "
                "tianshou_offline.recording.policies.save_policy_checkpoint(path, policy))"
            )
    _check_format(p, payload)
    version = payload.get("version", 0)
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise DatasetFormatError(
            f"{p}: field 'version' is {version!r}; expected at most {CHECKPOINT_VERSION} "
            "(written by a newer tianshou-offline?)"
        )
    with malformed_net(p):
        return _from_payload(p, payload, scale_obs, observation_space, action_space, env_name, seed)


def _not_markov(p: Path) -> DatasetFormatError:
    """What the loaders of Markov policies (off-policy evaluation's) say of a Decision
    Transformer checkpoint."""
    return DatasetFormatError(
        f"{p}: field 'net.type' is 'decision_transformer': a Decision Transformer acts on the "
        "episode so far and a target return, not on the observation alone; off-policy "
        "estimators (FQE, IS, WIS, DR, WDR) need a Markov policy pi(a|s). Evaluate it in the "
        "environment (tianshou_offline.recording.dt_policies.load_dt_policy) or replay it "
        "with `tianshou-offline record --policy`"
    )


def load_continuous_policy(
    path: str | os.PathLike[str],
    *,
    observation_space: gym.Space[Any] | None = None,
    action_space: gym.Space[Any] | None = None,
    env_name: str | None = None,
) -> ContinuousPolicy:
    """Rebuild the policy of a version-2 continuous checkpoint (written by
    :func:`save_policy_checkpoint` from a policy of :mod:`tianshou_offline.algorithms`) as
    that policy, on the CPU, in eval mode — for code that needs its networks (batched actions,
    fitted Q evaluation) rather than an obs → action function (:func:`load_policy_checkpoint`).

    :param observation_space: when given, the checkpoint's observation space is checked
        against it (as :func:`load_policy_checkpoint` does).
    :param action_space: likewise for the action space (kind, size, bounds).
    :param env_name: names the environment or data in mismatch messages.
    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: not a policy checkpoint, or not a continuous one.
    :raises DataValidationError: the checkpoint's spaces are not the given ones.
    """

    p = Path(path)
    payload = _read(p, CONTINUOUS_CHECKPOINT)
    _check_format(p, payload)
    net = payload.get("net")
    kind = net.get("type", "mlp") if isinstance(net, dict) else None
    if kind == "decision_transformer":
        raise _not_markov(p)
    action = payload.get("action")
    if kind != "continuous" and isinstance(action, dict) and action.get("type") == "discrete":
        raise DatasetFormatError(
            f"{p}: a policy of discrete actions (net {kind!r}); expected {CONTINUOUS_CHECKPOINT}"
        )
    if (
        not isinstance(net, dict)
        or kind != "continuous"
        or payload.get("version") != CHECKPOINT_VERSION
    ):
        raise DatasetFormatError(
            f"{p}: field 'net.type' is {kind!r} (version {payload.get('version')!r}); expected "
            f"'continuous' (version {CHECKPOINT_VERSION}: a policy of "
            "tianshou_offline.algorithms saved with save_policy_checkpoint)"
        )
    with malformed_net(p):
        obs_space, act_space = stored_spaces(p, payload, observation_space, action_space, env_name)
        policy = _build_policy(net, obs_space, act_space)
    _load_weights(p, policy, payload["state_dict"])
    policy.eval()
    return policy


def _from_payload(
    p: Path,
    payload: Mapping[str, Any],
    scale_obs: bool | None,
    observation_space: gym.Space[Any] | None,
    action_space: gym.Space[Any] | None,
    env_name: str | None,
    seed: int | None,
) -> ActFn:
    from tianshou_offline.data.format import space_from_dict

    spec = payload["net"]
    kind = spec.get("type", "mlp")
    stored_obs = payload.get("observation_space")
    if kind == "continuous":
        obs_space, act_space = stored_spaces(p, payload, observation_space, action_space, env_name)
        policy = _build_policy(spec, obs_space, act_space)
        _load_weights(p, policy, payload["state_dict"])
        return _continuous_act_fn(policy, seed)
    if kind == "atari":
        frames = (int(spec["frame_stack"]), *(int(x) for x in spec.get("frame_shape", (84, 84))))
        if observation_space is not None:
            _check(p, "net.frame_stack", _obs_mismatch(frames, observation_space), env_name,
                   "observations")  # fmt: skip
        if action_space is not None:
            found = gym.spaces.Discrete(int(spec["num_actions"]))
            _check(p, "net.num_actions", _act_mismatch(found, action_space), env_name,
                   "actions")  # fmt: skip
        model, head, threshold = _build_atari_net(spec)
        _load_weights(p, model, payload["state_dict"])
        return _atari_act_fn(
            model,
            head,
            threshold,
            scale_obs=bool(spec.get("scale_obs", True)) if scale_obs is None else scale_obs,
        )
    if kind == "discrete":
        return _discrete_act_fn(
            _discrete_from_payload(p, payload, observation_space, action_space, env_name)
        )
    if kind == "decision_transformer":
        from tianshou_offline.recording.dt_policies import (
            ReturnConditionedActFn,
            policy_from_payload,
        )

        dt = policy_from_payload(p, payload, observation_space, action_space, env_name)
        return ReturnConditionedActFn(dt, seed=seed)
    if kind != "mlp":
        raise DatasetFormatError(
            f"{p}: field 'net.type' is {kind!r}; expected 'continuous', 'discrete', "
            "'decision_transformer', 'mlp' or 'atari'"
        )
    if observation_space is not None:
        state_shape = tuple(int(x) for x in spec["state_shape"])
        field = "observation_space" if stored_obs is not None else "net.state_shape"
        found_obs = space_from_dict(stored_obs) if stored_obs is not None else state_shape
        _check(p, field, _obs_mismatch(found_obs, observation_space), env_name, "observations")
    if action_space is not None:
        action = payload["action"]
        if "n" not in action and action["type"] == "discrete":  # the oldest files
            action = {**action, "n": int(spec["action_shape"])}
        _check(p, "action", _act_mismatch(_action_space_of(action), action_space), env_name,
               "actions")  # fmt: skip
    return _mlp_act_fn(p, payload)


def make_policy(
    spec: str,
    env: gym.Env[Any, Any],
    *,
    eps: float = 0.0,
    seed: int | None = None,
    scale_obs: bool | None = None,
) -> ActFn:
    """Resolve a ``--policy`` value: ``random``, ``scripted`` (CartPole) or a checkpoint path.
    A checkpoint's spaces are checked against ``env``'s before it acts.

    :param eps: probability of taking a random action instead (ε-greedy noise).
    :param seed: seed of the noise (and of a stochastic policy's draws).
    :param scale_obs: for Atari checkpoints, see :func:`load_policy_checkpoint`.
    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: not a policy checkpoint.
    :raises DataValidationError: the policy was made for another env.
    """
    env_name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    if spec == "random":
        return random_policy(env.action_space, seed)
    if spec == "scripted":
        cartpole = (
            env_name.startswith("CartPole")
            and _obs_mismatch((4,), env.observation_space) is None
            and _act_mismatch(gym.spaces.Discrete(2), env.action_space) is None
        )
        if not cartpole:
            raise DataValidationError(
                f"--policy scripted: the built-in expert drives CartPole (4 observations, 2 "
                f"actions); the env is {env_name} (for it, give 'random' or a policy "
                "checkpoint file)"
            )
        return ScriptedCartPoleExpert(eps=eps, seed=seed or 0)
    space = env.action_space
    base = load_policy_checkpoint(
        spec,
        scale_obs=scale_obs,
        observation_space=env.observation_space,
        action_space=space,
        env_name=env_name,
        seed=seed,
    )
    if eps <= 0:
        return base
    from tianshou_offline.recording.dt_policies import ReturnConditionedActFn

    if isinstance(base, ReturnConditionedActFn):  # its context records the action taken
        base.eps = float(eps)
        return base
    rng = np.random.default_rng(seed)
    space.seed(seed)

    def noisy(obs: Any) -> Any:
        return space.sample() if rng.random() < eps else base(obs)

    return noisy


def load_discrete_policy(
    path: str | os.PathLike[str],
    *,
    observation_space: gym.Space[Any] | None = None,
    action_space: gym.Space[Any] | None = None,
    env_name: str | None = None,
) -> DiscretePolicy:
    """Rebuild the policy of a discrete checkpoint — version 2 ``"discrete"`` (any discrete
    policy of :mod:`tianshou_offline.algorithms`, saved with ``save_policy_checkpoint``) or
    ``"atari"`` (``save_atari_checkpoint``) — as that policy, on the CPU, in eval mode.

    :param observation_space: when given, the checkpoint's observation space is checked
        against it; likewise ``action_space`` (kind and size).
    :param env_name: names the environment or data in mismatch messages.
    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: not a policy checkpoint, or not a discrete one.
    :raises DataValidationError: the checkpoint's spaces are not the given ones.
    """

    p = Path(path)
    payload = _read(p)
    _check_format(p, payload)
    net = payload.get("net")
    kind = net.get("type") if isinstance(net, dict) else None
    if kind == "decision_transformer":
        raise _not_markov(p)
    if kind not in ("discrete", "atari"):
        raise DatasetFormatError(
            f"{p}: field 'net.type' is {kind!r}; expected 'discrete' (a discrete policy of "
            "tianshou_offline.algorithms saved with save_policy_checkpoint) or 'atari'"
        )
    with malformed_net(p):
        return _discrete_from_payload(p, payload, observation_space, action_space, env_name)
