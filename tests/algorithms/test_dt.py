"""The Decision Transformer (Chen et al. 2021, arXiv:2106.01345): the trajectory-segment
sampler against a plain loop over episodes, the loss on padded segments against per-sample
computations without padding, the return-conditioned policy's context, and a learning test.

- Segments: every stored step as a segment start, compared with segments built here by
  walking each episode with Tianshou's ``next()`` (``_buffers.episodes_of``): steps never
  cross an episode's end, short segments are padded on the left, returns-to-go are the
  undiscounted sums to the episode's end divided by the scale, timesteps count from the
  episode's first stored row, masks mark the real steps — for a buffer of several episodes
  (terminated, truncated and unfinished) and for a circular buffer that overwrote the start
  of its oldest episode, continuous and discrete.
- Loss: one SGD step of ``DecisionTransformer`` on segments whose padded slots hold random
  values equals the step on the loss computed here sample by sample from the *unpadded*
  steps only (the network run on each sample's real steps alone): padding neither leaks
  into the real steps' predictions nor into the loss.
- Policy: the context follows the episode (target return at the first step, then lowered
  by each reward received, timesteps, the last K steps), its action is the network's
  prediction on that context, and an emptied state (as Tianshou's ``Collector`` does at an
  episode's end) starts a new context.
- Initialisation: GPT-2's N(0, 0.02²) weights, zero biases and unit LayerNorms where the
  authors' code applies them (the blocks; for discrete actions also the output layer and the
  action embedding, the timestep embedding at 0), statistics over matrices of at least 16,384 draws;
  the configs' ``init_std`` reaches the network, ``None`` keeps PyTorch's initialisation; by
  default the discrete config initialises as GPT-2 (the authors' Atari code), the continuous
  one as PyTorch (a deliberate difference from their gym code).
- Learning: Pendulum-v1 from the session's expert data; a no-op optimizer stays at the
  untrained policy's return (about −1200). Discrete actions: CartPole-v1 from the session's
  expert data (the discrete algorithms' tests' file); a no-op optimizer scores about 15.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tianshou.algorithm.optim import AdamOptimizerFactory as Adam
from tianshou.algorithm.optim import TorchOptimizerFactory
from tianshou.data import Batch, Collector, CollectStats, ReplayBuffer
from tianshou.env import DummyVectorEnv
from tianshou.trainer import OfflineTrainerParams
from tianshou.utils.torch_utils import policy_within_training_step

from benchmarks._lib.experts import cartpole
from benchmarks._lib.experts.pendulum import cached_expert_file
from tests.helpers import buffers as _buffers
from tianshou_offline.algorithms import (
    ContinuousDTPolicy,
    DecisionTransformer,
    DecisionTransformerNet,
    DiscreteDTPolicy,
    RewardInInfo,
    Segments,
    state_encoder,
)

D, A, K = 3, 2, 4
OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (D,), np.float32)
ACT_SPACE = gym.spaces.Box(-1.0, 1.0, (A,), np.float32)
LR = 0.1


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def net(discrete: bool, *, context: int = K, n_act: int = A, obs_space: Any = OBS_SPACE) -> Any:
    torch.manual_seed(0)
    return DecisionTransformerNet(
        state_encoder=state_encoder(obs_space, 16),
        act_dim=n_act,
        discrete=discrete,
        hidden=16,
        layers=2,
        heads=2,
        context=context,
        max_timestep=64,
        dropout=0.0,
    )


def continuous_policy(target: float = 10.0, scale: float = 2.0) -> ContinuousDTPolicy:
    return ContinuousDTPolicy(
        model=net(False),
        action_space=ACT_SPACE,
        observation_space=OBS_SPACE,
        target_return=target,
        rtg_scale=scale,
    )


def discrete_policy(scale: float = 2.0) -> DiscreteDTPolicy:
    return DiscreteDTPolicy(
        model=net(True, n_act=4),
        action_space=gym.spaces.Discrete(4),
        observation_space=OBS_SPACE,
        target_return=5.0,
        rtg_scale=scale,
    )


def sgd() -> TorchOptimizerFactory:
    return TorchOptimizerFactory(torch.optim.SGD, lr=LR)


# --------------------------------------------------------------------------- segments


def continuous_buffer(lengths: list[int], size: int | None = None) -> ReplayBuffer:
    """Episodes of the given lengths (terminated, truncated alternately; the last one
    unfinished), actions in [−1, 1]; a ``size`` smaller than the total makes the buffer
    circular and overwrite its oldest rows."""
    rng = np.random.default_rng(1)
    buf = ReplayBuffer(size or sum(lengths))
    for e, length in enumerate(lengths):
        for t in range(length):
            last = t == length - 1 and e < len(lengths) - 1
            buf.add(
                Batch(
                    obs=rng.normal(size=D).astype(np.float32),
                    act=rng.uniform(-1, 1, size=A).astype(np.float32),
                    rew=float(rng.normal()),
                    terminated=last and e % 2 == 0,
                    truncated=last and e % 2 == 1,
                    obs_next=rng.normal(size=D).astype(np.float32),
                    info={},
                )
            )
    return buf


def expected_segments(buf: ReplayBuffer, scale: float) -> list[dict[str, np.ndarray]]:
    """Every segment, built by walking each episode (ordered by its first row)."""
    out = []
    for rows in sorted(_buffers.episodes_of(buf), key=lambda r: int(r[0])):
        rew = np.asarray(buf.rew)[rows]
        for t in range(len(rows)):
            steps = rows[t : t + K]
            pad = K - len(steps)
            rtg = [rew[t + i :].sum() / scale for i in range(len(steps))]
            out.append(
                {
                    "obs": np.concatenate([np.zeros((pad, D)), np.asarray(buf.obs)[steps]]),
                    "act": np.concatenate(
                        [
                            np.zeros((pad, *np.asarray(buf.act).shape[1:])),
                            np.asarray(buf.act)[steps],
                        ]
                    ),
                    "rtg": np.concatenate([np.zeros(pad), rtg]),
                    "timesteps": np.concatenate([np.zeros(pad), np.arange(t, t + len(steps))]),
                    "mask": np.arange(K) >= pad,
                }
            )
    return out


@pytest.mark.parametrize(
    ("kind", "size"),
    [("continuous", None), ("continuous", 20), ("discrete", None)],
    ids=["continuous", "continuous_circular", "discrete"],
)
def test_segments_match_a_loop_over_episodes(kind: str, size: int | None) -> None:
    lengths = [7, 1, 12, 5]
    if kind == "discrete":
        buf = ReplayBuffer(sum(lengths))
        _buffers.fill(buf, lengths, obs_dim=D, last_unfinished=True)
        policy: ContinuousDTPolicy | DiscreteDTPolicy = discrete_policy()
    else:
        buf = continuous_buffer(lengths, size)
        policy = continuous_policy()
    algo = DecisionTransformer(policy=policy, optim=sgd())
    data = algo.dataset_for(buf)
    got = data.gather(torch.arange(len(data)))
    expected = expected_segments(buf, scale=2.0)
    assert len(data) == len(expected) == len(buf)
    if size is not None:  # 25 steps added: the oldest episode lost its first rows
        assert len(buf) == 20 < sum(lengths)
    for i, e in enumerate(expected):
        for field in ("obs", "act", "rtg", "timesteps", "mask"):
            value = getattr(got, field)[i].numpy()
            np.testing.assert_allclose(
                value.astype(np.float64), e[field].astype(np.float64), rtol=1e-5, atol=1e-6,
                err_msg=f"segment {i}, {field}",
            )  # fmt: skip


@pytest.mark.parametrize("discrete", [True, False], ids=["discrete", "continuous"])
def test_disk_backed_buffers_give_the_same_segments(tmp_path: Path, discrete: bool) -> None:
    """A buffer written contiguously and loaded disk-backed (``memory="disk"``: discrete
    segments gathered from the file, continuous rows read from it) gives the same segments as
    the buffer in RAM."""
    from tianshou_offline import BufferWriter, load_buffer

    rng = np.random.default_rng(3)
    n = 40
    path = tmp_path / "plain.hdf5"
    ends = np.zeros(n, bool)
    ends[[6, 7, 19]] = True
    with BufferWriter(path, contiguous=True) as w:
        w.add_transitions(
            obs=rng.normal(size=(n, D)).astype(np.float32),
            act=rng.integers(0, 4, n) if discrete else rng.uniform(-1, 1, (n, A)).astype(np.float32),
            rew=rng.normal(size=n).astype(np.float32),
            terminated=ends,
            truncated=np.zeros(n, bool),
            obs_next=rng.normal(size=(n, D)).astype(np.float32),
        )
    ram, disk = load_buffer(path), load_buffer(path, memory="disk")
    assert hasattr(disk, "disk_columns")
    segs = []
    for b in (ram, disk):
        policy = discrete_policy() if discrete else continuous_policy()
        algo = DecisionTransformer(policy=policy, optim=sgd())
        data = algo.dataset_for(b)
        segs.append(data.gather(torch.arange(len(data))))
    for field in ("obs", "act", "rtg", "timesteps", "mask"):
        torch.testing.assert_close(getattr(segs[0], field), getattr(segs[1], field))
    assert not segs[0].mask.all()  # some segments are padded


# --------------------------------------------------------------------------- loss


def padded_segments(discrete: bool, n_act: int) -> Segments:
    """Three segments with 4, 2 and 1 real steps; the padded slots hold random values."""
    g = torch.Generator().manual_seed(3)
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]], dtype=torch.bool)
    act = (
        torch.randint(0, n_act, (3, K), generator=g)
        if discrete
        else torch.rand(3, K, n_act, generator=g) * 2 - 1
    )
    return Segments(
        obs=torch.randn(3, K, D, generator=g),
        act=act,
        rtg=torch.randn(3, K, generator=g),
        timesteps=torch.randint(0, 50, (3, K), generator=g),
        mask=mask,
    )


@pytest.mark.parametrize("discrete", [False, True], ids=["continuous", "discrete"])
def test_dt_loss_on_padded_segments(discrete: bool) -> None:
    """Continuous: the mean over real steps and action dimensions of ``(â − a)²``; discrete:
    the mean over real steps of ``−log softmax(ℓ)[a]``; each sample's predictions computed
    from its real steps alone."""
    policy: ContinuousDTPolicy | DiscreteDTPolicy = (
        discrete_policy() if discrete else continuous_policy()
    )
    algo = DecisionTransformer(policy=policy, optim=sgd(), max_grad_norm=None)
    model = copy.deepcopy(policy.model)
    s = padded_segments(discrete, 4 if discrete else A)
    with policy_within_training_step(policy):
        stats = algo.update_on(s)

    terms, count = [], 0
    for i in range(3):
        real = s.mask[i]
        n = int(real.sum())
        pred = model(
            s.obs[i, real][None],
            s.act[i, real][None],
            s.rtg[i, real][None],
            s.timesteps[i, real][None],
            torch.ones(1, n, dtype=torch.bool),
        )[0]
        if discrete:
            terms.append(-F.log_softmax(pred, dim=-1).gather(1, s.act[i, real][:, None]).sum())
        else:
            terms.append(((pred - s.act[i, real]) ** 2).sum() / A)
        count += n
    loss = torch.stack(terms).sum() / count
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    with torch.no_grad():
        for p, grad in zip(model.parameters(), grads, strict=True):
            if grad is not None:
                p.sub_(LR * grad)
    assert stats.loss == pytest.approx(loss.item(), rel=1e-5)
    assert stats.real_steps == pytest.approx(7 / 12)
    for (name, ours), ref in zip(policy.model.named_parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("discrete", [False, True], ids=["continuous", "discrete"])
def test_predictions_see_only_the_past(discrete: bool) -> None:
    """The prediction of ``a_t`` is a function of ``R̂_{≤t}, s_{≤t}, a_{<t}`` (Sec. 3: causal
    self-attention): changing ``a_t`` and every token after step t leaves the predictions of
    steps ≤ t unchanged, and changes those after it."""
    model = net(discrete, n_act=4 if discrete else A).eval()
    s = padded_segments(discrete, 4 if discrete else A)
    mask = torch.ones(3, K, dtype=torch.bool)
    g = torch.Generator().manual_seed(9)
    t = 1
    later = copy.deepcopy(s)
    obs, rtg = later.obs.clone(), later.rtg.clone()
    obs[:, t + 1 :] = torch.randn(obs[:, t + 1 :].shape, generator=g)
    rtg[:, t + 1 :] = torch.randn(rtg[:, t + 1 :].shape, generator=g)
    act = later.act.clone()
    act[:, t:] = (
        (act[:, t:] + 1) % 4 if discrete else torch.rand(act[:, t:].shape, generator=g) * 2 - 1
    )
    with torch.no_grad():
        before = model(s.obs, s.act, s.rtg, s.timesteps, mask)
        after = model(obs, act, rtg, s.timesteps, mask)
    torch.testing.assert_close(after[:, : t + 1], before[:, : t + 1], rtol=1e-5, atol=1e-6)
    assert (after[:, t + 1 :] - before[:, t + 1 :]).abs().amin(dim=-1).gt(1e-4).all()


# --------------------------------------------------------------------------- initialisation

WIDE = 128  # every matrix below has >= 128 x 128 draws: a std's standard error under 0.6%


def wide_net(discrete: bool, **kwargs: Any) -> DecisionTransformerNet:
    torch.manual_seed(0)
    return DecisionTransformerNet(
        state_encoder=state_encoder(OBS_SPACE, WIDE),
        act_dim=WIDE,
        discrete=discrete,
        hidden=WIDE,
        layers=2,
        heads=1,
        context=K,
        **kwargs,
    )


def assert_normal(w: torch.Tensor, std: float, name: str) -> None:
    """``w``'s draws have mean 0 and standard deviation ``std`` to 5 %."""
    assert abs(w.mean().item()) < 0.05 * std, f"{name}: mean {w.mean().item():.4f}"
    assert w.std().item() == pytest.approx(std, rel=0.05), f"{name}: std {w.std().item():.4f}"


