"""The writers of the package under fault (``WRITERS``): the converters
(:mod:`~benchmarks._lib.faults.converters`), ``BufferWriter``, ``EpisodeRecorder``,
``make-datasets`` (CLI), ``export minari`` (CLI), ``repack`` (CLI), a grid cell and the grid
report (``run_cell`` + ``write_report``), a policy checkpoint (``save_policy_checkpoint``), a
Decision Transformer's checkpoint (the same, of a DT policy) and a training checkpoint
written over the previous one (``save_training_checkpoint``, the examples' ``last.pt`` with a
fine-tuning run's online buffer; the examples' other weights go through the same
``save_state``).
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

from benchmarks._lib.faults.base import (
    OneFile,
    Ran,
    Writer,
    buffer_ok,
    episodes_buffer,
    json_ok,
    loads,
    run_api,
    run_cli,
    torch_ok,
)
from benchmarks._lib.faults.converters import CONVERTERS


class Writer_(OneFile):
    name = "BufferWriter"
    final = "writer.hdf5"

    def run(self, out: Path) -> Ran:
        return run_api(lambda: episodes_buffer(out / self.final, 40, 50, chunk_bytes=4096))

    def complete(self, path: Path) -> bool:
        return buffer_ok(path, 40 * 50)


class Recorder(Writer):
    name = "EpisodeRecorder"
    final = "recorded.hdf5"
    episodes = 8

    def run(self, out: Path) -> Ran:
        import gymnasium as gym

        from tianshou_offline.recording import EpisodeRecorder

        committed = 0

        def record() -> None:
            nonlocal committed
            env = EpisodeRecorder(gym.make("CartPole-v1"), out / self.final)
            try:
                env.action_space.seed(0)
                for ep in range(self.episodes):
                    env.reset(seed=ep)
                    done = False
                    while not done:
                        _, _, term, trunc, _ = env.step(env.action_space.sample())
                        done = term or trunc
                    committed = env.num_episodes
            finally:
                env.close()

        ran = run_api(record)
        ran.committed = committed
        return ran

    def check(self, out: Path, ran: Ran) -> list[str]:
        from tianshou_offline import read_metadata

        p = out / self.final
        want = self.episodes if ran.kind == "ok" else ran.committed
        if not p.exists():
            return [] if want == 0 else [f"{p.name}: missing, {want} episodes were committed"]
        if not buffer_ok(p):
            return [f"{p.name}: does not load"]
        got = read_metadata(p).num_episodes
        # the episode whose commit failed may be there, complete (the failure came after its
        # data, as a kill may): the file loads, and holds every committed episode
        if got == want or (ran.kind != "ok" and got == want + 1):
            return []
        return [f"{p.name}: {got} episodes, {want} were committed"]


class MakeDatasets(Writer):
    name = "make-datasets"

    @staticmethod
    def argv(family: Path) -> list[str]:
        """A tiny family of CartPole: DQN for 60 steps, two levels of 30 steps."""
        return [
            "make-datasets", "--env", "CartPole-v1", "-o", str(family), "--budget", "60",
            "--dataset-steps", "30", "--reference-episodes", "1", "--eval-episodes", "1",
            "--hidden-sizes", "8", "--batch-size", "16", "--start-steps", "20",
            "--checkpoint-every", "30", "--levels", "random,medium",
        ]  # fmt: skip

    def run(self, out: Path) -> Ran:
        return run_cli(self.argv(out / "family"), out / "family")

    def check(self, out: Path, ran: Ran) -> list[str]:
        fam = out / "family"
        wrong: list[str] = []
        for p in sorted(fam.rglob("*")) if fam.is_dir() else []:
            if p.name.startswith(".") or p.is_dir():
                continue
            if p.suffix == ".hdf5" and not buffer_ok(p):
                wrong.append(f"{p.relative_to(out)}: does not load")
            elif p.suffix == ".json" and not json_ok(p):
                wrong.append(f"{p.relative_to(out)}: not JSON")
            elif p.suffix == ".pt" and not torch_ok(p):
                wrong.append(f"{p.relative_to(out)}: torch.load fails")
        if ran.kind == "ok":
            for level in ("random", "medium"):
                if not (fam / f"{level}.hdf5").is_file():
                    wrong.append(f"{level}.hdf5 missing after a finished run")
        return wrong


class ExportMinari(Writer):
    name = "export minari"

    def prepare(self, src: Path) -> None:
        super().prepare(src)
        episodes_buffer(src / "export-source.hdf5", 6, 20, overwrite=True)

    def run(self, out: Path) -> Ran:
        os.environ["MINARI_DATASETS_PATH"] = str(out)
        argv = ["export", "minari", str(self.src / "export-source.hdf5")]
        argv += ["--dataset-id", "faults/box-v0", "--no-progress"]
        return run_cli(argv, out / "faults")

    def check(self, out: Path, ran: Ran) -> list[str]:
        target = out / "faults" / "box-v0"
        if ran.kind != "ok":
            return [f"{target}: present after a failed run"] if target.exists() else []
        try:
            import minari

            os.environ["MINARI_DATASETS_PATH"] = str(out)
            ds = minari.load_dataset("faults/box-v0")
            n = ds.total_episodes
        except Exception as e:
            return [f"{target}: does not load ({type(e).__name__}: {e})"]
        return [] if n == 6 else [f"{target}: {n} episodes, expected 6"]


class Repack(OneFile):
    name = "repack"
    final = "repacked.hdf5"

    def prepare(self, src: Path) -> None:
        super().prepare(src)
        episodes_buffer(src / "repack-source.hdf5", 20, 50, compression="gzip", overwrite=True)

    def run(self, out: Path) -> Ran:
        argv = ["repack", str(self.src / "repack-source.hdf5"), str(out / self.final)]
        return run_cli([*argv, "--no-progress"], out / self.final)

    def complete(self, path: Path) -> bool:
        return buffer_ok(path, 20 * 50)


class Grid(Writer):
    """A grid cell (checkpoints, policy, result) and the grid's report."""

    name = "grid"

    def prepare(self, src: Path) -> None:
        super().prepare(src)
        import gymnasium as gym
        import numpy as np

        from tianshou_offline.data.writer import BufferWriter

        rng = np.random.default_rng(2)
        env = gym.make("Pendulum-v1")
        with BufferWriter(
            src / "pendulum.hdf5",
            observation_space=env.observation_space,
            action_space=env.action_space,
            env_id="Pendulum-v1",
            overwrite=True,
        ) as w:
            for _ in range(2):
                n = 50
                trunc = np.zeros(n, bool)
                trunc[-1] = True
                w.add_episode(
                    obs=rng.uniform(-1, 1, (n, 3)).astype(np.float32),
                    act=rng.uniform(-2, 2, (n, 1)).astype(np.float32),
                    rew=rng.normal(size=n).astype(np.float32),
                    terminated=np.zeros(n, bool),
                    truncated=trunc,
                    obs_next=rng.uniform(-1, 1, (n, 3)).astype(np.float32),
                )

    def cell(self) -> Any:
        from tianshou_offline.scale.grid import Budget, Cell

        budget = Budget(epochs=2, steps_per_epoch=3, batch_size=8, test_episodes=1,
                        eval_episodes=1)  # fmt: skip
        return Cell(
            algorithm="il",
            dataset=str(self.src / "pendulum.hdf5"),
            seed=0,
            overrides={"hidden_sizes": [8, 8]},
            budget=budget,
        )

    def run(self, out: Path) -> Ran:
        from tianshou_offline.scale.grid import run_cell, write_report

        def grid() -> None:
            result = run_cell(self.cell(), out)
            write_report([result], out)

        return run_api(grid)

    def check(self, out: Path, ran: Ran) -> list[str]:
        from tianshou_offline.scale.grid import cell_dir

        wrong: list[str] = []
        d = cell_dir(self.cell(), out)
        for p in sorted(out.rglob("*")):
            if p.name.startswith(".") or p.is_dir() or "events.out" in p.name:
                continue
            if p.suffix in (".json",) and not json_ok(p):
                wrong.append(f"{p.relative_to(out)}: not JSON")
            elif p.suffix == ".pt" and not torch_ok(p):
                wrong.append(f"{p.relative_to(out)}: torch.load fails")
            elif p.suffix in (".md", ".csv") and not p.read_text().strip():
                wrong.append(f"{p.relative_to(out)}: empty")
        if ran.kind == "ok" and not (d / "result.json").is_file():
            wrong.append("result.json missing after a finished run")
        return wrong


