"""Deployable policy exports (``tianshou_offline.deploy``, ``tianshou-offline export-policy``):
every policy class of the package, continuous and discrete, flat and image observations, and
the version-1 MLP and Atari checkpoints, exported to TorchScript and ONNX; each file is loaded
with ``torch.jit.load`` and onnxruntime and its actions on a batch of recorded dataset
observations compared with the Python policy's (continuous: within 1e-5 absolute, float32
round-off; discrete: equal).

The Python reference is the policy object that was saved, acting as Tianshou's ``Collector``
does (``policy(batch).act`` then ``policy.map_action``), and the replay function ``record
--policy`` uses (``load_policy_checkpoint``). Sampling policies are compared in their
deterministic form with the policy's own code with the randomness switched off (BCQ's latent
clip 0, CRR's standard deviation ~0, ``deterministic_eval`` on)."""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from tianshou.data import Batch
from tianshou.utils.net.common import Net

import tianshou_offline.algorithms as A
from tianshou_offline.cli import main as cli_main
from tianshou_offline.data.buffer import load_buffer
from tianshou_offline.deploy import FORMATS, METADATA_KEY, export_policy
from tianshou_offline.errors import DataValidationError, OutputExistsError
from tianshou_offline.recording.policies import (
    load_policy_checkpoint,
    save_atari_checkpoint,
    save_policy_checkpoint,
)

ort = pytest.importorskip("onnxruntime")

PENDULUM = gym.make("Pendulum-v1")
CARTPOLE = gym.make("CartPole-v1")
CONT: dict[str, Any] = {
    "action_space": PENDULUM.action_space,
    "observation_space": PENDULUM.observation_space,
}
DISC: dict[str, Any] = {
    "action_space": CARTPOLE.action_space,
    "observation_space": CARTPOLE.observation_space,
}
FRAMES = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
PONG: dict[str, Any] = {"action_space": gym.spaces.Discrete(6), "observation_space": FRAMES}
JIT_LOAD: Any = torch.jit.load  # untyped in torch's stubs
ATOL = 1e-5
"""Continuous actions: float32 round-off between PyTorch eager, TorchScript and onnxruntime."""