@pytest.mark.parametrize("discrete", [False, True], ids=["continuous", "discrete"])
def test_initialisation_is_the_authors_gpt2_one(discrete: bool) -> None:
    """GPT-2's initialisation where the authors' code applies it (the model's docstring): in
    every block, the attention's input and output projections and both feed-forward layers
    N(0, 0.02²), their biases 0, the LayerNorms weight 1 and bias 0, each block drawn on its
    own (not a copy of the first); discrete actions (the authors' Atari script): the output
    layer and the action embedding N(0, 0.02²), the output bias 0, the timestep embedding 0;
    continuous actions (their gym script): the timestep embedding PyTorch's N(0, 1), the
    output layer PyTorch's uniform in ±1/√fan-in."""
    model = wide_net(discrete, init_std=0.02)
    blocks = list(model.blocks.layers)
    for i, block in enumerate(blocks):
        weights = {
            "attention input": block.self_attn.in_proj_weight,
            "attention output": block.self_attn.out_proj.weight,
            "feed-forward 1": block.linear1.weight,
            "feed-forward 2": block.linear2.weight,
        }
        for name, w in weights.items():
            assert_normal(w.detach(), 0.02, f"block {i} {name}")
        for b in (block.self_attn.in_proj_bias, block.self_attn.out_proj.bias,
                  block.linear1.bias, block.linear2.bias):  # fmt: skip
            assert torch.count_nonzero(b) == 0, f"block {i}: a bias is not 0"
    norms = [m for m in model.blocks.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2 * len(blocks) + 1
    for norm in norms:
        assert torch.equal(norm.weight, torch.ones_like(norm.weight))
        assert torch.equal(norm.bias, torch.zeros_like(norm.bias))
    assert not torch.equal(blocks[0].linear1.weight, blocks[1].linear1.weight)
    out = model.predict_action
    timestep = model.embed_timestep.weight.detach()
    if discrete:
        assert_normal(out.weight.detach(), 0.02, "output layer")
        assert torch.count_nonzero(out.bias) == 0
        assert isinstance(model.embed_action, torch.nn.Embedding)
        assert_normal(model.embed_action.weight.detach(), 0.02, "action embedding")
        assert torch.count_nonzero(timestep) == 0
    else:
        assert_normal(timestep, 1.0, "timestep embedding")
        bound = 1 / WIDE**0.5
        assert out.weight.abs().max().item() <= bound
        assert out.weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.05)


