"""SAC-N, EDAC and LB-SAC: reference tests; their and AWAC's learning tests.

Reference tests (helpers in ``tests/helpers/reference.py``): one
update on a fixed mini-batch with plain-SGD optimizers equals an independent computation of
the paper's equations written out here, with target critics that differ from the online ones
(they are perturbed before the step):

- SAC-N (An et al. 2021, arXiv:2110.01548, Sec. 3): the soft target and the actor's loss take
  the minimum over *all* N critics (N = 5 here; the rows where the minimum of the first two
  is not the minimum of all five are checked to exist);
- EDAC (ibid., Sec. 4.2): the critics' loss adds η/(N−1) Σ_{i≠j} ⟨g_i, g_j⟩ of the members'
  normalised action gradients, each computed here from a plain per-member network;
- LB-SAC (Nikulin et al. 2022, arXiv:2211.11092): the square-root learning-rate rule and
  the mean over members.
AWAC's reference test is in ``tests/algorithms/test_awac.py``.

Learning tests train at a tiny budget on the session's Pendulum-v1 expert data and require a
fresh 20-episode evaluation to reach −400 (a random or zero-torque policy scores about
−1280); a no-op optimizer stays at the untrained policy's ≈ −1200.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from tianshou.data import ReplayBuffer
from tianshou.trainer import OfflineTrainerParams

from tests.helpers.continuous import evaluate
from tests.helpers.pendulum import (
    LBSAC_BATCH,
    PENDULUM_ACT,
    PENDULUM_OBS,
    THRESHOLD,
    pendulum_algorithm,
)
from tests.helpers.reference import (
    ACT_SPACE,
    OBS_SPACE,
    SGD,
    A,
    B,
    D,
    H,
    assert_same,
    fixed_batch,
    member_q,
    min_over_members,
    one_update,
    params,
    perturb,
    polyak,
    sgd_step,
    tanh_gaussian,
)
from tianshou_offline.algorithms import (
    AWAC,
    EDAC,
    LBSAC,
    SACN,
    CriticEnsemble,
    GaussianActor,
    GaussianPolicy,
    ensemble_similarity,
    sqrt_scaled_lr,
)


def test_action_gradients_match_per_member_networks() -> None:
    torch.manual_seed(0)
    critics = CriticEnsemble(D, A, H, num_critics=4)
    obs, act = torch.randn(B, D), torch.rand(B, A) * 2 - 1
    q, grads = critics.action_gradients(obs, act)
    for j in range(4):
        a = act.clone().requires_grad_(True)
        qj = member_q(critics, j, obs, a)
        (gj,) = torch.autograd.grad(qj.sum(), a)
        torch.testing.assert_close(q[j], qj, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grads[j], gj, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- SAC-N / EDAC


N_CRITICS = 5


def _sacn(kind: str, **kw: Any) -> SACN:
    torch.manual_seed(0)
    policy = GaussianPolicy(
        actor=GaussianActor(D, A, H), action_space=ACT_SPACE, observation_space=OBS_SPACE
    )
    critics = CriticEnsemble(D, A, H, num_critics=N_CRITICS)
    common: dict[str, Any] = dict(
        policy=policy,
        policy_optim=SGD,
        critics=critics,
        critic_optim=SGD,
        tau=0.05,
        alpha_optim=SGD,
        init_alpha=0.5,
    )
    common.update(kw)
    algo: SACN = EDAC(**common) if kind == "edac" else SACN(**common)
    perturb(algo.critics_target)
    target = algo.critics_target
    assert isinstance(target, CriticEnsemble)
    with torch.no_grad():  # members beyond the first two hold the minimum
        target.biases[-1][N_CRITICS - 1] -= 1.0
        algo.critics.biases[-1][N_CRITICS - 2] -= 0.5
    return algo


@pytest.mark.parametrize(
    ("kind", "eta", "backup_entropy"),
    [("sacn", 0.0, True), ("sacn", 0.0, False), ("edac", 0.7, True)],
    ids=["sacn", "sacn_no_entropy_backup", "edac"],
)
def test_sacn_and_edac_match_the_paper(
    kind: str, eta: float, backup_entropy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SAC-N: ``y = r + γ(1−d)(min_{j≤N} Q'_j(s', a') − α log π(a'|s'))``, critic loss
    ``Σ_j MSE(Q_j(s, a), y)``, actor ``E[α log π(ã|s) − min_{j≤N} Q_j(s, ã)]`` with frozen
    critics, temperature ``−log α (log π + H̄)``; EDAC adds ``η/(N−1) Σ_{i≠j} ⟨g_i, g_j⟩`` of
    the normalised ``∇_a Q_j(s, a)``. All losses from the same parameters, one SGD step each;
    Polyak targets."""
    extra = {"eta": eta} if kind == "edac" else {}
    algo = _sacn(kind, backup_entropy=backup_entropy, **extra)
    actor, critics = copy.deepcopy(algo.policy.actor), copy.deepcopy(algo.critics)
    critics_t = copy.deepcopy(algo.critics_target)
    log_alpha = algo.log_alpha.detach().clone().requires_grad_()
    b = fixed_batch()
    stats = one_update(algo, b, seed=31, monkeypatch=monkeypatch)

    torch.manual_seed(31)
    eps_s, eps_next = torch.randn(B, A), torch.randn(B, A)
    alpha = log_alpha.detach().exp()
    mean, log_std = actor(b.obs)
    act_pi, logp_pi = tanh_gaussian(mean, log_std.exp(), eps_s)
    frozen = copy.deepcopy(critics).requires_grad_(False)
    q_pi = [member_q(frozen, j, b.obs, act_pi) for j in range(N_CRITICS)]
    actor_loss = (alpha * logp_pi - min_over_members(q_pi)).mean()
    alpha_loss = -(log_alpha * (logp_pi.detach() - A)).mean()  # H̄ = −A
    with torch.no_grad():
        mean_n, log_std_n = actor(b.obs_next)
        act_n, logp_n = tanh_gaussian(mean_n, log_std_n.exp(), eps_next)
        q_next_all = [member_q(critics_t, j, b.obs_next, act_n) for j in range(N_CRITICS)]
        v_next = min_over_members(q_next_all)
        if backup_entropy:
            v_next = v_next - alpha * logp_n
        y = b.rew + b.discount * v_next
        # the minimum over all N is not the minimum over the first two
        assert (min_over_members(q_next_all[:2]) > min_over_members(q_next_all)).any()
    assert (min_over_members(q_pi[:2]) > min_over_members(q_pi)).any()
    td_loss = sum(((member_q(critics, j, b.obs, b.act) - y) ** 2).mean() for j in range(N_CRITICS))
    assert isinstance(td_loss, torch.Tensor)
    critic_loss = td_loss
    es = torch.zeros(())
    if kind == "edac":
        g = []
        for j in range(N_CRITICS):
            a = b.act.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(
                member_q(critics, j, b.obs, a).sum(), a, create_graph=True
            )
            g.append(grad / (grad.norm(dim=-1, keepdim=True) + 1e-10))
        pairs = [
            (g[i] * g[j]).sum(-1) for i in range(N_CRITICS) for j in range(N_CRITICS) if i != j
        ]
        es = (torch.stack(pairs).sum(0) / (N_CRITICS - 1)).mean()
        critic_loss = critic_loss + eta * es
    sgd_step(params(critics), critic_loss)
    sgd_step(params(actor), actor_loss)
    sgd_step([log_alpha], alpha_loss)
    polyak(critics_t, critics, 0.05)

    assert stats.td_loss == pytest.approx(td_loss.item(), rel=1e-5)
    assert stats.critic_loss == pytest.approx(critic_loss.item(), rel=1e-5)
    assert stats.actor_loss == pytest.approx(actor_loss.item(), rel=1e-5)
    assert stats.alpha_loss == pytest.approx(alpha_loss.item(), rel=1e-5)
    assert stats.q_target == pytest.approx(y.mean().item(), rel=1e-5)
    if kind == "edac":
        assert stats.diversity_loss == pytest.approx(es.item(), rel=1e-4, abs=1e-6)
        assert abs(es.item()) > 0.05  # the term is not negligible in this step
    else:
        assert stats.diversity_loss is None
    assert_same(algo.critics, critics, "critics")
    assert_same(algo.policy.actor, actor, "actor")
    assert_same(algo.critics_target, critics_t, "critics_target")
    torch.testing.assert_close(algo.log_alpha.detach(), log_alpha.detach())


