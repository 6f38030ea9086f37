"""Mutation check of the reference tests: each one-line mutation of an algorithm's update
(a target network replaced by the online one, a clip deleted, a Polyak factor changed, …)
must make at least one of the reference tests that guard it fail.

A mutation replaces one exact snippet in the source of one method (or function) *in memory*:
the method is recompiled from its mutated source in its module's namespace and set on its
class (module) for the duration of the run; files are never written. The guarding tests then
run in this process (``pytest.main``); a mutation whose tests all pass *survives*.

Usage (from the repository root)::

    python -m tests.helpers.mutate_updates              # every mutation; exit 1 if any survives
    python -m tests.helpers.mutate_updates --list       # the mutations' names
    python -m tests.helpers.mutate_updates --only td3-noise-clip-deleted iql-q-hat-online

``tests/algorithms/test_mutations.py::test_mutation_script_kills_mutations`` runs a few of
them so that the script keeps working.
"""

from __future__ import annotations
import __future__

import argparse
import importlib
import inspect
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

ALGORITHMS = "tests/algorithms"
FINETUNE = "tests/algorithms/test_finetune.py"
FQE_TESTS = "tests/evaluation/test_fqe.py"


@dataclass(frozen=True)
class Mutation:
    """One snippet replaced in one method.

    :ivar name: a short id (``--only``).
    :ivar target: ``"module:Class.method"`` or ``"module:function"``.
    :ivar old: the exact snippet (it must occur exactly once in the source).
    :ivar new: what replaces it.
    :ivar tests: pytest node ids (relative to the repository root) that must catch it.
    """

    name: str
    target: str
    old: str
    new: str
    tests: tuple[str, ...]


def _m(name: str, target: str, old: str, new: str, *tests: str) -> Mutation:
    return Mutation(name, target, old, new, tests)


_CONT = "tianshou_offline.algorithms.continuous"
_DISC = "tianshou_offline.algorithms.discrete"
_TD3BC = f"{ALGORITHMS}/test_td3bc.py::test_td3bc_matches_the_paper"
_REBRAC = f"{ALGORITHMS}/test_rebrac.py::test_rebrac_matches_the_paper"
_IQL = f"{ALGORITHMS}/test_iql.py::test_iql_matches_the_paper"
_CQL = f"{ALGORITHMS}/test_cql.py::test_cql_matches_the_paper"
_CALQL = f"{FINETUNE}::test_calql_term_matches_the_paper"
_BCQ = f"{ALGORITHMS}/test_bcq.py::test_bcq_matches_algorithm_1"
_CRR = f"{ALGORITHMS}/test_crr.py::test_crr_matches_the_paper"
_DCQL = f"{ALGORITHMS}/test_cql.py::test_discrete_cql_matches_qr_dqn_and_cql_h"
_DBCQ = f"{ALGORITHMS}/test_bcq.py::test_discrete_bcq_matches_the_paper"
_DCRR = f"{ALGORITHMS}/test_crr.py::test_discrete_crr_matches_the_paper"
_FQE = f"{FQE_TESTS}::test_fqe_update_matches_algorithm_3"
_DFQE = "tests/evaluation/test_fqe_discrete.py::test_discrete_fqe_update_matches_algorithm_3"
_ENSEMBLES = "tests/algorithms/test_ensembles.py"
_SACN = f"{_ENSEMBLES}::test_sacn_and_edac_match_the_paper"
_AWAC = f"{ALGORITHMS}/test_awac.py::test_awac_matches_the_paper"
_LBSAC = f"{_ENSEMBLES}::test_lbsac_scales_the_learning_rate_and_averages_the_members"
_DT = "tianshou_offline.algorithms.dt"
_DT_TESTS = "tests/algorithms/test_dt.py"
_DT_LOSS = f"{_DT_TESTS}::test_dt_loss_on_padded_segments"
_DT_CAUSAL = f"{_DT_TESTS}::test_predictions_see_only_the_past"
_DT_SEGMENTS = f"{_DT_TESTS}::test_segments_match_a_loop_over_episodes"
_DT_POLICY = f"{_DT_TESTS}::test_policy_context_follows_the_episode"

_TD3 = f"{_CONT}.td3_bc:TD3Base"