def test_init_std_is_the_configs_and_none_keeps_pytorchs_defaults() -> None:
    """The configs' ``init_std`` reaches the network; ``None``, the network's default, keeps
    PyTorch's initialisation (each block a copy of the first: ``nn.TransformerEncoder``
    clones its layer); a non-positive one is refused."""
    from tianshou_offline.algorithms import ContinuousDTConfig, DiscreteDTConfig
    from tianshou_offline.errors import DataValidationError

    config = DiscreteDTConfig(embed_dim=WIDE, n_layers=2, n_heads=1, init_std=0.05)
    built = config.build(OBS_SPACE, gym.spaces.Discrete(3))
    for block in built.policy.model.blocks.layers:
        assert_normal(block.linear1.weight.detach(), 0.05, "feed-forward 1")
    model = wide_net(True)
    blocks = list(model.blocks.layers)
    assert torch.equal(blocks[0].linear1.weight, blocks[1].linear1.weight)
    assert blocks[0].linear1.weight.abs().max().item() <= 1 / WIDE**0.5
    assert torch.count_nonzero(blocks[0].linear1.bias) > 0
    assert_normal(model.embed_timestep.weight.detach(), 1.0, "timestep embedding")
    with pytest.raises(ValueError, match="init_std=0"):
        wide_net(False, init_std=0.0)
    with pytest.raises(DataValidationError, match="init_std=-1"):
        ContinuousDTConfig(init_std=-1.0)


