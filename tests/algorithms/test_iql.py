"""IQL: reference tests and a learning test.

Reference tests (helpers in ``tests/helpers/reference.py``): one update on a fixed mini-batch
with plain-SGD optimizers equals an independent computation of the paper's equations, written
out here — IQL (Kostrikov et al. 2022, arXiv:2110.06169): the expectile loss for V (Eq. 5),
the MSE to ``r + γ V(s')`` for Q (Eq. 6), the clipped ``exp(β A)`` weights of the actor
(Eq. 7). ReBRAC's are in ``tests/algorithms/test_rebrac.py``.

Learning tests train at a tiny budget on the Pendulum-v1 expert data the other continuous
tests use (``benchmarks/_lib/experts/pendulum.py``) and require the final policy, evaluated afresh
over 20 episodes, to reach a mean return of −400 (a random or zero-torque policy scores about
−1280; see ``tests/algorithms/test_continuous.py``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tianshou.algorithm.optim import AdamOptimizerFactory as Adam
from tianshou.data import ReplayBuffer

from tests.helpers.examples import EXAMPLES, import_example
from tests.helpers.pendulum import PENDULUM_ACT, PENDULUM_OBS, THRESHOLD, train_and_evaluate
from tests.helpers.reference import (
    ACT_SPACE,
    OBS_SPACE,
    SGD,
    A,
    D,
    H,
    assert_same,
    displace_targets,
    fixed_batch,
    normal_log_density,
    one_update,
    params,
    polyak,
    sgd_step,
)
from tianshou_offline.algorithms import (
    IQL,
    CosineLRSchedulerFactory,
    CriticEnsemble,
    DeterministicActor,
    DeterministicPolicy,
    GaussianActor,
    GaussianPolicy,
    IQLStep,
    IQLTrainingStats,
    ValueFunction,
)

# --------------------------------------------------------------------------- IQL reference


def _iql(deterministic: bool, **overrides: Any) -> IQL:
    policy: GaussianPolicy | DeterministicPolicy
    if deterministic:
        policy = DeterministicPolicy(
            actor=DeterministicActor(D, A, H), action_space=ACT_SPACE, observation_space=OBS_SPACE
        )
    else:
        policy = GaussianPolicy(
            actor=GaussianActor(D, A, H, conditioned_std=False, tanh_mean=True),
            action_space=ACT_SPACE,
            observation_space=OBS_SPACE,
            squash=False,
        )
    kw: dict[str, Any] = dict(expectile=0.7, beta=3.0, max_weight=0.04, tau=0.05)
    kw.update(overrides)
    return IQL(
        policy=policy,
        policy_optim=SGD,
        critics=CriticEnsemble(D, A, H),
        critic_optim=SGD,
        value=ValueFunction(D, H),
        value_optim=SGD,
        **kw,
    )


@pytest.mark.parametrize("deterministic", [False, True], ids=["gaussian", "deterministic"])
def test_iql_matches_the_paper(deterministic: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """V: ``E[|τ − 1(u < 0)| u²]``, ``u = min_j Q̂_j(s, a) − V(s)`` (Eq. 5), one SGD step; then
    with the updated V the actor on ``−E[min(exp(β (Q̂ − V)), w_max) log π(a|s)]`` (Eq. 7;
    ``‖π(s) − a‖²`` for a deterministic actor) and the critics on
    ``Σ_j E[(r + γ(1−d) V(s') − Q_j(s, a))²]`` (Eq. 6); Polyak target critics."""
    torch.manual_seed(0)
    tau_e, beta, w_max, tau = 0.7, 3.0, 0.04, 0.05
    algo = _iql(deterministic)
    displace_targets(algo)
    policy = algo.policy
    actor, critics, value = (
        copy.deepcopy(policy.actor),
        copy.deepcopy(algo.critics),
        copy.deepcopy(algo.value),
    )
    critics_t = copy.deepcopy(algo.critics_target)
    b = fixed_batch()
    stats = one_update(algo, b, seed=51, monkeypatch=monkeypatch)

    with torch.no_grad():
        q_hat = torch.minimum(*critics_t(b.obs, b.act))
    u = q_hat - value(b.obs)
    value_loss = (torch.abs(tau_e - (u < 0).float()) * u**2).mean()
    sgd_step(params(value), value_loss)
    with torch.no_grad():
        v, v_next = value(b.obs), value(b.obs_next)
        adv = q_hat - v
        w = torch.minimum(torch.exp(beta * adv), torch.tensor(w_max))
        y = b.rew + b.discount * v_next
    if deterministic:
        bc = ((actor(b.obs) - b.act) ** 2).sum(-1)
        actor_loss = (w * bc).mean()
    else:
        mean, log_std = actor(b.obs)
        bc = normal_log_density(b.act, mean, log_std.exp())
        actor_loss = -(w * bc).mean()
    sgd_step(params(actor), actor_loss)
    q = critics(b.obs, b.act)
    critic_loss = ((q[0] - y) ** 2).mean() + ((q[1] - y) ** 2).mean()
    sgd_step(params(critics), critic_loss)
    polyak(critics_t, critics, tau)

    assert 0.0 < stats.clipped_weight < 1.0  # the fixed batch has clipped and unclipped weights
    assert stats.value_loss == pytest.approx(value_loss.item(), rel=1e-5)
    assert stats.actor_loss == pytest.approx(actor_loss.item(), rel=1e-5)
    assert stats.critic_loss == pytest.approx(critic_loss.item(), rel=1e-5)
    assert stats.advantage == pytest.approx(adv.mean().item(), rel=1e-5, abs=1e-7)
    assert stats.weight == pytest.approx(w.mean().item(), rel=1e-5)
    assert stats.q_target == pytest.approx(y.mean().item(), rel=1e-5)
    for ours, ref, what in [
        (policy.actor, actor, "actor"),
        (algo.critics, critics, "critics"),
        (algo.value, value, "value"),
        (algo.critics_target, critics_t, "critics_target"),
    ]:
        assert_same(ours, ref, what)


def test_iql_expectile_half_is_mean_regression(monkeypatch: pytest.MonkeyPatch) -> None:
    """τ = 0.5 makes the V loss half the MSE (SARSA's V): its gradient step equals one of
    ``0.5 · MSE(V(s), min_j Q̂_j(s, a))``."""
    torch.manual_seed(1)
    algo = _iql(True, expectile=0.5)
    value, critics_t = copy.deepcopy(algo.value), copy.deepcopy(algo.critics_target)
    b = fixed_batch(3)
    stats = one_update(algo, b, seed=52, monkeypatch=monkeypatch)
    with torch.no_grad():
        q_hat = critics_t(b.obs, b.act).min(0).values
    loss = 0.5 * F.mse_loss(value(b.obs), q_hat)
    sgd_step(params(value), loss)
    assert stats.value_loss == pytest.approx(loss.item(), rel=1e-5)
    assert_same(algo.value, value, "value")


def test_iql_cosine_schedule_is_stepped_and_saved(monkeypatch: pytest.MonkeyPatch) -> None:
    """The actor's cosine schedule follows ``lr (1 + cos(π t / T)) / 2``, the critics' and
    V's learning rates stay, and the schedule's position is saved in the state_dict."""
    torch.manual_seed(0)
    policy = GaussianPolicy(
        actor=GaussianActor(D, A, H, conditioned_std=False, tanh_mean=True),
        action_space=ACT_SPACE,
        observation_space=OBS_SPACE,
        squash=False,
    )
    algo = IQL(
        policy=policy,
        policy_optim=Adam(lr=1e-3).with_lr_scheduler_factory(CosineLRSchedulerFactory(10)),
        critics=CriticEnsemble(D, A, H),
        critic_optim=Adam(lr=1e-3),
        value=ValueFunction(D, H),
        value_optim=Adam(lr=1e-3),
    )
    lrs: list[float] = []
    for step in range(4):
        one_update(algo, fixed_batch(step), seed=step, monkeypatch=monkeypatch)
        lrs.append(float(algo.actor_optim.optim.param_groups[0]["lr"]))
    expected = [1e-3 * (1 + np.cos(np.pi * t / 10)) / 2 for t in range(1, 5)]
    assert lrs == pytest.approx(expected, rel=1e-6)
    assert algo.critic_optim.optim.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert algo.value_optim.optim.param_groups[0]["lr"] == pytest.approx(1e-3)
    fresh = IQL(
        policy=copy.deepcopy(policy),
        policy_optim=Adam(lr=1e-3).with_lr_scheduler_factory(CosineLRSchedulerFactory(10)),
        critics=CriticEnsemble(D, A, H),
        critic_optim=Adam(lr=1e-3),
        value=ValueFunction(D, H),
        value_optim=Adam(lr=1e-3),
    )
    saved: Any = algo  # Tianshou's Algorithm.state_dict (with optimizers) is untyped
    fresh.load_state_dict(saved.state_dict())
    assert fresh.num_updates == 4 and fresh.lr_schedulers[0].last_epoch == 4


@dataclass(kw_only=True)
class _AdvStats(IQLTrainingStats):
    adv_max: float = 0.0


class _AdvIQL(IQL[_AdvStats]):
    def _extend_stats(self, stats: _AdvStats, step: IQLStep) -> None:
        stats.adv_max = float(step.advantage.max().item())


def test_iql_generic_stats_subclass(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    algo = _AdvIQL(
        policy=DeterministicPolicy(
            actor=DeterministicActor(D, A, H), action_space=ACT_SPACE, observation_space=OBS_SPACE
        ),
        policy_optim=SGD,
        critics=CriticEnsemble(D, A, H),
        critic_optim=SGD,
        value=ValueFunction(D, H),
        value_optim=SGD,
    )
    stats = one_update(algo, fixed_batch(), seed=1, monkeypatch=monkeypatch)
    assert type(stats) is _AdvStats and stats.adv_max >= stats.advantage


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"expectile": 1.0}, "expectile"),
        ({"beta": 0.0}, "beta"),
        ({"max_weight": 0.0}, "max_weight"),
        ({"tau": 0.0}, "tau"),
    ],
)
def test_iql_rejects_bad_parameters(kw: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _iql(True, **kw)


def test_iql_refuses_a_squashed_gaussian() -> None:
    """A tanh-squashed Gaussian would silently turn IQL's actor loss into a tanh likelihood
    (issue 22, item 8): refused with a message naming the expected policies."""
    policy = GaussianPolicy(
        actor=GaussianActor(D, A, H), action_space=ACT_SPACE, observation_space=OBS_SPACE
    )
    assert policy.squash
    with pytest.raises(ValueError, match=r"squash=True.*expected"):
        IQL(
            policy=policy,
            policy_optim=SGD,
            critics=CriticEnsemble(D, A, H),
            critic_optim=SGD,
            value=ValueFunction(D, H),
            value_optim=SGD,
        )


def test_iql_cosine_schedule_is_off_by_default_in_the_class_and_the_example() -> None:
    """One default for the actor's cosine schedule: the class has none unless given one, and
    ``d4rl_iql.py`` builds none unless ``--actor-cosine-lr 1``."""
    example = import_example(EXAMPLES / "mujoco", "d4rl_iql")
    build_algorithm, get_args = example.build_algorithm, example.get_args
    env = gym.make("Pendulum-v1")
    flags = ["--task", "Pendulum-v1", "--hidden-sizes", "8", "--device", "cpu"]
    config = get_args(flags)
    assert config.actor_cosine_lr == 0
    assert build_algorithm(config, env).lr_schedulers == []
    config = get_args([*flags, "--actor-cosine-lr", "1"])
    assert len(build_algorithm(config, env).lr_schedulers) == 1


# --------------------------------------------------------------------------- ReBRAC reference


# --------------------------------------------------------------------------- learning

def pendulum_iql(deterministic: bool) -> IQL:
    hidden = (64, 64)
    kw: dict[str, Any] = dict(action_space=PENDULUM_ACT, observation_space=PENDULUM_OBS)
    policy: GaussianPolicy | DeterministicPolicy
    if deterministic:
        policy = DeterministicPolicy(
            actor=DeterministicActor(3, 1, hidden), normalize_obs=True, **kw
        )
    else:
        actor = GaussianActor(3, 1, hidden, conditioned_std=False, tanh_mean=True)
        policy = GaussianPolicy(actor=actor, squash=False, normalize_obs=True, **kw)
    return IQL(
        policy=policy,
        policy_optim=Adam(lr=1e-3),
        critics=CriticEnsemble(3, 1, hidden),
        critic_optim=Adam(lr=1e-3),
        value=ValueFunction(3, hidden),
        value_optim=Adam(lr=1e-3),
    )


@pytest.mark.slow
@pytest.mark.parametrize("deterministic", [False, True], ids=["gaussian", "deterministic"])
def test_iql_learns_pendulum_from_expert_data(
    deterministic: bool, expert_buffer: ReplayBuffer
) -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    final = train_and_evaluate(pendulum_iql(deterministic), expert_buffer)
    print(f"IQL ({deterministic=}): final mean return {final:.1f}")
    assert final >= THRESHOLD, f"IQL: final mean return {final:.1f} < {THRESHOLD}"