class Checkpoint(OneFile):
    name = "checkpoint"
    final = "policy.pt"

    def run(self, out: Path) -> Ran:
        import gymnasium as gym
        from tianshou.utils.net.common import Net

        from tianshou_offline.recording.policies import save_policy_checkpoint

        net = Net(state_shape=(4,), action_shape=2, hidden_sizes=[256, 256])
        return run_api(
            lambda: save_policy_checkpoint(
                out / self.final,
                net,
                state_shape=(4,),
                action_space=gym.spaces.Discrete(2),
                hidden_sizes=[256, 256],
            )
        )

    def complete(self, path: Path) -> bool:
        from tianshou_offline.recording.policies import read_policy_state_dict

        return loads(read_policy_state_dict, path)


class DTCheckpoint(Checkpoint):
    """A Decision Transformer's replayable checkpoint (network, target return, context,
    observation statistics)."""

    name = "DT checkpoint"

    def run(self, out: Path) -> Ran:
        import gymnasium as gym
        import numpy as np

        import tianshou_offline.algorithms as A
        from tianshou_offline.recording.policies import save_policy_checkpoint

        env = gym.make("Pendulum-v1")
        model = A.DecisionTransformerNet(
            state_encoder=A.state_encoder(env.observation_space, 64), act_dim=1,
            discrete=False, hidden=64, layers=2, heads=2, context=8, max_timestep=200,
        )  # fmt: skip
        policy = A.ContinuousDTPolicy(
            model=model, action_space=env.action_space, observation_space=env.observation_space,
            target_return=-200.0, rtg_scale=100.0, normalize_obs=True,
        )  # fmt: skip
        policy.obs_normalizer.fit(np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32))
        return run_api(lambda: save_policy_checkpoint(out / self.final, policy))

    def complete(self, path: Path) -> bool:
        from tianshou_offline.recording.dt_policies import load_dt_policy

        return loads(load_dt_policy, path)


