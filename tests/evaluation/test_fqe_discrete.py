"""Discrete FQE against the closed-form value of a chain MDP.

H steps; the observation encodes the step index (one-hot, or an image whose brightness is
the step); action 1 earns reward +1, action 0 earns −1; the episode terminates after step
H − 1. A policy that takes action 1 with probability ``p`` at every step earns
``2p − 1`` per step in expectation, so

    Q^π(s_t, a) = r(a) + γ (2p − 1) (1 − γ^{H−t−1}) / (1 − γ),   V(π) = (2p − 1)(1 − γ^H)/(1 − γ).

The data's actions are uniform (not the evaluated policy's): FQE evaluates off-policy.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tianshou.algorithm.optim import AdamOptimizerFactory as Adam
from tianshou.data import ReplayBuffer

from tests.helpers import reference as ref
from tests.helpers.chain_discrete import (
    ACT_SPACE,
    GAMMA,
    OBS_SPACE,
    H,
    chain_columns,
    constant_q_policy,
    q_closed_form,
    sampling_policy,
    value_closed_form,
)
from tianshou_offline.algorithms import (
    DiscreteFQE,
    DiscretePolicy,
    MLPTrunk,
    QNet,
    QValuePolicy,
    make_trunk,
)
from tianshou_offline.data.columns import buffer_from_columns


def fit(policy: DiscretePolicy, buffer: ReplayBuffer, obs_space: gym.spaces.Box,
        steps: int = 800) -> DiscreteFQE:  # fmt: skip
    torch.manual_seed(0)
    fqe: DiscreteFQE = DiscreteFQE(
        policy=policy,
        model=QNet(make_trunk(obs_space, (64,)), 2, (64,)),
        optim=Adam(lr=3e-3),
        tau=0.05,
        gamma=GAMMA,
    )
    fqe.fit(buffer, steps=steps, batch_size=128)
    return fqe


@pytest.fixture(scope="module")
def chain_buffer() -> ReplayBuffer:
    return buffer_from_columns(chain_columns(150))


@pytest.mark.parametrize(
    ("policy", "p"),
    [
        (constant_q_policy(1), 1.0),  # greedy Q-value policy
        (constant_q_policy(0, eps=0.4), 0.2),  # ε-greedy on action 0: P(1) = ε/2
        (sampling_policy(0.7), 0.7),  # a categorical policy that samples
    ],
    ids=["greedy", "eps-greedy", "sampling"],
)
def test_discrete_fqe_matches_closed_form(
    chain_buffer: ReplayBuffer, policy: DiscretePolicy, p: float
) -> None:
    fqe = fit(policy, chain_buffer, OBS_SPACE)
    assert fqe.estimate() == pytest.approx(value_closed_form(p), abs=0.08)
    q = fqe.q_values(torch.eye(H)).numpy()
    expected = [[q_closed_form(p, t, a) for a in (0, 1)] for t in range(H)]
    np.testing.assert_allclose(q, expected, atol=0.15)


def test_discrete_fqe_hard_copies(chain_buffer: ReplayBuffer) -> None:
    """tau=1 with target_update_freq=K: Le et al.'s iterated regression exactly."""
    torch.manual_seed(0)
    fqe: DiscreteFQE = DiscreteFQE(
        policy=constant_q_policy(0),
        model=QNet(make_trunk(OBS_SPACE, (64,)), 2, (64,)),
        optim=Adam(lr=3e-3),
        tau=1.0,
        target_update_freq=100,
        gamma=GAMMA,
    )
    assert fqe.fit(chain_buffer, steps=800, batch_size=128) == pytest.approx(
        value_closed_form(0.0), abs=0.1
    )


def test_discrete_fqe_on_stacked_frames() -> None:
    """The Atari conv trunk on frame-stacked uint8 observations (frames held once)."""
    cols = chain_columns(60, seed=1, image=True)
    del cols["obs_next"]  # compact, as Atari data: obs_next is the next row's stack
    buffer = buffer_from_columns(cols, stack_num=2)
    space = gym.spaces.Box(0, 255, shape=(2, 36, 36), dtype=np.uint8)
    model = QNet(make_trunk(space), 2)
    policy = QValuePolicy(model=model, action_space=ACT_SPACE, observation_space=space)
    with torch.no_grad():  # prefer action 1 everywhere
        last = model.head[-1]
        assert isinstance(last, torch.nn.Linear)
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, 1.0]))
    fqe = fit(policy, buffer, space, steps=300)
    assert fqe.estimate() == pytest.approx(value_closed_form(1.0), abs=0.3)


def test_discrete_fqe_leaves_the_policy_alone(chain_buffer: ReplayBuffer) -> None:
    policy = constant_q_policy(1)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    fit(policy, chain_buffer, OBS_SPACE, steps=10)
    for k, v in policy.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_discrete_fqe_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="tau"):
        DiscreteFQE(policy=constant_q_policy(1), model=QNet(MLPTrunk(H), 2), optim=Adam(),
                    tau=0.0)  # fmt: skip
    with pytest.raises(ValueError, match="n_step_return_horizon=3"):  # issue 22, item 7
        DiscreteFQE(policy=constant_q_policy(1), model=QNet(MLPTrunk(H), 2), optim=Adam(),
                    n_step_return_horizon=3)  # fmt: skip


