"""The table of outcomes per entry point (:class:`Summary`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from benchmarks._lib.fuzz.entries import ENTRY_POINTS
from benchmarks._lib.fuzz.outcomes import FAILURES, OUTCOMES
from benchmarks._lib.fuzz.pool import ALLOCATION_REFUSED, Result


@dataclass
class Summary:
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    failures: list[Result] = field(default_factory=list)
    slowest: list[Result] = field(default_factory=list)
    peak: list[Result] = field(default_factory=list)
    mutants: set[int] = field(default_factory=set)
    refused: list[Result] = field(default_factory=list)
    """typed errors after an allocation was refused at every probe (see
    :func:`_probe_refusal`)."""

    def add(self, r: Result) -> None:
        self.counts.setdefault(r.job.entry, Counter())[r.outcome] += 1
        if r.detail.startswith(ALLOCATION_REFUSED):
            self.refused.append(r)
        self.mutants.add(r.job.mutant)
        if r.outcome in FAILURES:
            self.failures.append(r)
        self.slowest = sorted([*self.slowest, r], key=lambda x: -x.seconds)[:10]
        self.peak = sorted([*self.peak, r], key=lambda x: -x.peak_mb)[:5]

    def table(self) -> str:
        cols = OUTCOMES
        lines = [
            "| entry point | runs | " + " | ".join(cols) + " |",
            "|---|---:|" + "---:|" * len(cols),
        ]
        total: Counter[str] = Counter()
        for entry in ENTRY_POINTS:
            c = self.counts.get(entry)
            if not c:
                continue
            total.update(c)
            lines.append(
                f"| {entry} | {sum(c.values())} | " + " | ".join(str(c[o]) for o in cols) + " |"
            )
        lines.append(
            f"| **all** | {sum(total.values())} | " + " | ".join(str(total[o]) for o in cols) + " |"
        )
        return "\n".join(lines)

    def report(self, max_failures: int = 40) -> str:
        out = [self.table(), ""]
        if self.refused:
            out.append(
                f"{len(self.refused)} typed errors came after an allocation sized by a corrupt "
                f"field was refused at every probe (no memory used), e.g. "
                f"{self.refused[0].job.seed}#{self.refused[0].job.mutant}: "
                f"{self.refused[0].detail[len(ALLOCATION_REFUSED) :][:240]}"
            )
        out.append("slowest runs:")
        for r in self.slowest:
            out.append(
                f"  {r.seconds:7.2f} s {r.peak_mb:7.1f} MB  {r.job.entry:<17} {r.outcome:<8} "
                f"{r.job.seed}#{r.job.mutant}: {r.job.description[:90]}"
            )
        out.append("largest peak memory:")
        for r in self.peak:
            out.append(
                f"  {r.peak_mb:7.1f} MB {r.seconds:7.2f} s  {r.job.entry:<17} {r.outcome:<8} "
                f"{r.job.seed}#{r.job.mutant}: {r.job.description[:90]}"
            )
        if self.failures:
            out.append(f"failures ({len(self.failures)}):")
            groups: dict[str, list[Result]] = {}
            for r in self.failures:
                key = f"{r.job.entry} {r.outcome} {r.detail.split(':')[0]} {r.detail.split('[')[-1][:80]}"
                groups.setdefault(key, []).append(r)
            for _key, rs in sorted(groups.items(), key=lambda kv: -len(kv[1]))[:max_failures]:
                r = rs[0]
                out.append(
                    f"  {len(rs):5d} x {r.job.entry} {r.outcome}: {r.detail[:300]}\n"
                    f"          e.g. {r.job.seed}#{r.job.mutant}: {r.job.description[:150]}"
                )
        return "\n".join(out)
