"""Rendering ``docs/reproduction.md`` from the measurements of :mod:`app.training.reproduce`.

Every number in the document comes from the measurements passed in; the only fixed figures are the
paper's own, quoted as such.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

__all__ = ["PAPER_FIGURES", "render_report"]

PAPER_FIGURES = {
    "linear": "98% less prediction time for a linear ResNet34 on MNIST, collapsed to one affine map",
    "skips": "22–46% less prediction time once the annealed skips are removed from a nonlinear ResNet34",
}
"""What Joyce & Verschelde (CASC 2024, arXiv 2408.07815) report, as quoted in foldserve's design."""


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _saving(fast: float, slow: float) -> str:
    return f"{_pct(1 - fast / slow)} ({slow / fast:.1f}x)"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g}"


def _models_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| model | network | simplification | test accuracy original | simplified | agreement | max abs logit gap "
        "| parameters original → simplified | MACs per image original → simplified | trained on |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        a, s, t = r["architecture"], r["simplification"], r["training"] or {}
        extra = t.get("extra", {})
        lines.append(
            f"| `{r['name']}` | ResNet{a['depth']}, width {a['width']}, {a['activation']}, {a['skips']} skips "
            f"| {s['kind']} | {_pct(r['accuracy_original'])} | {_pct(r['accuracy_simplified'])} "
            f"| {_pct(r['agreement'])} | {r['max_abs_logit_difference']:.2g} "
            f"| {s['params_before']:,} → {s['params_after']:,} | {s['macs_before']:,} → {s['macs_after']:,} "
            f"| {extra.get('device', '?')}, {t.get('epochs', '?')} epochs, {extra.get('train_seconds', '?')} s |"
        )
    return lines


def _latency_table(results: list[dict[str, Any]], where: str) -> list[str]:
    batches = sorted(next(iter(results[0]["latency"][where].values())))
    head = " | ".join(f"batch {b} (ms)" for b in batches)
    lines = [f"| model | variant | {head} | time saved vs original, batch 1 | batch 64 |"]
    lines.append("|---|---|" + "---|" * len(batches) + "---|---|")
    for r in results:
        variants = r["latency"][where]
        original = variants["original"]
        for variant, by_batch in variants.items():
            cells = " | ".join(_ms(by_batch[b]) for b in batches)
            saved = ["—", "—"]
            if variant != "original":
                saved = [_saving(by_batch[b], original[b]) if b in by_batch else "—" for b in (1, 64)]
            lines.append(f"| `{r['name']}` | {variant} | {cells} | {saved[0]} | {saved[1]} |")
    return lines


