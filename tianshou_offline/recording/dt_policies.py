"""Policy checkpoints of the Decision Transformer (``net.type == "decision_transformer"``,
version 2 of :mod:`tianshou_offline.recording.policies`' format), and the act function that
replays one step by step.

A Decision Transformer's action depends on the episode so far and on a target return, so its
checkpoint carries, besides the network's weights, everything acting needs::

    {"type": "decision_transformer",
     "policy": "ContinuousDTPolicy" | "DiscreteDTPolicy",
     "model": {"act_dim": A, "discrete": bool, "hidden": H, "layers": L, "heads": h,
               "context": K, "max_timestep": T, "dropout": p},
     "target_return": float,      # the return each episode is conditioned on (env units)
     "rtg_scale": float,          # returns-to-go are divided by it in the network's input
     "normalize_obs": bool, "obs_norm_eps": float, "action_scaling": bool,   # continuous
     "sample_actions": bool, "eps_inference": float}                        # discrete

The state encoder is rebuilt from the stored observation space
(:func:`~tianshou_offline.algorithms.state_encoder`: linear for vectors, the Nature-DQN
convolutions for frames); a policy with another encoder is refused when it is saved.

:func:`load_dt_policy` rebuilds the Tianshou policy (for ``Collector``-based evaluation:
wrap the environments in :class:`~tianshou_offline.algorithms.RewardInInfo`);
:class:`ReturnConditionedActFn` is what ``record --policy`` replays: an obs → action function
told where each episode starts (:meth:`~ReturnConditionedActFn.start_episode`) and which
reward each step received (:meth:`~ReturnConditionedActFn.observe`), as :func:`play_episode`
does for any act function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import gymnasium as gym
import numpy as np

if TYPE_CHECKING:
    from tianshou_offline.algorithms import ContinuousDTPolicy, DiscreteDTPolicy

NET_TYPE = "decision_transformer"
_DT_POLICIES = ("ContinuousDTPolicy", "DiscreteDTPolicy")


def is_dt_policy(policy: object) -> TypeGuard[ContinuousDTPolicy | DiscreteDTPolicy]:
    """Whether ``policy`` is one of the Decision Transformer's policies."""
    from tianshou_offline.algorithms import ContinuousDTPolicy, DiscreteDTPolicy

    return isinstance(policy, ContinuousDTPolicy | DiscreteDTPolicy)


def dt_spec(policy: ContinuousDTPolicy | DiscreteDTPolicy) -> dict[str, Any]:
    """The ``net`` description of a Decision Transformer policy (module docstring)."""
    from tianshou_offline.algorithms import ContinuousDTPolicy

    model = policy.model
    spec: dict[str, Any] = {
        "type": NET_TYPE,
        "policy": type(policy).__name__,
        "model": {**model.sizes, "dropout": float(model.drop.p)},
        "target_return": float(policy.target_return),
        "rtg_scale": float(policy.rtg_scale),
    }
    if isinstance(policy, ContinuousDTPolicy):
        spec["normalize_obs"] = bool(policy.obs_normalizer.enabled)
        spec["obs_norm_eps"] = float(policy.obs_normalizer.eps)
        spec["action_scaling"] = bool(policy.action_scaling)
    else:
        spec["sample_actions"] = bool(policy.sample_actions)
        spec["eps_inference"] = float(policy.eps_inference)
    return spec


