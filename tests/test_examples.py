"""Every example script's flags and its answer to bad input.

The flags: one typed definition (``tianshou_offline.cli.example_args``), Tianshou's names in
both spellings and with their aliases, unknown flags and abbreviations an error.

Bad input — a missing file or D4RL name, a text file, data whose sizes do not fit the env, an
unknown env id, discrete data for a continuous script, a checkpoint that is not one — makes
every script print exactly one ``error: ...`` line to stderr and exit with code 2, with no
traceback and no log or cache directory left behind. All cases run in one driver process
(each script executed as ``__main__`` with :func:`runpy.run_path`, as ``python script.py``
runs it), so imports are paid once; a few cases also run as real processes.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import gymnasium as gym
import pytest

from tests.helpers.examples import import_example
from tianshou_offline.algorithms import make_config
from tianshou_offline.cli.example_args import (
    AtariConfig,
    ExampleConfig,
    MujocoConfig,
    arg,
    config_dict,
    field_docs,
    iter_flags,
    make_parser,
    parse_config,
    training_progress,
)

ROOT = Path(__file__).resolve().parents[1]
MUJOCO = [
    "d4rl_il",
    "d4rl_bcq",
    "d4rl_cql",
    "d4rl_crr",
    "d4rl_td3_bc",
    "d4rl_iql",
    "d4rl_rebrac",
    "d4rl_sac_n",
    "d4rl_edac",
    "d4rl_lb_sac",
    "d4rl_awac",
    "d4rl_dt",
]
ATARI = ["atari_il", "atari_bcq", "atari_cql", "atari_crr", "atari_dt"]
HAS_ALE = bool(__import__("importlib.util").util.find_spec("ale_py"))


def _script(name: str) -> Path:
    return ROOT / "examples" / ("mujoco" if name.startswith("d4rl") else "atari") / f"{name}.py"


# ------------------------------------------------------------------------------------ flags


@dataclass(kw_only=True)
class _Demo(MujocoConfig):
    """A script's config as the examples declare them."""

    algorithm: ClassVar[str | None] = "td3bc"

    weight: float = 2.5
    """weight of the Q term"""
    subproc_envs: bool = True
    mode: Literal["exp", "binary"] = "exp"
    """advantage weighting"""
    sizes: list[int] = field(default_factory=lambda: [7, 8])
    """widths"""
    steps: int = arg(3, aliases=("num-steps",))
    """steps"""


def test_both_spellings_and_aliases_parse_to_the_same_config() -> None:
    dash = parse_config(
        _Demo,
        ["--expert-data-task", "x.hdf5", "--step-per-epoch", "7", "--test-num", "3",
         "--hidden-sizes", "4", "5", "--num-steps", "9"],
        description="",
    )  # fmt: skip
    underscore = parse_config(
        _Demo,
        ["--expert_data_task", "x.hdf5", "--epoch_num_steps", "7", "--num_test_envs", "3",
         "--hidden_sizes", "4", "5", "--num_steps", "9"],
        description="",
    )  # fmt: skip
    alias = parse_config(
        _Demo,
        ["--expert-data-task", "x.hdf5", "--epoch-num-steps", "7", "--num-test-envs", "3",
         "--hidden-sizes", "4", "5", "--steps", "9"],
        description="",
    )  # fmt: skip
    assert dash == underscore == alias
    assert isinstance(dash, _Demo)
    assert (dash.step_per_epoch, dash.test_num, dash.steps) == (7, 3, 9)
    assert dash.algorithm_config().hyperparameters()["hidden_sizes"] == [4, 5]  # a config field
    # defaults: the subclass's own, a redeclared base default, fresh lists per config
    assert (dash.weight, dash.subproc_envs, dash.mode, dash.threads) == (2.5, True, "exp", 1)
    a, b = parse_config(_Demo, [], description=""), parse_config(_Demo, [], description="")
    assert a.sizes == [7, 8] and a.sizes is not b.sizes
    assert a.algorithm_config() == make_config("td3bc", "continuous", preset="mujoco")