def _record(tmp: Path, env: str, *extra: str) -> np.ndarray:
    out = tmp / f"{env}.hdf5"
    args = ["record", "--env", env, "--policy", "random", "--seed", "1", "-o", str(out), *extra]
    assert cli_main(args) == 0
    buf = load_buffer(out)
    obs: np.ndarray = np.asarray(buf[np.arange(len(buf))].obs)  # stacked frames, for Pong
    return obs


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Observations of recorded datasets: Pendulum, CartPole, Pong frames (stacks of 4)."""
    tmp = tmp_path_factory.mktemp("deploy_data")
    return {
        "pendulum": _record(tmp, "Pendulum-v1", "--episodes", "1")[::13][:16],
        "cartpole": _record(tmp, "CartPole-v1", "--episodes", "2")[:16],
        "pong": _record(tmp, "PongNoFrameskip-v4", "--steps", "12")[:7],
    }


def _fit(policy: A.ContinuousPolicy, obs: np.ndarray) -> A.ContinuousPolicy:
    policy.obs_normalizer.fit(obs)
    return policy


def _no_noise(policy: Any) -> Any:
    """The Python policy with its random draws switched off (its deterministic form)."""
    ref = copy.deepcopy(policy)
    if isinstance(ref, A.BCQPolicy):
        ref.vae.latent_clip = 0.0  # every latent z = 0
    if isinstance(ref, A.CriticWeightedPolicy):
        actor: Any = ref.actor
        actor.log_std_min = actor.log_std_max = -60.0  # every proposal is the mean
    elif isinstance(ref, A.GaussianPolicy | A.DiscreteActorPolicy):
        ref.deterministic_eval = True
    return ref


# name → (builder from the data's observations, the data, exported with --deterministic)
POLICIES: dict[str, tuple[Callable[[np.ndarray], Any], str, bool]] = {
    "td3bc-deterministic": (lambda o: _fit(A.DeterministicPolicy(
        actor=A.DeterministicActor(3, 1, (8,)), normalize_obs=True, **CONT), o), "pendulum", False),
    "cql-gaussian-squashed": (lambda o: A.GaussianPolicy(
        actor=A.GaussianActor(3, 1, (8,)), **CONT), "pendulum", False),
    "iql-gaussian-tanh-mean": (lambda o: _fit(A.GaussianPolicy(
        actor=A.GaussianActor(3, 1, (8,), conditioned_std=False, tanh_mean=True), squash=False,
        normalize_obs=True, **CONT), o), "pendulum", False),
    "bc-gaussian-sampling": (lambda o: A.GaussianPolicy(
        actor=A.GaussianActor(3, 1, (8,)), squash=False, deterministic_eval=False, **CONT),
        "pendulum", True),
    "crr-critic-weighted": (lambda o: _fit(A.CriticWeightedPolicy(
        actor=A.GaussianActor(3, 1, (8,)), critics=A.CriticEnsemble(3, 1, (8,)),
        normalize_obs=True, **CONT), o), "pendulum", True),
    "bcq": (lambda o: _fit(A.BCQPolicy(
        vae=A.VAE(3, 1, (8,), latent_dim=2), perturbation=A.Perturbation(3, 1, (8,), phi=0.3),
        critics=A.CriticEnsemble(3, 1, (8,)), num_sampled_actions=5, normalize_obs=True,
        **CONT), o), "pendulum", True),
    "discrete-il": (lambda o: A.DiscreteActorPolicy(
        actor=A.QNet(A.MLPTrunk(4, (8,)), 2, (8,)), **DISC), "cartpole", False),
    "discrete-cql-quantiles": (lambda o: A.QValuePolicy(
        model=A.QuantileQNet(A.MLPTrunk(4, (8,)), 2, 5, (8,)), **DISC), "cartpole", False),
    "discrete-bcq": (lambda o: A.DiscreteBCQPolicy(
        model=A.DualHeadNet(A.MLPTrunk(4, (8, 8)), 2), unlikely_action_threshold=0.6, **DISC),
        "cartpole", False),
    "discrete-crr": (lambda o: A.DiscreteActorPolicy(
        actor=A.DualHeadNet(A.MLPTrunk(4, (8,)), 2, (8,)), logits_index=0, **DISC),
        "cartpole", False),
    "discrete-sampling-actor": (lambda o: A.DiscreteActorPolicy(
        actor=A.QNet(A.MLPTrunk(4, (8,)), 2), deterministic_eval=False, **DISC),
        "cartpole", True),
    "atari-cql-quantiles": (lambda o: A.QValuePolicy(
        model=A.QuantileQNet(A.AtariTrunk(4, 84, 84), 6, 3), **PONG), "pong", False),
    "atari-bcq": (lambda o: A.DiscreteBCQPolicy(
        model=A.DualHeadNet(A.AtariTrunk(4, 84, 84), 6), unlikely_action_threshold=0.9,
        **PONG), "pong", False),
}  # fmt: skip


def _exported_actions(path: Path, fmt: str, obs: np.ndarray) -> np.ndarray:
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load, torch >= 2.10
            module = JIT_LOAD(str(path))
        out: np.ndarray = module(torch.as_tensor(obs)).numpy()
        return out
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (act,) = session.run(["act"], {"obs": obs})
    return np.asarray(act)


def _python_actions(policy: Any, obs: np.ndarray) -> np.ndarray:
    """As Tianshou's Collector: forward, then map_action to the env's units."""
    act = policy(Batch(obs=obs, info={})).act
    act = act.detach().numpy() if isinstance(act, torch.Tensor) else np.asarray(act)
    out: np.ndarray = np.asarray(policy.map_action(act))
    return out


def _compare(exported: np.ndarray, expected: np.ndarray) -> None:
    assert exported.shape == expected.shape
    if np.issubdtype(expected.dtype, np.integer):
        assert exported.dtype == np.int64
        np.testing.assert_array_equal(exported, expected)
    else:
        assert exported.dtype == np.float32
        np.testing.assert_allclose(exported, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", list(POLICIES))
def test_export_matches_the_python_policy(
    name: str, data: dict[str, np.ndarray], tmp_path: Path
) -> None:
    build, which, sampling = POLICIES[name]
    obs = data[which]
    torch.manual_seed(0)
    policy = build(obs)
    policy.eval()
    if which == "cartpole":  # random nets act the same everywhere on CartPole's small obs
        with torch.no_grad():  # unless the biases are gone
            for m in policy.modules():
                if isinstance(m, torch.nn.Linear):
                    m.bias.zero_()
            if isinstance(policy, A.DiscreteBCQPolicy):  # confident imitation logits
                head: Any = policy.model.second
                head[-1].weight.mul_(100.0)
    ckpt = save_policy_checkpoint(tmp_path / "policy.pt", policy)
    reference = _python_actions(_no_noise(policy), obs)
    replay = load_policy_checkpoint(ckpt, seed=0)  # what `record --policy` acts with
    if not sampling:
        replayed = np.stack([np.asarray(replay(o)) for o in obs])
        _compare(replayed.astype(reference.dtype), reference)
        if which != "pong":  # actions that vary with the observations
            assert len(np.unique(reference.round(4), axis=0)) > 1
    if isinstance(policy, A.DiscreteBCQPolicy) and which == "cartpole":  # the constraint binds
        greedy = policy.model(torch.as_tensor(obs))[0].argmax(1).numpy()
        assert (greedy != reference).any()
    for fmt in FORMATS:
        if sampling:
            with pytest.raises(DataValidationError, match="deterministic"):
                export_policy(ckpt, tmp_path / f"x.{fmt}", format=fmt)
        out = tmp_path / f"policy.{fmt}"
        r = export_policy(ckpt, out, format=fmt, deterministic=sampling)
        assert r.mode == ("deterministic form" if sampling else "deterministic")
        _compare(_exported_actions(out, fmt, obs), reference)
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _v1_mlp(tmp: Path, env: gym.Env[Any, Any]) -> Path:
    space = env.observation_space
    assert isinstance(space, gym.spaces.Box)
    act = env.action_space
    shape = int(act.n) if isinstance(act, gym.spaces.Discrete) else tuple(act.shape or ())
    torch.manual_seed(0)
    net = Net(state_shape=space.shape, action_shape=shape, hidden_sizes=(8,))
    if not isinstance(act, gym.spaces.Discrete):  # outputs beyond the bounds, clipped
        with torch.no_grad():
            for param in net.parameters():
                param.mul_(3.0)
    return save_policy_checkpoint(tmp / "mlp.pt", net, state_shape=space.shape,
                                  action_space=act, hidden_sizes=(8,))  # fmt: skip


def _v1_atari(tmp: Path) -> Path:
    torch.manual_seed(0)
    model = A.DualHeadNet(A.AtariTrunk(4, 84, 84), 6)
    return save_atari_checkpoint(
        tmp / "atari.pt", model, head="logits", num_actions=6, hidden_sizes=()
    )


@pytest.mark.parametrize("kind", ["mlp-discrete", "mlp-continuous", "atari-crr-logits"])
def test_version_1_checkpoints_export(
    kind: str, data: dict[str, np.ndarray], tmp_path: Path
) -> None:
    if kind == "atari-crr-logits":
        ckpt, obs = _v1_atari(tmp_path), data["pong"]
    elif kind == "mlp-discrete":
        ckpt, obs = _v1_mlp(tmp_path, CARTPOLE), data["cartpole"]
    else:
        ckpt, obs = _v1_mlp(tmp_path, PENDULUM), data["pendulum"]
    replay = load_policy_checkpoint(ckpt)
    expected = np.stack([np.asarray(replay(o)) for o in obs])
    if kind == "mlp-continuous":
        assert np.abs(expected).max() == pytest.approx(2.0)  # the clip to [-2, 2] binds
    else:
        expected = expected.astype(np.int64)
    for fmt in FORMATS:
        export_policy(ckpt, tmp_path / f"p.{fmt}", format=fmt)
        _compare(_exported_actions(tmp_path / f"p.{fmt}", fmt, obs), expected)


def test_export_metadata_and_cli(data: dict[str, np.ndarray], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    import onnx

    build, _, _ = POLICIES["bcq"]
    ckpt = save_policy_checkpoint(tmp_path / "bcq.pt", build(data["pendulum"]))
    out = tmp_path / "bcq.onnx"
    args = ["export-policy", str(ckpt), "--format", "onnx", "-o", str(out)]
    assert cli_main(args) == 2  # a sampling policy needs --deterministic
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--deterministic" in err
    assert not out.exists()
    assert cli_main([*args, "--deterministic"]) == 0
    assert "BCQPolicy, deterministic form" in capsys.readouterr().out
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    desc = json.loads(meta[METADATA_KEY])
    assert desc["policy"] == "BCQPolicy" and desc["mode"] == "deterministic form"
    assert desc["input"] == {"name": "obs", "shape": ["B", 3], "dtype": "float32"}
    assert desc["action_space"]["low"] == {"fill": -2.0}
    before = out.read_bytes()
    assert cli_main([*args, "--deterministic"]) == 2  # exists: not replaced without --overwrite
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before
    assert cli_main([*args, "--deterministic", "--overwrite"]) == 0
    ts = tmp_path / "bcq.ts"
    assert cli_main(["export-policy", str(ckpt), "--deterministic", "-o", str(ts)]) == 0
    files = {METADATA_KEY: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        JIT_LOAD(str(ts), _extra_files=files)
    assert json.loads(files[METADATA_KEY])["mode"] == "deterministic form"
    # bad inputs: one line each
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    for bad in (["export-policy", str(text), "-o", str(tmp_path / "a.ts")],
                ["export-policy", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "b.ts")],
                ["export-policy", str(ckpt), "--deterministic", "-o", str(tmp_path / "no/c.ts")]):  # fmt: skip
        assert cli_main(bad) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bcq.onnx",
        "bcq.pt",
        "bcq.ts",
        "notes.txt",
    ]


def test_policy_without_observation_space_and_an_existing_output(tmp_path: Path) -> None:
    """A discrete policy built without an observation space exports with its trunk's input
    shape; an existing output is refused (typed) and left as it was."""
    torch.manual_seed(0)
    policy = A.QValuePolicy(
        model=A.QNet(A.MLPTrunk(4, (8,)), 2), action_space=gym.spaces.Discrete(2)
    )
    ckpt = save_policy_checkpoint(tmp_path / "q.pt", policy)
    r = export_policy(ckpt, tmp_path / "q.onnx", format="onnx")
    assert (r.obs_shape, r.obs_dtype) == ((4,), "float32")
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    _compare(_exported_actions(r.path, "onnx", obs), _python_actions(policy, obs))
    (tmp_path / "exists.ts").write_text("mine")
    with pytest.raises(OutputExistsError, match="exists"):
        export_policy(ckpt, tmp_path / "exists.ts")
    assert (tmp_path / "exists.ts").read_text() == "mine"