MUTATIONS: tuple[Mutation, ...] = (
    # TD3's step, shared by TD3+BC and ReBRAC (TD3Base): both tests guard it
    _m("td3-target-critics-online", f"{_TD3}._update_with_batch",
       "self.critics_target(b.obs_next, act_next)", "self.critics(b.obs_next, act_next)",
       _TD3BC, _REBRAC),
    _m("td3-polyak-hard", f"{_TD3}._update_with_batch",
       "self._update_targets(self.tau)", "self._update_targets(1.0)", _TD3BC, _REBRAC),
    # TD3's target-policy smoothing, shared by TD3+BC and ReBRAC (TD3Base): both tests guard it
    *(
        _m(name, f"{_TD3}.smoothed_target_action", old, new, _TD3BC, _REBRAC)
        for name, old, new in (
            ("td3-target-actor-online", "self.actor_target(obs_next)", "self.policy.actor(obs_next)"),
            ("td3-noise-clip-deleted", "-self.noise_clip, self.noise_clip", "-1e9, 1e9"),
            ("td3-action-clamp-deleted", "+ noise).clamp(-1.0, 1.0)", "+ noise)"),
        )
    ),
    _m("rebrac-penalty-dataset-action", f"{_CONT}.rebrac:ReBRAC._td_target",
       "(act_next - b.act_next)", "(act_next - b.act)", _REBRAC),
    _m("iql-q-hat-online", f"{_CONT}.iql:IQL._update_with_batch",
       "self.critics_target(b.obs, b.act)", "self.critics(b.obs, b.act)", _IQL),
    _m("iql-polyak-hard", f"{_CONT}.iql:IQL._update_with_batch",
       "self._update_targets(self.tau)", "self._update_targets(1.0)", _IQL),
    _m("iql-weight-clip-deleted", f"{_CONT}.iql:IQL._update_with_batch",
       ".clamp(max=self.max_weight)", "", _IQL),
    _m("cql-target-critics-online", f"{_CONT}.cql:CQL._update_with_batch",
       "self.critics_target(b.obs_next, act_n[:, 0])", "self.critics(b.obs_next, act_n[:, 0])",
       _CQL, _CALQL),
    _m("cql-polyak-hard", f"{_CONT}.cql:CQL._update_with_batch",
       "self._update_targets(self.tau)", "self._update_targets(1.0)", _CQL, _CALQL),
    _m("calql-lagrange-form-as-cql", f"{_CONT}.cql:CQL._update_with_batch",
       "self.cql_weight * (gap - self.lagrange_threshold)",
       "self.cql_weight * gap - self.lagrange_threshold", _CQL),
    _m("calql-bound-deleted", f"{_CONT}.cql:CQL._update_with_batch",
       "torch.maximum(q_prop[..., n:], bound)", "q_prop[..., n:]", _CALQL),
    _m("bcq-target-perturbation-online", f"{_CONT}.bcq:BCQ._update_with_batch",
       "self.perturbation_target(b.obs_next, act_next)", "perturbation(b.obs_next, act_next)",
       _BCQ),
    _m("bcq-target-critics-online", f"{_CONT}.bcq:BCQ._update_with_batch",
       "self.critics_target(b.obs_next, act_next)", "critics(b.obs_next, act_next)", _BCQ),
    _m("bcq-polyak-hard", f"{_CONT}.bcq:BCQ._update_with_batch",
       "self._update_targets(self.tau)", "self._update_targets(1.0)", _BCQ),
    _m("crr-target-actor-online", f"{_CONT}.crr:CRR._update_with_batch",
       "self.actor_target(b.obs_next)", "actor(b.obs_next)", _CRR),
    _m("crr-target-critics-online", f"{_CONT}.crr:CRR._update_with_batch",
       "self.critics_target(b.obs_next, act_next)", "self.critics(b.obs_next, act_next)", _CRR),
    _m("crr-polyak-hard", f"{_CONT}.crr:CRR._update_with_batch",
       "self._update_targets(self.tau)", "self._update_targets(1.0)", _CRR),
    _m("crr-sample-clip-deleted", f"{_CONT}.policies:gaussian_actions",
       "u.clamp(-1.0, 1.0)", "u", _CRR),
    _m("fqe-target-critics-online", f"{_CONT}.fqe:FQE._update_with_batch",
       "self.critics_target(b.obs_next, b.act_next)", "self.critics(b.obs_next, b.act_next)",
       _FQE),
    # the regression step's bookkeeping, shared by FQE and DiscreteFQE: both tests guard it
    _m("fqe-polyak-hard", "tianshou_offline.algorithms.fqe_core:FittedQEvaluation._regression_step",
       "self._update_targets(self.tau)", "self._update_targets(1.0)", _FQE, _DFQE),
    _m("sacn-target-critics-online", f"{_CONT}.sac_n:SACN._update_with_batch",
       "self.critics_target(b.obs_next, act_next)", "self.critics(b.obs_next, act_next)",
       _SACN),
    _m("sacn-polyak-hard", f"{_CONT}.sac_n:SACN._update_with_batch",
       "self._update_targets(self.tau)", "self._update_targets(1.0)", _SACN),
    _m("awac-target-critics-online", f"{_CONT}.awac:AWAC._update_with_batch",
       "self.critics_target(b.obs_next, act_next)", "self.critics(b.obs_next, act_next)",
       _AWAC),
    _m("awac-polyak-hard", f"{_CONT}.awac:AWAC._update_with_batch",
       "self._update_targets(self.tau)", "self._update_targets(1.0)", _AWAC),
    _m("awac-weight-clip-deleted", f"{_CONT}.awac:advantage_weights",
       "weight.clamp(max=max_weight)", "weight", _AWAC),
    _m("sacn-actor-min-over-two", f"{_CONT}.sac_n:SACN._update_with_batch",
       "q_pi_min = q_pi.min(dim=0).values", "q_pi_min = q_pi[:2].min(dim=0).values", _SACN),
    _m("sacn-target-min-over-two", f"{_CONT}.sac_n:SACN._update_with_batch",
       "self.critics_target(b.obs_next, act_next).min(dim=0)",
       "self.critics_target(b.obs_next, act_next)[:2].min(dim=0)", _SACN),
    _m("edac-gradients-unnormalised", f"{_CONT}.edac:ensemble_similarity",
       "grads / (grads.norm(dim=-1, keepdim=True) + eps)", "grads", _SACN),
    _m("edac-eta-dropped", f"{_CONT}.edac:EDAC._critic_regularizer",
       "return self.eta * es, es", "return es, es", _SACN),
    _m("awac-advantage-no-baseline", f"{_CONT}.awac:AWAC._update_with_batch",
       "adv = q_min[:, 0] - v", "adv = q_min[:, 0]", _AWAC),
    _m("awac-advantage-mean-over-critics", f"{_CONT}.awac:AWAC._update_with_batch",
       "q_min = q_both.min(dim=0).values", "q_min = q_both.mean(dim=0)", _AWAC),
    _m("awac-softmax-not-times-batch", f"{_CONT}.awac:advantage_weights",
       "torch.softmax(advantage / lam, dim=-1) * advantage.shape[-1]",
       "torch.softmax(advantage / lam, dim=-1)", _AWAC),
    _m("edac-self-pairs-included", f"{_CONT}.edac:ensemble_similarity",
       "g.sum(dim=-3).pow(2).sum(dim=-1) - g.pow(2).sum(dim=(-3, -1))",
       "g.sum(dim=-3).pow(2).sum(dim=-1)", _SACN),
    _m("edac-pairs-not-averaged", f"{_CONT}.edac:ensemble_similarity",
       "return pairs / (n - 1)", "return pairs", _SACN),
    _m("edac-first-order-only", f"{_CONT}.edac:EDAC._critic_regularizer",
       "create_graph=True", "create_graph=False", _SACN),
    _m("awac-temperature-dropped", f"{_CONT}.awac:advantage_weights",
       "weight = torch.exp(advantage / lam)", "weight = torch.exp(advantage)", _AWAC),
    _m("lbsac-members-summed", f"{_CONT}.sac_n:SACN._update_with_batch",
       "else per_member.mean()", "else per_member.sum()", _LBSAC),
    _m("lbsac-linear-lr-rule", f"{_CONT}.lb_sac:sqrt_scaled_lr",
       "math.sqrt(batch_size / base_batch_size)", "(batch_size / base_batch_size)", _LBSAC),
    _m("lbsac-alpha-lr-unscaled", f"{_CONT}.lb_sac:LBSAC.__init__",
       "alpha_optim=AdamOptimizerFactory(lr=lr)", "alpha_optim=AdamOptimizerFactory(lr=base_lr)",
       _LBSAC),
    _m("dt-mse-over-padding", f"{_DT}.algorithm:segment_loss",
       "(mse * weight).sum(dim=(-2, -1)) / weight.sum(dim=(-2, -1))",
       "mse.mean(dim=(-2, -1))", _DT_LOSS),
    _m("dt-cross-entropy-over-padding", f"{_DT}.algorithm:segment_loss",
       "(ce.view_as(weight) * weight).sum(dim=(-2, -1)) / weight.sum(dim=(-2, -1))",
       "ce.mean()", _DT_LOSS),
    _m("dt-padding-attended", f"{_DT}.model:DecisionTransformerNet.attention_mask",
       "causal.unsqueeze(0) & tokens.unsqueeze(1)",
       "causal.unsqueeze(0) & torch.ones_like(tokens).unsqueeze(1)", _DT_LOSS),
    _m("dt-attention-not-causal", f"{_DT}.model:DecisionTransformerNet.attention_mask",
       "dtype=torch.bool, device=mask.device).tril()", "dtype=torch.bool, device=mask.device)",
       _DT_CAUSAL),
    _m("dt-segment-crosses-episodes", f"{_DT}.segments:SegmentDataset.gather",
       "torch.clamp(self._remaining[pos], max=k)", "torch.full_like(pos, k)", _DT_SEGMENTS),
    _m("dt-segment-padding-rtg", f"{_DT}.segments:SegmentDataset.gather",
       "torch.where(mask, self._rtg[steps], 0.0)", "self._rtg[steps]", _DT_SEGMENTS),
    _m("dt-mse-summed-over-dimensions", f"{_DT}.algorithm:segment_loss",
       "mse = (pred - segments.act).pow(2).mean(dim=-1)",
       "mse = (pred - segments.act).pow(2).sum(dim=-1)",
       _DT_LOSS),
    _m("dt-segment-mask-shifted", f"{_DT}.segments:SegmentDataset.gather",
       "self._offsets.unsqueeze(0) >= pad.unsqueeze(1)",
       "self._offsets.unsqueeze(0) > pad.unsqueeze(1)", _DT_SEGMENTS),
    _m("dt-segment-padding-obs-kept", f"{_DT}.segments:SegmentDataset.gather",
       "obs = obs * mask.view(*mask.shape, *([1] * (obs.dim() - 2))).to(obs.dtype)",
       "obs = obs", _DT_SEGMENTS),
    _m("dt-segment-padding-timesteps", f"{_DT}.segments:SegmentDataset.gather",
       "torch.where(mask, self._t[steps], 0)", "self._t[steps]", _DT_SEGMENTS),
    _m("dt-segment-whole-episode-remaining", f"{_DT}.segments:SegmentDataset.from_buffer",
       "remaining = lengths[ep_sorted] - t[order]", "remaining = lengths[ep_sorted]",
       _DT_SEGMENTS),
    _m("dt-segment-episodes-out-of-order", f"{_DT}.segments:SegmentDataset.from_buffer",
       "np.lexsort((t, episode))", "np.lexsort((episode, t))", _DT_SEGMENTS),
    _m("dt-segment-rtg-discounted", f"{_DT}.segments:SegmentDataset.from_buffer",
       "return_to_go(buffer, 1.0)", "return_to_go(buffer, 0.99)", _DT_SEGMENTS),
    _m("dt-segment-rtg-unscaled", f"{_DT}.segments:SegmentDataset.from_buffer",
       "[rows[order]] / rtg_scale", "[rows[order]]", _DT_SEGMENTS),
    _m("dt-segment-timesteps-from-one", f"{_DT}.segments:episode_table",
       "t[cur] = step", "t[cur] = step + 1", _DT_SEGMENTS),
    _m("dt-rtg-not-lowered", f"{_DT}.algorithm:_ReturnConditioned.act_in_context",
       "rtg_prev - reward / self.rtg_scale", "rtg_prev", _DT_POLICY),
    _m("dt-timestep-not-advanced", f"{_DT}.algorithm:_ReturnConditioned.act_in_context",
       "np.asarray(ctx.t)[:, -1] + 1", "np.asarray(ctx.t)[:, -1]", _DT_POLICY),
    _m("discrete-fqe-target-online", f"{_DISC}.fqe:DiscreteFQE._update_with_batch",
       "self.model_target(b.obs_next)", "self.model(b.obs_next)", _DFQE),
    _m("discrete-cql-target-online", f"{_DISC}.cql:DiscreteCQL._update_with_batch",
       "self._target_for_step(self.model, self.model_target, self.target_update_freq)",
       "self.model", _DCQL),
    # the periodic target copy of DiscreteCQL and DiscreteCRR (the core's _target_for_step)
    _m("discrete-no-target-copy",
       "tianshou_offline.algorithms.core:OfflineAlgorithmCore._target_for_step",
       "self._copy_targets()", "pass", _DCQL, _DCRR),
    _m("discrete-bcq-target-online", f"{_DISC}.bcq:DiscreteBCQ._update_with_batch",
       "self.model_target(b.obs_next)", "self.model(b.obs_next)", _DBCQ),
    _m("discrete-bcq-no-target-copy", f"{_DISC}.bcq:DiscreteBCQ._update_with_batch",
       "self._copy_targets()", "pass", _DBCQ),
    _m("discrete-bcq-unconstrained-argmax", f"{_DISC}.bcq:DiscreteBCQ._update_with_batch",
       "constrained_argmax(q_next, allowed_next)", "q_next.argmax(dim=1)", _DBCQ),
    _m("discrete-crr-target-online", f"{_DISC}.crr:DiscreteCRR._update_with_batch",
       "self._target_for_step(self.net, self.net_target, self.target_update_freq)",
       "self.net", _DCRR),
)  # fmt: skip