@pytest.mark.parametrize("discrete", [False, True], ids=["continuous", "discrete"])
def test_each_configs_default_initialisation(discrete: bool) -> None:
    """Built with its config's defaults (wide enough for the statistics), the discrete
    Decision Transformer starts from GPT-2's initialisation, as the authors' Atari code and
    d3rlpy: every block's linear weights N(0, 0.02²), their biases 0, each block drawn on its
    own; the continuous one from PyTorch's (``ContinuousDTConfig``'s docstring says why):
    linear weights uniform in ±1/√fan-in, biases not 0, every block a copy of the first.
    Either default reverted (``DiscreteDTConfig.init_std`` None, ``ContinuousDTConfig``'s
    0.02) fails here."""
    from tianshou_offline.algorithms import ContinuousDTConfig, DiscreteDTConfig

    torch.manual_seed(0)
    sizes: dict[str, Any] = {"embed_dim": WIDE, "n_layers": 2, "n_heads": 1, "context": K}
    if discrete:
        algorithm: Any = DiscreteDTConfig(**sizes).build(OBS_SPACE, gym.spaces.Discrete(WIDE))
    else:
        algorithm = ContinuousDTConfig(**sizes).build(OBS_SPACE, ACT_SPACE)
    blocks = list(algorithm.policy.model.blocks.layers)
    for i, block in enumerate(blocks):
        for name in ("linear1", "linear2"):
            weight, bias = getattr(block, name).weight.detach(), getattr(block, name).bias
            if discrete:
                assert_normal(weight, 0.02, f"block {i} {name}")
                assert torch.count_nonzero(bias) == 0, f"block {i} {name}: a bias is not 0"
            else:
                bound = 1 / weight.shape[1] ** 0.5
                assert weight.abs().max().item() <= bound, f"block {i} {name}"
                assert weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.05)
                assert torch.count_nonzero(bias) > 0, f"block {i} {name}: biases all 0"
    copies = torch.equal(blocks[0].linear1.weight, blocks[1].linear1.weight)
    assert copies is not discrete