def build_dt_policy(
    spec: Mapping[str, Any],
    observation_space: gym.Space[Any],
    action_space: gym.Space[Any],
    *,
    target_return: float | None = None,
) -> ContinuousDTPolicy | DiscreteDTPolicy:
    """The policy a ``net`` description rebuilds (weights not loaded).

    :param target_return: condition on this return instead of the stored one.
    :raises ValueError: an unknown policy class or a malformed description.
    """
    from tianshou_offline.algorithms import (
        ContinuousDTPolicy,
        DecisionTransformerNet,
        DiscreteDTPolicy,
        state_encoder,
    )

    kind = spec["policy"]
    if kind not in _DT_POLICIES:
        raise ValueError(f"unknown policy type {kind!r}; expected one of {', '.join(_DT_POLICIES)}")
    m = spec["model"]
    hidden = int(m["hidden"])
    model = DecisionTransformerNet(
        state_encoder=state_encoder(observation_space, hidden),
        act_dim=int(m["act_dim"]),
        discrete=bool(m["discrete"]),
        hidden=hidden,
        layers=int(m["layers"]),
        heads=int(m["heads"]),
        context=int(m["context"]),
        max_timestep=int(m["max_timestep"]),
        dropout=float(m.get("dropout", 0.0)),
    )
    target = float(spec["target_return"] if target_return is None else target_return)
    if kind == "ContinuousDTPolicy":
        policy = ContinuousDTPolicy(
            model=model,
            action_space=action_space,
            observation_space=observation_space,
            target_return=target,
            rtg_scale=float(spec["rtg_scale"]),
            normalize_obs=bool(spec["normalize_obs"]),
            action_scaling=bool(spec["action_scaling"]),
        )
        policy.obs_normalizer.eps = float(spec.get("obs_norm_eps", policy.obs_normalizer.eps))
        return policy
    return DiscreteDTPolicy(
        model=model,
        action_space=action_space,
        observation_space=observation_space,
        target_return=target,
        rtg_scale=float(spec["rtg_scale"]),
        sample_actions=bool(spec["sample_actions"]),
        eps_inference=float(spec.get("eps_inference", 0.0)),
    )


def dt_payload(policy: ContinuousDTPolicy | DiscreteDTPolicy) -> dict[str, Any]:
    """The version-2 checkpoint of a Decision Transformer policy; rebuilt and reloaded once
    here, so that a checkpoint that is written also loads.

    :raises ValueError: a policy without an observation space, or with networks this format
        does not describe (another state encoder).
    """
    from tianshou_offline.data.format import space_to_dict

    kind = type(policy).__name__
    if kind not in _DT_POLICIES:
        raise ValueError(f"policy checkpoints describe {', '.join(_DT_POLICIES)}; not a {kind}")
    if policy.observation_space is None:
        raise ValueError(f"this {kind} has no observation_space; the checkpoint needs one")
    spec = dt_spec(policy)
    state = {k: v.detach().cpu() for k, v in policy.state_dict().items()}
    try:
        build_dt_policy(spec, policy.observation_space, policy.action_space).load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(
            f"cannot describe this {kind}'s networks (the state encoder must be "
            f"tianshou_offline.algorithms.state_encoder's): {' '.join(str(e).split())[:200]}"
        ) from e
    return {
        "format": "tianshou-offline-policy",
        "version": 2,
        "net": spec,
        "observation_space": space_to_dict(policy.observation_space),
        "action_space": space_to_dict(policy.action_space),
        "state_dict": state,
    }


class ReturnConditionedActFn:
    """A Decision Transformer checkpoint as an obs → action function for a step-by-step loop
    (``record --policy``): call :meth:`start_episode` after each reset and :meth:`observe`
    with each step's reward; the policy's context (the last K steps, the return-to-go lowered
    by the rewards received, the timestep) follows the episode as in a ``Collector``.

    Actions are in the environment's units (continuous: mapped from ``[-1, 1]`` to the
    bounds). Random draws (a sampling discrete policy; ``eps`` noise) come from private
    generators seeded by ``seed``: torch's global one is left as it was. With ``eps``, a
    random action replaces the policy's and is what the context records (it is what the
    environment executed).

    :raises DataValidationError: (on a call) the loop did not report the previous step's
        reward, or did not start the episode.
    """

    def __init__(
        self,
        policy: ContinuousDTPolicy | DiscreteDTPolicy,
        *,
        eps: float = 0.0,
        seed: int | None = None,
    ) -> None:
        import torch

        policy.eval()
        self.policy = policy
        self.eps = float(eps)
        self._rng = np.random.default_rng(seed)
        self._space = policy.action_space
        self._space.seed(seed)
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        self._torch_state = generator.get_state()
        self._state: Any = None
        self._reward: float | None = None
        self._started = False

    def start_episode(self) -> None:
        """A new episode starts: the context empties, the return-to-go is the target."""
        self._state, self._reward, self._started = None, 0.0, True

    def observe(self, reward: float) -> None:
        """The reward of the step the last action produced."""
        self._reward = float(reward)

    def __call__(self, obs: Any) -> Any:
        import torch
        from tianshou.data import Batch

        from tianshou_offline.algorithms import ContinuousDTPolicy
        from tianshou_offline.errors import DataValidationError

        if not self._started or self._reward is None:
            raise DataValidationError(
                "a Decision Transformer checkpoint acts on the episode so far: its act "
                "function needs start_episode() after each reset and observe(reward) after "
                "each step (as `tianshou-offline record` does); this loop did not "
                + ("start the episode" if not self._started else "report the last reward")
            )
        batch = Batch(obs=np.asarray(obs)[None], info=Batch(reward=np.array([self._reward])))
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._torch_state)
            out = self.policy(batch, self._state)
            self._torch_state = torch.get_rng_state()
        self._state, self._reward = out.state, None
        policy = self.policy
        if isinstance(policy, ContinuousDTPolicy):
            if self.eps > 0 and self._rng.random() < self.eps:
                taken = np.asarray(self._space.sample(), dtype=np.float32)
                self._state.act[0, -1] = policy.map_action_inverse(taken[None])[0]
                return taken
            return np.asarray(policy.map_action(np.asarray(out.act)), dtype=np.float32)[0]
        if self.eps > 0 and self._rng.random() < self.eps:
            taken_int = int(self._space.sample())
            self._state.act[0, -1] = taken_int
            return taken_int
        return int(np.asarray(out.act)[0])