def test_algorithm_flags_are_the_config_fields_under_both_names() -> None:
    """Every field of the algorithm's config is a flag (``--hidden-sizes``), under the name
    the examples used before too (``--norm-obs`` for ``normalize_obs``, ``--n-step`` for
    ``n_step_return_horizon``); 0/1 switches become bools."""
    old = parse_config(
        _Demo, ["--norm-obs", "0", "--n-step", "3", "--policy_noise", "0.1"], description=""
    )
    new = parse_config(
        _Demo,
        ["--normalize-obs", "0", "--n_step_return_horizon", "3", "--policy-noise", "0.1"],
        description="",
    )
    assert old == new
    assert old.algorithm_config() == make_config(
        "td3bc", "continuous", preset="mujoco", normalize_obs=False, n_step_return_horizon=3,
        policy_noise=0.1,
    )  # fmt: skip
    assert config_dict(old)["algo"]["normalize_obs"] is False  # args.json holds the settings


@dataclass(kw_only=True)
class _AtariDemo(AtariConfig):
    algorithm: ClassVar[str | None] = "cql"


def test_atari_flags_and_aliases() -> None:
    one = parse_config(
        _AtariDemo, ["--update_per_epoch", "5", "--load-buffer-name", "b.hdf5", "--scale-obs", "0"],
        description="",
    )  # fmt: skip
    two = parse_config(
        _AtariDemo, ["--epoch-num-steps", "5", "--load_buffer_name", "b.hdf5", "--scale_obs", "0"],
        description="",
    )  # fmt: skip
    assert one == two and one.update_per_epoch == 5
    settings = one.algorithm_config().hyperparameters()
    assert settings["hidden_sizes"] == [512] and settings["scale_obs"] is False
    assert one.threads is None and one.seed == 1626 and one.batch_size == 32  # the preset's


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--no-such-flag", "1"], "unrecognized arguments: --no-such-flag"),
        (["--expert-data", "x"], "unrecognized arguments: --expert-data"),  # an abbreviation
        (["--norm-obs", "2"], "invalid choice"),
        (["--epoch", "x"], "invalid int value"),
        (["--watch"], "--watch needs --resume-path"),
        (["--epoch", "0"], "--epoch must be at least 1"),
    ],
)
def test_bad_flags_are_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        parse_config(_Demo, argv, prog="demo.py", description="")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert [line for line in err.splitlines() if "error:" in line] == [
        line for line in err.splitlines() if line.startswith("demo.py: error:")
    ] and err.count("error:") == 1


def test_help_shows_each_default_once() -> None:
    for cls in (AtariConfig, MujocoConfig, _Demo):
        text = make_parser(cls, prog="x.py", description="").format_help()
        assert "(default: None)" not in text and "torch's)" not in text.replace(
            "torch's choice", ""
        )
        for line in text.splitlines():
            assert line.count("(default:") <= 1, line
    text = make_parser(_Demo, prog="x.py", description="").format_help()
    assert "--step-per-epoch STEP_PER_EPOCH, --epoch-num-steps STEP_PER_EPOCH" in text
    assert "--step_per_epoch" not in text  # underscore spellings are accepted, not listed
    assert "weight of the Q term (default: 2.5)" in text
    assert "--norm-obs {0,1}, --normalize-obs {0,1}" in text  # the old name listed first
    flat = " ".join(text.split())
    assert (
        "normalise observations with the data's mean and std (the paper's Eq. 5) (default: 1)"
        in flat
    )
    assert "The default, 1, suits" in text  # --threads documents its default


def test_every_field_has_help_and_both_spellings() -> None:
    for cls in (ExampleConfig, AtariConfig, MujocoConfig):
        docs = field_docs(cls)
        for name, flags in iter_flags(cls):
            assert docs.get(name), f"{cls.__name__}.{name} has no docstring"
            assert f"--{name.replace('_', '-')}" in flags and f"--{name}" in flags


def _load_script_module(name: str) -> Any:
    return import_example(_script(name).parent, name)