def test_discrete_fqe_update_matches_algorithm_3(monkeypatch: pytest.MonkeyPatch) -> None:
    """One SGD step on ``mean (Q(s, a) − y)²``, ``y = r + γ(1−d) Σ_a' π(a'|s') Q'(s', a')`` with
    π ε-greedy (``(1 − ε) 1[a' = argmax] + ε / A``, written out here) and the target moved away
    from the online network first; the target is Polyak-averaged after every
    ``target_update_freq``-th step only (step 1 of 0, 1 with 2)."""
    torch.manual_seed(0)
    n_act, eps = ref.NUM_ACTIONS, 0.3
    evaluated = QNet(MLPTrunk(4, [16]), n_act)
    policy = QValuePolicy(
        model=evaluated, action_space=gym.spaces.Discrete(n_act), eps_inference=eps
    )
    net = QNet(MLPTrunk(4, [16]), n_act)
    fqe = DiscreteFQE(policy=policy, model=net, optim=ref.SGD, tau=0.05, target_update_freq=2)
    ref.displace_targets(fqe)
    online, target = copy.deepcopy(net), copy.deepcopy(fqe.model_target)
    for step in range(2):
        b = ref.discrete_batch(step)
        stats = ref.one_update(fqe, b, seed=91, monkeypatch=monkeypatch)
        rows = torch.arange(ref.B)
        with torch.no_grad():
            greedy = F.one_hot(evaluated(b.obs_next).argmax(1), n_act).float()
            probs = (1 - eps) * greedy + eps / n_act
            y = b.rew + b.discount * (probs * target(b.obs_next)).sum(1)
        loss = ((online(b.obs)[rows, b.act] - y) ** 2).mean()
        ref.sgd_step(ref.params(online), loss)
        if step == 1:
            ref.polyak(target, online, 0.05)
        assert stats.loss == pytest.approx(loss.item(), rel=1e-5)
        assert stats.q_target == pytest.approx(y.mean().item(), rel=1e-5)
        ref.assert_same(net, online, f"step {step}: model")
        ref.assert_same(fqe.model_target, target, f"step {step}: target")


def test_ope_takes_discrete_fqes_defaults_from_its_config(
    chain_buffer: ReplayBuffer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 24: ``OPESettings`` held its own copy of FQE's defaults. With
    :class:`DiscreteFQEConfig`'s defaults changed, off-policy evaluation of a discrete policy
    (no FQE settings given) fits a DiscreteFQE with the changed values."""
    from tianshou_offline.algorithms import DiscreteFQEConfig
    from tianshou_offline.evaluation.ope import OPESettings, evaluate_policy

    changed: dict[str, Any] = {"lr": 1.25e-3, "tau": 0.25, "hidden_sizes": (7, 5), "steps": 2,
                               "batch_size": 3}  # fmt: skip
    assert all(getattr(DiscreteFQEConfig(), k) != v for k, v in changed.items())
    defaults = DiscreteFQEConfig.__init__.__kwdefaults__
    assert defaults is not None
    for key, value in changed.items():
        monkeypatch.setitem(defaults, key, value)
    built: list[DiscreteFQE] = []
    real_build = DiscreteFQEConfig.build

    def recording_build(
        self: DiscreteFQEConfig, policy: DiscretePolicy, space: gym.Space[Any], *,
        device: str | torch.device = "cpu",
    ) -> DiscreteFQE:  # fmt: skip
        fqe = real_build(self, policy, space, device=device)
        built.append(fqe)
        return fqe

    monkeypatch.setattr(DiscreteFQEConfig, "build", recording_build)
    fits: list[tuple[int, int]] = []
    real_fit = DiscreteFQE.fit

    def recording_fit(self: DiscreteFQE, buffer: ReplayBuffer, *, steps: int, batch_size: int,
                      progress: Any = None) -> float:  # fmt: skip
        fits.append((steps, batch_size))
        return real_fit(self, buffer, steps=steps, batch_size=batch_size, progress=progress)

    monkeypatch.setattr(DiscreteFQE, "fit", recording_fit)
    settings = OPESettings(estimators=("fqe",), resamples=1)
    evaluate_policy(constant_q_policy(1), chain_buffer, behavior=None, settings=settings,
                    observation_space=OBS_SPACE)  # fmt: skip
    (fqe,) = built
    assert fits == [(2, 3)]  # OPESettings' fqe_steps was 5000, its batch_size 256
    assert fqe.tau == changed["tau"]
    assert fqe.optim.optim.param_groups[0]["lr"] == changed["lr"]
    trunk = make_trunk(OBS_SPACE, changed["hidden_sizes"])
    assert [tuple(p.shape) for p in fqe.model.parameters()] == [
        tuple(p.shape) for p in QNet(trunk, 2).parameters()
    ]