# --------------------------------------------------------------------------- policy


def test_policy_context_follows_the_episode() -> None:
    policy = continuous_policy(target=10.0, scale=2.0)
    policy.eval()
    rng = np.random.default_rng(0)
    obs_seq = rng.normal(size=(6, 2, D)).astype(np.float32)
    rewards = rng.normal(size=(6, 2)).astype(np.float32)
    state: Any = None
    history: list[np.ndarray] = []
    for step in range(6):
        info = Batch(reward=rewards[step - 1] if step else np.zeros(2, np.float32))
        out = policy(Batch(obs=obs_seq[step], info=info), state)
        state = out.state
        history.append(np.asarray(out.act))
        n = min(step + 1, K)
        rtg = 10.0 / 2.0 - np.concatenate([[0.0], np.cumsum(rewards[:step, 0])]) / 2.0
        np.testing.assert_allclose(state.rtg[0, K - n :], rtg[step + 1 - n :], rtol=1e-5)
        np.testing.assert_array_equal(state.t[0, K - n :], np.arange(step + 1 - n, step + 1))
        np.testing.assert_allclose(state.obs[0, K - n :], obs_seq[step + 1 - n : step + 1, 0])
        assert int(state.length[0]) == n
        # the action is the network's prediction on this context (the actions taken before)
        with torch.no_grad():
            pred = policy.model(
                torch.as_tensor(obs_seq[step + 1 - n : step + 1, 0])[None],
                torch.as_tensor(np.stack([h[0] for h in history[step + 1 - n :]]))[None],
                torch.as_tensor(rtg[step + 1 - n :], dtype=torch.float32)[None],
                torch.arange(step + 1 - n, step + 1)[None],
                torch.ones(1, n, dtype=torch.bool),
            )[0, -1]
        np.testing.assert_allclose(history[-1][0], pred.numpy(), rtol=1e-4, atol=1e-6)
    state.empty_(np.array([1]))  # what the Collector does when env 1's episode ends
    out = policy(Batch(obs=obs_seq[0], info=Batch(reward=np.ones(2, np.float32))), state)
    assert out.state.length.tolist() == [K, 1]
    assert out.state.rtg[1, -1] == pytest.approx(5.0) and out.state.t[1, -1] == 0
    with pytest.raises(ValueError, match="RewardInInfo"):
        policy(Batch(obs=obs_seq[0], info=Batch()), out.state)