class MutationError(RuntimeError):
    """A mutation does not apply (its snippet is missing or ambiguous)."""


def _resolve(target: str) -> tuple[Any, str, Any, list[Any]]:
    """``(owner, attribute, original, namespaces)``: where the mutated object is set, and the
    modules whose global of the same name must follow (a function imported by name)."""
    module_name, qualname = target.split(":")
    module = importlib.import_module(module_name)
    if "." in qualname:
        cls_name, attr = qualname.split(".")
        owner = getattr(module, cls_name)
        return owner, attr, owner.__dict__[attr], []
    original = getattr(module, qualname)
    users = [
        m
        for m in list(sys.modules.values())
        if m is not None
        and getattr(m, "__name__", "").startswith("tianshou_offline")
        and getattr(m, qualname, None) is original
    ]
    return module, qualname, original, users


def _compile(source: str, name: str, module: Any) -> Callable[..., Any]:
    """``source`` (a ``def``, dedented) compiled in a copy of ``module``'s namespace, with the
    ``__class__`` cell zero-argument ``super()`` needs."""
    wrapper = (
        "def __mutation_factory(__class__):\n"
        + textwrap.indent(source, "    ")
        + f"\n    return {name}\n"
    )
    namespace = dict(vars(module))
    flags = __future__.annotations.compiler_flag
    exec(compile(wrapper, f"<mutated {module.__name__}.{name}>", "exec", flags, True), namespace)
    factory: Callable[[Any], Callable[..., Any]] = namespace["__mutation_factory"]
    return factory