@pytest.mark.parametrize("name", MUJOCO)
def test_mujoco_scripts_keep_their_flags(name: str) -> None:
    module = _load_script_module(name)
    config = module.get_args(
        ["--expert_data_task", "x.hdf5", "--epoch-num-steps", "7", "--num_test_envs", "2"]
    )
    assert isinstance(config, MujocoConfig)
    assert (config.expert_data_task, config.step_per_epoch, config.test_num) == ("x.hdf5", 7, 2)
    expected_lr = {
        "d4rl_il": 1e-3,
        "d4rl_bcq": 1e-3,
        "d4rl_cql": 1e-4,
        "d4rl_rebrac": 1e-3,
        "d4rl_dt": 1e-4,
    }.get(name, 3e-4)
    normalized = name in ("d4rl_td3_bc", "d4rl_iql", "d4rl_dt")
    values = config.algorithm_config().hyperparameters()
    lr = values.get("actor_lr", values.get("lr", values.get("base_lr")))  # LB-SAC: base_lr
    assert lr == expected_lr
    assert values["normalize_obs"] == normalized
    with pytest.raises(SystemExit):
        module.get_args(["--expert-data", "x.hdf5"])  # abbreviations are errors


def test_sac_n_scripts_take_the_presets_settings_and_the_old_flags() -> None:
    """Issue 24: d4rl_sac_n.py (and EDAC's, LB-SAC's) had their own copy of the defaults
    (2 × 256 networks); now the mujoco preset's SACNConfig/EDACConfig/LBSACConfig (3 × 256,
    the papers' and CORL's), and the flags of the hand-written version still parse."""
    from tianshou_offline.algorithms.presets import preset_config

    for name, algo in (("d4rl_sac_n", "sacn"), ("d4rl_edac", "edac"), ("d4rl_lb_sac", "lbsac")):
        config = _load_script_module(name).get_args([])
        assert config.algorithm_config() == preset_config("mujoco", algo, "continuous")
    sacn = _load_script_module("d4rl_sac_n").get_args(
        ["--auto-alpha", "0", "--alpha", "0.2", "--norm-obs", "1", "--n-step", "1",
         "--backup-entropy", "0", "--alpha-lr", "1e-3", "--num-critics", "3"]
    ).algorithm_config()  # fmt: skip
    assert sacn.hyperparameters() | {
        "learn_alpha": False, "init_alpha": 0.2, "normalize_obs": True, "backup_entropy": False,
        "alpha_lr": 1e-3, "num_critics": 3,
    } == sacn.hyperparameters()  # fmt: skip
    lbsac = _load_script_module("d4rl_lb_sac")
    assert lbsac.get_args([]).batch_size == 10_000
    assert lbsac.get_args(["--batch-size", "512"]).algorithm_config().hyperparameters()[
        "batch_size"] == 512  # fmt: skip
    with pytest.warns(DeprecationWarning, match="--critic-lr is not used"):
        lbsac.get_args(["--critic-lr", "1e-3"])
    with pytest.raises(SystemExit):
        _load_script_module("d4rl_edac").get_args(["--num-critics", "1"])