# --------------------------------------------------------------------------- learning

PENDULUM_OBS = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
PENDULUM_ACT = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)


def train_and_evaluate(
    algo: DecisionTransformer, buffer: ReplayBuffer, steps: int, task: str
) -> float:
    """Train ``algo`` ``steps`` steps of 64 segments through Tianshou's OfflineTrainer, then
    its mean return over 20 fresh episodes of ``task`` (10 environments, seed 5000)."""
    algo.run_training(
        OfflineTrainerParams(
            buffer=buffer,
            test_collector=None,
            max_epochs=1,
            epoch_num_steps=steps,
            batch_size=64,
            show_progress=False,
            verbose=False,
        )
    )
    envs = DummyVectorEnv([lambda: RewardInInfo(gym.make(task)) for _ in range(10)])
    envs.seed(5000)
    stats = Collector[CollectStats](algo, envs).collect(n_episode=20, reset_before_collect=True)
    assert stats.returns_stat is not None
    return float(stats.returns_stat.mean)


@pytest.mark.slow
def test_dt_learns_pendulum_from_expert_data(expert_data_dir: Path) -> None:
    """A small Decision Transformer (64 units, 1 block of 1 head, context 5, no dropout)
    trained for 1,000 steps of 64 segments, conditioned on the expert's return, reaches a mean
    return of −400 over 20 fresh episodes (untrained, or trained with a no-op optimizer:
    about −1200). Initialised as ``ContinuousDTConfig`` does by default (PyTorch's) it reaches
    −170 at seed 0 (worst episode −370), −194 and −264 at seeds 1 and 2; with GPT-2's
    (``init_std=0.02``, the authors' gym code) −349, −236 and −695, too close to the threshold
    for this test; −1329 with a no-op optimizer; 9 s of CPU to train, 4 s to evaluate."""
    from tianshou_offline import load_buffer
    from tianshou_offline.algorithms import ContinuousDTConfig

    torch.manual_seed(0)
    np.random.seed(0)
    buffer = load_buffer(cached_expert_file(expert_data_dir))
    model = DecisionTransformerNet(
        state_encoder=state_encoder(PENDULUM_OBS, 64),
        act_dim=1,
        discrete=False,
        hidden=64,
        layers=1,
        heads=1,
        context=5,
        max_timestep=200,
        dropout=0.0,
        init_std=ContinuousDTConfig.init_std,
    )
    policy = ContinuousDTPolicy(
        model=model,
        action_space=PENDULUM_ACT,
        observation_space=PENDULUM_OBS,
        target_return=-150.0,
        rtg_scale=100.0,
        normalize_obs=True,
    )
    algo = DecisionTransformer(policy=policy, optim=Adam(lr=1e-3))
    final = train_and_evaluate(algo, buffer, 1000, "Pendulum-v1")
    print(f"DT: final mean return {final:.1f}")
    assert final >= -400.0, f"DT: final mean return {final:.1f} < -400"