class TrainingCheckpoint(Writer):
    """A training run's ``last.pt`` (``tianshou_offline.training``: an algorithm with its
    optimizer, the generators, the counters and a fine-tuning run's online buffer) written
    over the previous epoch's: after a failure the previous checkpoint is there, unchanged."""

    name = "training checkpoint"
    final = "last.pt"

    def save(self, path: Path, epoch: int) -> None:
        from tianshou_offline.training import save_training_checkpoint

        algorithm, online = self.state(epoch)
        save_training_checkpoint(
            path, algorithm, epoch=epoch, env_step=100 * epoch, gradient_step=10 * epoch,
            extra={"online_buffer": online},
        )  # fmt: skip

    @functools.cache  # noqa: B019  (two states per writer, made once)
    def state(self, epoch: int) -> tuple[Any, dict[str, Any]]:
        """An algorithm-like module (a network and its Adam state) and an online buffer's
        state (300 rows), different for each ``epoch``."""
        import numpy as np
        import torch
        from tianshou.data import Batch, ReplayBuffer

        from tianshou_offline.training import replay_buffer_state

        torch.manual_seed(epoch)
        net = torch.nn.Sequential(torch.nn.Linear(4, 256), torch.nn.Linear(256, 256))
        optim = torch.optim.Adam(net.parameters())
        net(torch.ones(2, 4)).sum().backward()
        optim.step()

        class Algorithm(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def state_dict(self, *args: Any, **kwargs: Any) -> Any:
                return {"net": net.state_dict(), "optim": optim.state_dict()}

        online = ReplayBuffer(500)
        rng = np.random.default_rng(epoch)
        for i in range(300):
            online.add(Batch(obs=rng.normal(size=(1, 4)), act=rng.normal(size=(1, 2)),
                             rew=[1.0], terminated=[i % 50 == 49], truncated=[False],
                             obs_next=rng.normal(size=(1, 4)), info=[{}]))  # fmt: skip
        return Algorithm(), replay_buffer_state(online)

    def before(self, out: Path) -> None:
        self.save(out / self.final, 1)
        self.previous = hashlib.sha256((out / self.final).read_bytes()).hexdigest()

    def run(self, out: Path) -> Ran:
        return run_api(lambda: self.save(out / self.final, 2))

    def check(self, out: Path, ran: Ran) -> list[str]:
        from tianshou_offline.training import read_training_checkpoint

        p = out / self.final
        if not p.is_file():
            return [f"{p.name}: the previous checkpoint is gone"]
        if ran.kind != "ok":
            same = hashlib.sha256(p.read_bytes()).hexdigest() == self.previous
            return [] if same else [f"{p.name}: not the previous checkpoint after a failure"]
        state = read_training_checkpoint(p)
        if state is None or state["epoch"] != 2 or "online_buffer" not in state["extra"]:
            return [f"{p.name}: published but incomplete"]
        return []


_ALL: tuple[type[Writer], ...] = (
    *CONVERTERS.values(), Writer_, Recorder, MakeDatasets, ExportMinari, Repack, Grid,
    Checkpoint, DTCheckpoint, TrainingCheckpoint,
)  # fmt: skip
WRITERS: dict[str, type[Writer]] = {w.name: w for w in _ALL}