def test_dt_scripts_take_the_presets_settings_and_the_old_flags() -> None:
    """Issue 24: d4rl_dt.py and atari_dt.py wrote their flags and defaults by hand; now they
    name the registry's "dt" (ContinuousDTConfig / DiscreteDTConfig at the mujoco / atari
    preset), with the defaults the scripts had, and every flag they took still parses: the
    unused ones with a DeprecationWarning, --greedy as --sample-actions 0. Checked to fail on
    the hand-written scripts (no algorithm config) and with the atari preset's DT row removed
    (atari_dt has no flags for it)."""
    from tianshou_offline.algorithms.presets import preset_config

    mujoco, atari = _load_script_module("d4rl_dt"), _load_script_module("atari_dt")
    paper = {"context": 20, "embed_dim": 128, "n_layers": 3, "n_heads": 1, "lr": 1e-4,
             "weight_decay": 1e-4, "warmup_steps": 10_000, "max_grad_norm": 0.25,
             "dropout": 0.1, "max_timestep": 1000, "target_return": 3600.0,
             "rtg_scale": 1000.0, "normalize_obs": True}  # fmt: skip
    config = mujoco.get_args([])
    assert config.algorithm_config() == preset_config("mujoco", "dt", "continuous")
    assert config.algorithm_config().hyperparameters().items() >= paper.items()
    assert config.batch_size == 64
    old = mujoco.get_args(["--actor-lr", "2e-4", "--norm-obs", "0"]).algorithm_config()
    assert (old.hyperparameters()["lr"], old.hyperparameters()["normalize_obs"]) == (2e-4, False)
    assert mujoco.get_args(["--lr", "2e-4", "--normalize-obs", "0"]).algorithm_config() == old
    for flag, value in (("--hidden-sizes", "32"), ("--gamma", "0.9"), ("--critic-lr", "1e-3"),
                        ("--n-step", "3"), ("--tau", "0.1")):  # fmt: skip
        with pytest.warns(DeprecationWarning, match=f"{flag} is not used"):
            assert mujoco.get_args([flag, value]).algorithm_config() == config.algorithm_config()
    for bad in (["--embed-dim", "10", "--n-heads", "3"], ["--context", "0"],
                ["--rtg-scale", "0"], ["--warmup-steps", "0"]):  # fmt: skip
        with pytest.raises(SystemExit):
            mujoco.get_args(bad)

    paper = {"context": 30, "embed_dim": 128, "n_layers": 6, "n_heads": 8, "lr": 6e-4,
             "weight_decay": 0.1, "warmup_steps": 1000, "max_grad_norm": 1.0, "dropout": 0.1,
             "max_timestep": 10_000, "target_return": 20.0, "rtg_scale": 1.0,
             "sample_actions": True}  # fmt: skip
    config = atari.get_args([])
    assert config.algorithm_config() == preset_config("atari", "dt", "discrete")
    assert config.algorithm_config().hyperparameters().items() >= paper.items()
    assert config.batch_size == 128
    with pytest.warns(DeprecationWarning, match="--greedy is deprecated"):
        greedy = atari.get_args(["--greedy"]).algorithm_config()
    assert greedy == atari.get_args(["--sample-actions", "0"]).algorithm_config()
    assert greedy.hyperparameters()["sample_actions"] is False
    for flag, value in (("--hidden-sizes", "32"), ("--scale-obs", "0")):
        with pytest.warns(DeprecationWarning, match=f"{flag} is not used"):
            assert atari.get_args([flag, value]).algorithm_config() == config.algorithm_config()
    assert atari.get_args(["--lr", "1e-3"]).algorithm_config().hyperparameters()["lr"] == 1e-3