@pytest.mark.slow
def test_discrete_dt_learns_cartpole_from_expert_data(expert_data_dir: Path) -> None:
    """A small discrete Decision Transformer (64 units, 1 block of 1 head, context 5, no
    dropout) trained for 500 steps of 64 segments on the CartPole-v1 expert data (QR-DQN at
    ε = 0.2: 107 episodes, mean return 187, best 356), conditioned on a return of 350,
    reaches a mean return of 120 over 20 fresh episodes. Initialised as ``DiscreteDTConfig``
    does by default (GPT-2's, ``init_std=0.02``) it reaches 224, 215 and 225 at seeds 0–2;
    with PyTorch's (``init_std=None``) 211, 164 and 173 (worst episodes 114 to 127); 15 with
    a no-op optimizer (29 at PyTorch's initialisation; a uniformly random policy: about 22);
    5 s of CPU to train, 5 s to evaluate."""
    from tianshou_offline import load_buffer
    from tianshou_offline.algorithms import DiscreteDTConfig

    torch.manual_seed(0)
    np.random.seed(0)
    buffer = load_buffer(cartpole.cached_expert_file(expert_data_dir))
    obs_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    model = DecisionTransformerNet(
        state_encoder=state_encoder(obs_space, 64),
        act_dim=2,
        discrete=True,
        hidden=64,
        layers=1,
        heads=1,
        context=5,
        max_timestep=500,
        dropout=0.0,
        init_std=DiscreteDTConfig.init_std,
    )
    policy = DiscreteDTPolicy(
        model=model,
        action_space=gym.spaces.Discrete(2),
        observation_space=obs_space,
        target_return=350.0,
        rtg_scale=100.0,
    )
    algo = DecisionTransformer(policy=policy, optim=Adam(lr=1e-3))
    final = train_and_evaluate(algo, buffer, 500, cartpole.TASK)
    print(f"discrete DT: final mean return {final:.1f}")
    assert final >= 120.0, f"discrete DT: final mean return {final:.1f} < 120"