def _claims(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| claim | paper | here (CPU; batch 1, batch 64) |", "|---|---|---|"]
    for r in results:
        cpu = r["latency"]["cpu"]
        simplified = next(v for k, v in cpu.items() if k.startswith("simplified"))
        ours = ", ".join(_saving(simplified[b], cpu["original"][b]) for b in (1, 64))
        kind = r["simplification"]["kind"]
        if kind == "affine":
            lines.append(
                f"| linear ResNet collapses to one affine map | {PAPER_FIGURES['linear']} | `{r['name']}`: {ours} |"
            )
        elif kind == "skips-stripped":
            kept = cpu["batch norm folded, skips kept"]
            skips_only = ", ".join(_saving(simplified[b], kept[b]) for b in (1, 64))
            lines.append(
                f"| removing annealed skips | {PAPER_FIGURES['skips']} | `{r['name']}`: skips alone (folded network "
                f"with vs without skips) {skips_only}; batch norm folding and skips together {ours} |"
            )
        else:
            lines.append(f"| (baseline) batch norm folded only | — | `{r['name']}`: {ours} |")
    return lines


def _networks(results: list[dict[str, Any]]) -> str:
    kinds = sorted({f"width-{r['architecture']['width']} ResNet{r['architecture']['depth']}s" for r in results})
    return " and ".join(kinds)


def _sweep_section(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["No sweep results yet: run `python -m app reproduce --sweep`."]
    by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_label[row["label"]].append(row)
    first = rows[0]
    seeds = ", ".join(str(r["seed"]) for r in by_label[first["label"]])
    lines = [
        f"Every point trains `annealed-resnet18-mnist`'s recipe at width {first['width']} for {first['epochs']} "
        f"epochs on {first.get('train_size', '?')} training digits (tested on {first.get('test_size', '?')}; "
        "the first digits of the same seeded permutation, split the same way; fewer, to keep the sweep cheap), "
        f"once per seed ({seeds}), "
        f"on {first['device']}. `t0` is the fraction of the run at which the skip weight reaches 0; from "
        "there on it is exactly 0. `t0 = 0` trains a plain CNN from the start; `t0 = 1` reaches 0 only at the "
        "last step, so batch-norm statistics were gathered with nonzero skips.",
        "",
        "| schedule | final test accuracy per seed | mean | mean of best epoch | final train loss (mean) |",
        "|---|---|---|---|---|",
    ]
    means = {}
    for label, group in by_label.items():
        accs = [r["test_accuracy"] for r in group]
        means[label] = sum(accs) / len(accs)
        best = sum(r["best_test_accuracy"] for r in group) / len(group)
        loss = sum(r["final_train_loss"] for r in group) / len(group)
        lines.append(
            f"| {label} | {', '.join(_pct(a) for a in accs)} | {_pct(means[label])} | {_pct(best)} | {loss:.4f} |"
        )
    annealed = {k: v for k, v in means.items() if k not in ("standard skips", "plain CNN (t0 = 0)")}
    spread = max(max(r["test_accuracy"] for r in g) - min(r["test_accuracy"] for r in g) for g in by_label.values())
    if annealed:
        top = max(annealed, key=lambda k: annealed[k])
        lines += [
            "",
            f"Best annealed schedule here: **{top}** ({_pct(annealed[top])} mean), against "
            f"{_pct(means.get('plain CNN (t0 = 0)', float('nan')))} for the plain CNN and "
            f"{_pct(means.get('standard skips', float('nan')))} with standard skips that are never removed. "
            f"With {len(by_label[top])} seeds and {rows[0]['epochs']} epochs this is a coarse look: the seeds of a "
            f"single point differ by up to {100 * spread:.1f} percentage points, so smaller differences between "
            "points are not resolved.",
        ]
    return [*lines, "", "![t0 sweep](img/sweep.png)"]


def render_report(results: list[dict[str, Any]], sweep: list[dict[str, Any]], machine: dict[str, Any]) -> str:
    """The whole of ``docs/reproduction.md``."""
    data = (results[0]["training"] or {}).get("dataset", "?")
    split = (results[0]["training"] or {}).get("split", "?")
    lines = [
        "# Reproducing Joyce & Verschelde (CASC 2024)",
        "",
        "Generated by `python -m app reproduce` (add `--sweep` to rerun the schedule sweep) from the models in "
        "`model_store/`; do not edit by hand. Raw numbers: [`img/reproduction.json`](img/reproduction.json), "
        "[`img/sweep.json`](img/sweep.json).",
        "",
        f"Measured on: CPU {machine['cpu']} ({machine.get('cores', '?')} cores, load average "
        f"{machine.get('load') or 0:.1f} when measuring started), latency at **{machine['threads']} thread(s)**"
        + (f"; GPU {machine['gpu']}" if machine["gpu"] else "")
        + f"; torch {machine['torch']}. Latency is the median of many timed calls after warm-up "
        "(`app.benchmark.compare_forward`: the variants of a model are timed in interleaved rounds, so load "
        "changes fall on all of them alike), float32, eval mode.",
        "",
        f"Data: {data}; {split}. Test accuracies below are on that held-out test set.",
        "",
        "## The paper's claims, side by side",
        "",
        *_claims(results),
        "",
        f"The paper measures a full-width ResNet34; the models here are {_networks(results)} (the ResNet34 "
        "presets, `linear-resnet34-mnist-paper`, `annealed-resnet34-mnist-paper` and `resnet34-mnist-paper`, "
        "train the paper's size on demand). Size, depth and hardware all move these ratios, so the percentages "
        "are not expected to match the paper's; the direction of each effect and the exactness of the "
        "simplified networks (agreement and logit gap below) are what is checked here.",
        "",
        "## Accuracy and cost of each model",
        "",
        *_models_table(results),
        "",
        "## Latency on the CPU",
        "",
        *_latency_table(results, "cpu"),
        "",
        "![latency on the CPU](img/latency_cpu.png)",
        "",
    ]
    if "cuda" in results[0]["latency"]:
        lines += [
            "## Latency on the GPU",
            "",
            *_latency_table(results, "cuda"),
            "",
            "![latency on the GPU](img/latency_cuda.png)",
            "",
        ]
    lines += [
        "## Training curves",
        "",
        "Train and test loss (log scale), test accuracy, and the skip weight at the end of each epoch (it is "
        "updated every step; annealed models only, 1 elsewhere).",
        "",
        "![training curves](img/training.png)",
        "",
        "## Beyond the paper: when should the skips be gone?",
        "",
        "The paper anneals the skip weight to 0 at a time `t0` but leaves open how to choose `t0` and the shape "
        "of the fall. A small sweep:",
        "",
        *_sweep_section(sweep),
        "",
    ]
    return "\n".join(lines)