# ------------------------------------------------------------------------------------ progress


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_progress_policy() -> None:
    logger, bar = training_progress(
        None, enabled=True, total_steps=10, desc="x", stream=_Stream(True)
    )
    assert logger is None and bar  # a terminal: Tianshou's tqdm bar
    assert training_progress(None, enabled=False, total_steps=10, desc="x")[1] is False
    pipe = _Stream(False)
    logger, bar = training_progress(
        None, enabled=True, total_steps=10, desc="il on X", stream=pipe, interval_s=0.0
    )
    assert not bar and logger is not None  # not a terminal: plain lines instead
    for step in range(1, 4):
        logger.log_update_data({"loss": 1.0}, step)
    text = pipe.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines[0] == "il on X: update 1/10"
    assert lines[-1].startswith("il on X: update 3/10 (30%)")
    # a line at the end of every epoch, the last one with the run's time (issue 23: the
    # quickstart showed the first update and then nothing)
    pipe = _Stream(False)
    logger, _ = training_progress(
        None, enabled=True, total_steps=4, desc="il on X", stream=pipe, interval_s=3600.0
    )
    assert logger is not None
    for step in range(1, 5):
        logger.log_update_data({"loss": 1.0}, step)
        if step % 2 == 0:
            logger.log_info_data({}, step // 2)
    lines = pipe.getvalue().splitlines()
    assert lines[0] == "il on X: update 1/4" and len(lines) == 3, lines
    assert lines[1].startswith("il on X: epoch 1: update 2/4 (50%)") and "left" in lines[1]
    assert lines[2].startswith("il on X: epoch 2: update 4/4 (100%)") and "done in" in lines[2]
    assert logger.restore_data() == (0, 0, 0)


# ------------------------------------------------------------------------------------ bad input

_DRIVER = r"""
import contextlib, io, json, os, runpy, sys, traceback
cases_path, results_path = sys.argv[1], sys.argv[2]
cases = json.loads(open(cases_path).read())
results = {}
for case in cases:
    script = case["script"]
    os.chdir(case["cwd"])
    sys.argv = [script, *case["argv"]]
    sys.path.insert(0, os.path.dirname(script))
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, int | None):
                print(e.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
            code = 1
    sys.path.remove(os.path.dirname(script))
    results[case["id"]] = {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
open(results_path, "w").write(json.dumps(results))
"""


def _random_episodes_file(path: Path, env_id: str, steps: int) -> Path:
    """A buffer file of random-action episodes of ``env_id`` (env id and spaces stored)."""
    from tianshou.data import Batch, ReplayBuffer

    from tianshou_offline import save_buffer

    env = gym.make(env_id)
    buffer = ReplayBuffer(steps)
    obs, _ = env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(steps):
        act = env.action_space.sample()
        nxt, rew, terminated, truncated, _ = env.step(act)
        buffer.add(
            Batch(obs=obs, act=act, rew=float(rew), terminated=terminated, truncated=truncated,
                  obs_next=nxt, info={})
        )  # fmt: skip
        obs = env.reset()[0] if terminated or truncated else nxt
    save_buffer(
        buffer,
        path,
        observation_space=env.observation_space,
        action_space=env.action_space,
        env_id=env_id,
    )
    return path


@dataclass
class _Case:
    id: str
    script: str
    argv: list[str]
    message: str
    """expected in the error line"""


def _bad_cases(data: Path) -> list[_Case]:
    """Every script × every bad input of its family."""
    missing, text = str(data / "missing.hdf5"), str(data / "text.hdf5")
    pendulum, cartpole = str(data / "pendulum.hdf5"), str(data / "cartpole.hdf5")
    cases: list[_Case] = []
    for name in MUJOCO:

        def add(kind: str, argv: list[str], message: str, name: str = name) -> None:
            cases.append(_Case(f"{name}-{kind}", name, argv, message))

        add("missing-file", ["--expert-data-task", missing], "no such file")
        add(
            "d4rl-not-downloaded", ["--expert-data-task", "halfcheetah-expert-v2"], "not downloaded"
        )
        add("unknown-d4rl-name", ["--expert-data-task", "hopper-medium-v9"], "hopper-medium-v9")
        add("text-file", ["--expert-data-task", text], "text.hdf5")
        add("sizes", ["--expert-data-task", pendulum, "--task", "MountainCarContinuous-v0"],
            "observations have 3 values")  # fmt: skip
        add("unknown-env", ["--expert-data-task", pendulum, "--task", "NoSuchEnv-v0"], "NoSuchEnv")
        add("env-version", ["--expert-data-task", pendulum, "--task", "Pendulum-v9"], "Pendulum-v9")
        add("discrete-data", ["--expert-data-task", cartpole], "Discrete(2)")
        add("missing-checkpoint", ["--expert-data-task", pendulum, "--resume-path", missing],
            "no such checkpoint")  # fmt: skip
        add("text-checkpoint", ["--expert-data-task", pendulum, "--resume-path", text],
            "not a weights checkpoint")  # fmt: skip
    if HAS_ALE:
        for name in ATARI:

            def add(kind: str, argv: list[str], message: str, name: str = name) -> None:
                cases.append(_Case(f"{name}-{kind}", name, argv, message))

            add("missing-file", ["--load-buffer-name", missing], "no such buffer file")
            add("text-file", ["--load-buffer-name", text], "text.hdf5")
            add("unknown-task", ["--task", "Pong-v9", "--load-buffer-name", pendulum], "Pong-v9")
            add("unknown-env", ["--task", "NoSuchEnv-v0"], "NoSuchEnv-v0")
            add("continuous-data", ["--load-buffer-name", pendulum], "observations have shape")
            add("cartpole-data", ["--load-buffer-name", cartpole], "observations have shape")
            add("missing-checkpoint", ["--watch", "--resume-path", missing], "no such checkpoint")
    return cases


@pytest.fixture(scope="module")
def data_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("data")
    (data / "text.hdf5").write_text("not a buffer, just some text\n")
    _random_episodes_file(data / "pendulum.hdf5", "Pendulum-v1", 400)
    _random_episodes_file(data / "cartpole.hdf5", "CartPole-v1", 200)
    return data


def _example_env(tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "D4RL_DATASET_DIR": str(tmp / "d4rl-downloads"),  # nothing downloaded there
        "MINARI_DATASETS_PATH": str(tmp / "minari-datasets"),
        "TIANSHOU_OFFLINE_DATA": str(tmp / "cache"),  # the default --data-dir
    }


@pytest.fixture(scope="module")
def bad_input_runs(
    data_files: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Run every bad case in one driver process; yields (work dir, results by case id)."""
    tmp = tmp_path_factory.mktemp("runs")
    cases = _bad_cases(data_files)
    payload = []
    for case in cases:
        cwd = tmp / case.id
        cwd.mkdir()
        payload.append(
            {"id": case.id, "script": str(_script(case.script)), "cwd": str(cwd),
             "argv": [*case.argv, "--logdir", str(cwd / "log"), "--test-num", "1"]}
        )  # fmt: skip
    (tmp / "cases.json").write_text(json.dumps(payload))
    subprocess.run(
        [sys.executable, "-c", _DRIVER, str(tmp / "cases.json"), str(tmp / "results.json")],
        cwd=tmp,
        env=_example_env(tmp),
        timeout=900,
        check=True,
    )
    yield tmp, json.loads((tmp / "results.json").read_text())


def _assert_one_error_line(code: int, stderr: str, message: str) -> None:
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert code == 2, stderr[-3000:]
    assert len(errors) == 1 and errors[0].startswith("error: "), stderr[-3000:]
    assert message in errors[0], errors[0]


@pytest.mark.parametrize("case", [c.id for c in _bad_cases(Path("/data"))], ids=lambda c: str(c))
def test_bad_input_is_one_error_line_and_leaves_nothing(
    case: str, bad_input_runs: tuple[Path, dict[str, Any]]
) -> None:
    tmp, results = bad_input_runs
    result = results[case]
    message = {c.id: c.message for c in _bad_cases(Path("/data"))}[case]
    _assert_one_error_line(result["code"], result["stderr"], message)
    left = sorted(p.name for p in (tmp / case).iterdir())
    assert left == [], f"left behind: {left}"  # no log directory, nothing in the cwd
    assert not (tmp / "cache").exists() or not any((tmp / "cache").rglob("*")), "cache dirs left"


@pytest.mark.parametrize(
    "script, argv, message",
    [
        ("d4rl_td3_bc", ["--expert-data-task", "missing.hdf5"], "no such file"),
        ("d4rl_il", ["--expert-data-task", "halfcheetah-medium-v2"], "not downloaded"),
        pytest.param(
            "atari_cql", ["--task", "Pong-v9"], "Pong-v9",
            marks=pytest.mark.skipif(not HAS_ALE, reason="ale-py"),
        ),
    ],
)  # fmt: skip
def test_bad_input_in_a_real_process(
    script: str, argv: list[str], message: str, tmp_path: Path
) -> None:
    p = subprocess.run(
        [sys.executable, str(_script(script)), *argv, "--logdir", str(tmp_path / "log")],
        cwd=tmp_path,
        env=_example_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    _assert_one_error_line(p.returncode, p.stderr, message)
    assert p.stdout == "" or "error" not in p.stdout
    assert sorted(x.name for x in tmp_path.iterdir()) == [], "left behind"
    assert "tensorflow" not in p.stderr.lower()  # TensorBoard used its stub, no TF logs


def test_training_progress_without_a_terminal_is_plain_lines(
    data_files: Path, tmp_path: Path
) -> None:
    """A short run with stderr piped (a log file): plain progress lines, no bar, no cursor
    escapes; the run's directory holds its checkpoints."""
    p = subprocess.run(
        [sys.executable, str(_script("d4rl_il")), "--expert-data-task",
         str(data_files / "pendulum.hdf5"), "--epoch", "1", "--step-per-epoch", "10",
         "--test-num", "1", "--hidden-sizes", "16", "--logdir", str(tmp_path / "log")],
        cwd=tmp_path,
        env=_example_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    assert "il on Pendulum-v1: update 1/10" in p.stderr.splitlines()
    assert "\r" not in p.stderr and "\x1b" not in p.stderr and "it/s" not in p.stderr
    assert "Final reward" in p.stdout
    assert len(list((tmp_path / "log").glob("Pendulum-v1/il/0/*/policy.pt"))) == 1