def play_episode(
    env: gym.Env[Any, Any],
    act: Callable[[Any], Any],
    obs: Any,
    *,
    on_step: Callable[[], None] | None = None,
) -> float:
    """Step ``env`` with ``act`` (obs → env action) from ``obs`` (the reset's) until the
    episode ends; returns the episode's undiscounted return. A
    :class:`ReturnConditionedActFn` is told the episode's start and each step's reward;
    ``on_step`` is called after every step."""
    episodic = act if isinstance(act, ReturnConditionedActFn) else None
    if episodic is not None:  # a return-conditioned policy follows the episode
        episodic.start_episode()
    total, done = 0.0, False
    while not done:
        obs, rew, terminated, truncated, _ = env.step(act(obs))
        total += float(rew)
        if episodic is not None:
            episodic.observe(float(rew))
        done = bool(terminated or truncated)
        if on_step is not None:
            on_step()
    return total


def load_dt_policy(
    path: str | Any,
    *,
    observation_space: gym.Space[Any] | None = None,
    action_space: gym.Space[Any] | None = None,
    env_name: str | None = None,
    target_return: float | None = None,
) -> ContinuousDTPolicy | DiscreteDTPolicy:
    """Rebuild the policy of a Decision Transformer checkpoint (target return, context length,
    return scale and observation statistics included), on the CPU, in eval mode. Evaluate it
    with Tianshou's ``Collector`` on environments wrapped in
    :class:`~tianshou_offline.algorithms.RewardInInfo`.

    :param observation_space: when given, the checkpoint's is checked against it.
    :param action_space: likewise (kind, size, bounds).
    :param env_name: names the environment in mismatch messages.
    :param target_return: condition on this return instead of the one saved.
    :raises SourceNotFoundError: no such file.
    :raises DatasetFormatError: not a policy checkpoint, or not a Decision Transformer's.
    :raises DataValidationError: the checkpoint's spaces are not the given ones.
    """
    from tianshou_offline.recording._checkpoint_files import read_policy_checkpoint

    p = Path(path)
    payload = read_policy_checkpoint(p)
    return policy_from_payload(
        p, payload, observation_space, action_space, env_name, target_return=target_return
    )


def policy_from_payload(
    p: Path,
    payload: Mapping[str, Any],
    observation_space: gym.Space[Any] | None,
    action_space: gym.Space[Any] | None,
    env_name: str | None,
    *,
    target_return: float | None = None,
) -> ContinuousDTPolicy | DiscreteDTPolicy:
    """:func:`load_dt_policy` on a payload read from ``p``."""
    from tianshou_offline.errors import DatasetFormatError
    from tianshou_offline.recording._checkpoint_files import (
        _load_weights,
        malformed_net,
        stored_spaces,
    )

    spec = payload["net"]
    kind = spec.get("type")
    if kind != NET_TYPE:
        raise DatasetFormatError(
            f"{p}: field 'net.type' is {kind!r}; expected {NET_TYPE!r} (a Decision Transformer "
            "policy saved with save_policy_checkpoint)"
        )
    with malformed_net(p):
        obs_space, act_space = stored_spaces(p, payload, observation_space, action_space, env_name)
        policy = build_dt_policy(spec, obs_space, act_space, target_return=target_return)
    _load_weights(p, policy, payload["state_dict"])
    policy.eval()
    return policy