@contextmanager
def applied(mutation: Mutation) -> Iterator[None]:
    """The mutation in place for the duration of the block (restored afterwards)."""
    owner, attr, original, users = _resolve(mutation.target)
    source = textwrap.dedent(inspect.getsource(original))
    count = source.count(mutation.old)
    if count != 1:
        raise MutationError(
            f"{mutation.name}: {mutation.old!r} occurs {count} times in {mutation.target}; "
            "expected exactly once"
        )
    module = sys.modules[original.__module__]
    factory = _compile(source.replace(mutation.old, mutation.new), attr, module)
    mutated = factory(owner if isinstance(owner, type) else None)
    setattr(owner, attr, mutated)
    for user in users:
        setattr(user, attr, mutated)
    try:
        yield
    finally:
        setattr(owner, attr, original)
        for user in users:
            setattr(user, attr, original)


def _passes(tests: Sequence[str]) -> bool:
    args = [*tests, "-x", "-qq", "--tb=no", "-p", "no:cacheprovider", "-o", "addopts="]
    return pytest.main(args) == pytest.ExitCode.OK


def run(mutations: Sequence[Mutation], *, verbose: bool = False) -> list[str]:
    """Run each mutation's tests with the mutation applied; the names of the survivors.

    :raises RuntimeError: the tests fail without any mutation (nothing would be measured).
    """
    tests = sorted({t for m in mutations for t in m.tests})
    if not _passes(tests):
        raise RuntimeError(f"the reference tests fail without a mutation: {tests}")
    survivors: list[str] = []
    for mutation in mutations:
        with applied(mutation):
            survived = _passes(mutation.tests)
        if survived:
            survivors.append(mutation.name)
        if verbose:
            print(f"{'SURVIVED' if survived else 'killed  '}  {mutation.name}", flush=True)
    return survivors


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutations")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = parser.parse_args(argv)
    by_name = {m.name: m for m in MUTATIONS}
    if args.list:
        print("\n".join(by_name))
        return 0
    unknown = sorted(set(args.only or ()) - set(by_name))
    if unknown:
        parser.error(f"unknown mutation(s) {unknown}; see --list")
    chosen = [by_name[n] for n in args.only] if args.only else list(MUTATIONS)
    survivors = run(chosen, verbose=True)
    print(f"{len(chosen) - len(survivors)}/{len(chosen)} mutations killed")
    return 1 if survivors else 0


if __name__ == "__main__":
    raise SystemExit(main())