def test_ensemble_similarity_is_the_pairwise_cosine_sum() -> None:
    g = torch.randn(4, 6, 3)
    expected = torch.zeros(6)
    for i in range(4):
        for j in range(4):
            if i != j:
                expected += torch.nn.functional.cosine_similarity(g[i], g[j], dim=-1, eps=0)
    torch.testing.assert_close(ensemble_similarity(g), expected / 3, rtol=1e-5, atol=1e-6)
    same = torch.randn(1, 6, 3).expand(4, 6, 3)  # identical gradients: the maximum, N
    torch.testing.assert_close(ensemble_similarity(same), torch.full((6,), 4.0))


def test_lbsac_scales_the_learning_rate_and_averages_the_members(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """LB-SAC: every optimizer at ``3e-4 · sqrt(B / 256)``; the TD loss is the mean over the N
    members' MSEs (SAC-N's sum divided by N)."""
    assert sqrt_scaled_lr(10_000) == pytest.approx(1.875e-3)
    assert sqrt_scaled_lr(256) == pytest.approx(3e-4)
    with pytest.raises(ValueError, match="batch_size"):
        sqrt_scaled_lr(0)
    torch.manual_seed(0)
    policy = GaussianPolicy(
        actor=GaussianActor(D, A, H), action_space=ACT_SPACE, observation_space=OBS_SPACE
    )
    algo = LBSAC(policy=policy, critics=CriticEnsemble(D, A, H, num_critics=N_CRITICS),
                 batch_size=1024)  # fmt: skip
    assert algo.learning_rate == pytest.approx(6e-4)
    assert algo.alpha_optim is not None
    for optim in (algo.actor_optim, algo.critic_optim, algo.alpha_optim):
        assert optim.optim.param_groups[0]["lr"] == pytest.approx(6e-4)
    twin = _sacn("sacn")  # the same networks under SAC-N
    twin.policy.actor.load_state_dict(algo.policy.actor.state_dict())
    twin.critics.load_state_dict(algo.critics.state_dict())
    twin.critics_target.load_state_dict(algo.critics_target.state_dict())
    twin.log_alpha.data.copy_(algo.log_alpha.data)
    b = fixed_batch()
    ours = one_update(algo, b, seed=5, monkeypatch=monkeypatch)
    reference = one_update(twin, b, seed=5, monkeypatch=monkeypatch)
    assert ours.td_loss == pytest.approx(reference.td_loss / N_CRITICS, rel=1e-5)
    assert ours.q_target == pytest.approx(reference.q_target, rel=1e-5)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"critics": CriticEnsemble(D, A, H, num_critics=1)}, "N >= 2"),
        ({"tau": 0.0}, "tau"),
        ({"alpha": -1.0}, "alpha"),
        ({"eta": -1.0}, "eta"),
    ],
)
def test_ensembles_reject_bad_parameters(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _sacn("edac", **kw)


# --------------------------------------------------------------------------- AWAC


# --------------------------------------------------------------------------- the grid


def test_the_grid_builds_the_registry_algorithms() -> None:
    """``tianshou-offline grid`` names SAC-N, EDAC, LB-SAC and AWAC (continuous data only):
    built from the registry's ``small`` preset with the cell's overrides, an unknown override
    an error naming the fields."""
    from tianshou_offline.errors import DataValidationError
    from tianshou_offline.scale.algorithms import algorithm_names, build_algorithm, hyperparameters

    names = algorithm_names(PENDULUM_ACT)
    assert {"sacn", "edac", "lbsac", "awac"} <= set(names)
    assert "awac" not in algorithm_names(gym.spaces.Discrete(2))
    awac = build_algorithm("awac", PENDULUM_OBS, PENDULUM_ACT, {"lam": 2.0})
    assert isinstance(awac, AWAC) and awac.lam == 2.0
    edac = build_algorithm("edac", PENDULUM_OBS, PENDULUM_ACT, {"num_critics": 3, "eta": 0.5})
    assert isinstance(edac, EDAC) and edac.critics.num_critics == 3 and edac.eta == 0.5
    assert hyperparameters("lbsac", PENDULUM_ACT)["batch_size"] == 1024
    with pytest.raises(DataValidationError, match="no hyperparameter etta.*backup_entropy"):
        build_algorithm("sacn", PENDULUM_OBS, PENDULUM_ACT, {"etta": 1.0})
    with pytest.raises(DataValidationError, match="awac"):
        build_algorithm("nope", PENDULUM_OBS, PENDULUM_ACT)


# --------------------------------------------------------------------------- learning

ENSEMBLE_THRESHOLD = -700.0
"""SAC-N and EDAC have no behaviour-cloning term: from expert data they learn the critic
first (about 2,000 steps before the policy improves); at 2,000 steps they score about −470
(SAC-N, seed 0), between the untrained policy's ≈ −1200 and the expert's −250."""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "epochs", "threshold"),
    [("awac", 3, THRESHOLD), ("sacn", 4, ENSEMBLE_THRESHOLD), ("edac", 4, ENSEMBLE_THRESHOLD),
     ("lbsac", 4, ENSEMBLE_THRESHOLD)],
)  # fmt: skip
def test_learns_pendulum_from_expert_data(
    name: str, epochs: int, threshold: float, expert_buffer: ReplayBuffer
) -> None:
    """Trained with Tianshou's OfflineTrainer (``epochs`` × 500 steps of batch 256; LB-SAC
    batch 512, its learning rates by the square-root rule), the final policy's mean return
    over 20 fresh episodes reaches ``threshold``."""
    torch.manual_seed(0)
    np.random.seed(0)
    algo = pendulum_algorithm(name)
    algo.run_training(
        OfflineTrainerParams(
            buffer=expert_buffer,
            test_collector=None,
            max_epochs=epochs,
            epoch_num_steps=500,
            batch_size=LBSAC_BATCH if name == "lbsac" else 256,
            show_progress=False,
            verbose=False,
        )
    )
    final = evaluate(algo, seed=5000, episodes=20)
    print(f"{name}: final mean return {final:.1f}")
    assert final >= threshold, f"{name}: final mean return {final:.1f} < {threshold}"


def test_a_grid_cell_trains_lbsac_at_its_own_batch_size() -> None:
    """A grid cell's LB-SAC takes its learning rate from the batch the cell trains at (the
    budget's), not from the preset's batch_size (1024 in ``small``); a grid file's own
    ``batch_size`` override wins; algorithms without the field get no override."""
    from tianshou_offline.scale.algorithms import build_algorithm
    from tianshou_offline.scale.grid import trained_batch_overrides
    from tianshou_offline.scale.grid_spec import Budget, Cell

    cell = Cell("lbsac", "d.hdf5", budget=Budget(batch_size=64))
    algo = build_algorithm("lbsac", OBS_SPACE, ACT_SPACE, trained_batch_overrides(cell, ACT_SPACE))
    assert isinstance(algo, LBSAC) and algo.learning_rate == pytest.approx(sqrt_scaled_lr(64))
    own = Cell("lbsac", "d.hdf5", overrides={"batch_size": 512}, budget=Budget(batch_size=64))
    assert trained_batch_overrides(own, ACT_SPACE) == {"batch_size": 512}
    assert trained_batch_overrides(Cell("td3bc", "d.hdf5"), ACT_SPACE) == {}
