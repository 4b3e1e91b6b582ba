"""The model card rendered: Markdown, and a self-contained HTML page with inline SVG loss curves.

Also the (metric, value, settings) rows of one evaluation that the TUI's eval screen shows. The
card itself (a dict) is core.eval.report.model_card's."""

from __future__ import annotations

import html
import math
from typing import Any


# --------------------------------------------------------------------------------- rendering

def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:.{digits}g}" if abs(v) >= 1 else f"{v:.{digits}f}".rstrip("0").rstrip(".")
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    s = float(s)
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.2f} h"


def _stage_rows(st: dict) -> list[tuple[str, str]]:
    p = st.get("preset") or {}
    arch = st.get("architecture") or {}
    data = p.get("data") or {}
    ft = p.get("finetune") or {}
    hw = st.get("hardware") or {}
    rows = [("run", st.get("run") or "-"), ("checkpoint", st["checkpoint"]), ("preset", st.get("preset_name") or "-")]
    if st.get("stage") == "finetune":
        rows += [("method", str(st["lineage"].get("method") or ft.get("method") or "-")),
                 ("data", str(ft.get("data") or "-")), ("base", str(st["lineage"].get("base") or "-"))]
    else:
        rows.append(("data", str(data.get("source") or "-")))
    if arch:
        rows.append(("architecture", f"{arch.get('n_layer')} layers, {arch.get('n_head')} heads, width "
                                     f"{arch.get('n_embd')}, context {arch.get('context_length')}, vocab "
                                     f"{arch.get('vocab_size')}"))
    rows += [("steps", _fmt(st.get("step"))), ("tokens seen", _fmt(st.get("tokens_seen"))),
             ("wall time", _duration(st.get("wall_s"))),
             ("hardware", ", ".join(str(v) for v in (hw.get("device_name") or hw.get("device"), hw.get("dtype"),
                                                      hw.get("host")) if v) or "-"),
             ("final train loss", _fmt(st.get("final_train_loss"))), ("final val loss", _fmt(st.get("final_val_loss")))]
    if st.get("missing"):
        rows.append(("note", "this checkpoint is no longer on disk"))
    return rows


def task_rows(task: str, r: dict) -> list[tuple[str, str, str]]:
    """(metric, value, settings) lines of one task result, as the card tables show them."""
    settings = r.get("settings") or {}
    sett = ", ".join(f"{k} {v}" for k, v in settings.items()
                     if v is not None and k not in ("target_delimiter", "fewshot_delimiter"))
    if task == "perplexity":
        return [("loss", _fmt(r.get("loss")), sett), ("perplexity", _fmt(r.get("perplexity")), ""),
                ("bits per byte", _fmt(r.get("bits_per_byte")), f"{_fmt(r.get('tokens'))} tokens")]
    if task == "choice":
        chance = _fmt(r.get("chance"))
        interval = f" [{_fmt(r.get('acc_ci_low'))}, {_fmt(r.get('acc_ci_high'))}]" if "acc_ci_low" in r else ""
        return [("acc", f"{_fmt(r.get('acc'))} ± {_fmt(r.get('acc_stderr'), 2)}{interval}", f"chance {chance}; {sett}"),
                ("acc_norm", f"{_fmt(r.get('acc_norm'))} ± {_fmt(r.get('acc_norm_stderr'), 2)}",
                 f"chance {chance}; n {_fmt(r.get('n'))}")]
    if task == "classify":
        rows = [("accuracy", f"{_fmt(r.get('accuracy'))}{_interval(r)}",
                 f"majority baseline {_fmt(r.get('majority_baseline'))}; {sett}"),
                ("macro F1", _fmt((r.get("macro") or {}).get("f1")), f"n {_fmt(r.get('n'))}")]
        bow = r.get("baseline_bow") or {}
        if bow:
            rows.append(("bag-of-words baseline", f"{_fmt(bow.get('accuracy'))}{_interval(bow)}",
                         f"logistic regression on {bow.get('features')} word counts, fit on {bow.get('n_train')} "
                         f"training examples"))
        return rows
    if task == "contamination":
        rows = [(f"dirty share {name}", f"{_fmt(c.get('dirty_share'))}{_interval(c)}",
                 f"{c.get('n_dirty')} of {c.get('n_checked')} examples share a {r.get('ngram')}-gram with the corpus"
                 + (f" ({c.get('n_too_short')} too short to check)" if c.get("n_too_short") else "")
                 + "".join(f"; e.g. \"{x['ngram']}\"" for x in (c.get("examples") or [])[:1]))
                for name, c in (r.get("sets") or {}).items()]
        corpus = r.get("corpus") or {}
        return rows + [("corpus", _fmt(corpus.get("distinct_ngrams")) + " n-grams",
                        f"{corpus.get('source')} of {corpus.get('run')}; {_fmt(corpus.get('documents'))} documents")]
    if task == "sensitivity":
        labels = {"kshot": "k-shot (0, 1, 3, 5)", "formats": "prompt formats", "position": "gold position (lettered)"}
        return [(f"acc over {labels[g]}", f"{_fmt(rg['min'])} .. {_fmt(rg['max'])}",
                 ", ".join(f"{k} {_fmt(v)}" for k, v in (r.get(g) or {}).items()) + f"; chance {_fmt(r.get('chance'))}")
                for g, rg in (r.get("ranges") or {}).items()]
    if task == "judge":
        return [("judge score", f"{_fmt(r.get('mean'))} [{_fmt(r.get('ci_low'))}, {_fmt(r.get('ci_high'))}]",
                 f"scale {r.get('scale')}; {r.get('n_scored')} scored, {r.get('n_unparseable')} unparseable, "
                 f"{r.get('n_failed')} failed; {sett}"),
                ("mean answer length", f"{_fmt(r.get('mean_answer_chars'))} chars", ""), *_judge_bias_rows(r)]
    if task == "pairwise":
        return [("win rate", f"{_fmt(r.get('win_rate'))} [{_fmt(r.get('ci_low'))}, {_fmt(r.get('ci_high'))}]",
                 f"vs {settings.get('compare_with', '-')}; {r.get('wins')} wins, {r.get('losses')} losses, "
                 f"{r.get('ties')} ties; both orders asked"),
                ("position consistency", _fmt(r.get("position_consistency")),
                 f"{r.get('n_unparseable')} unparseable, {r.get('n_failed')} failed"), *_judge_bias_rows(r)]
    if task == "compare":
        return paired_rows(r)
    return [(k, _fmt(v), "") for k, v in r.items() if isinstance(v, (int, float))]


def signed(v: Any) -> str:
    return f"{v:+.3f}" if isinstance(v, (int, float)) else "-"


def paired_rows(r: dict) -> list[tuple[str, str, str]]:
    """One row per task of a paired comparison: B - A with its interval, the verdict, p, both means."""
    a = (r.get("models") or {}).get("A") or {}
    return [(f"{task} B - A", f"{signed(t.get('difference'))} [{signed(t.get('ci_low'))}, {signed(t.get('ci_high'))}]",
             f"{t.get('verdict')}; p {_fmt(t.get('p_value'), 2)}; {t.get('metric')} A {_fmt(t.get('mean_a'), 3)} "
             f"vs B {_fmt(t.get('mean_b'), 3)} on the same {t.get('n')} examples; A = {a.get('checkpoint', '-')}")
            for task, t in (r.get("tasks") or {}).items()]




def _judge_bias_rows(r: dict) -> list[tuple[str, str, str]]:
    b = r.get("bias") or {}
    rows = []
    if "length_correlation" in b:
        c = b["length_correlation"]
        rows.append(("score-length correlation", _fmt(c.get("r")), f"Pearson r over {c.get('n')} scored answers"))
    if "sample_agreement" in b:
        a = b["sample_agreement"]
        rows.append(("two-sample agreement", _fmt(a.get("agreement")),
                     f"within {_fmt(a.get('tolerance'))} on {a.get('n')} answers scored twice"))
    if "flip" in b:
        f = b["flip"]
        rows.append(("flip rate", _fmt(f.get("flip_rate")), f"{f.get('n_flipped')} of {f.get('n')} pairs change "
                                                            f"verdict when the answers swap"))
    if "length_controlled" in b:
        lc = b["length_controlled"]
        rows.append(("length-controlled win rate", _fmt(lc.get("lc_win_rate")),
                     f"raw {_fmt(lc.get('win_rate'))}; length coefficient {_fmt(lc.get('length_coef'))}; n {lc.get('n')}"))
    return rows


def _interval(r: dict) -> str:
    return f" [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]" if isinstance(r.get("ci_low"), float) else ""


def _held_out(d: dict) -> str:
    # the scores the finetuning run measured on its test split, not its bookkeeping counts
    skip = ("step", "train_examples", "truncated", "dropped")
    return ", ".join(f"{k} {_fmt(v)}" for k, v in d.items() if isinstance(v, (int, float)) and k not in skip)


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def to_markdown(card: dict) -> str:
    """The model card as Markdown: one section per stage, a table per evaluation, samples."""
    lines = [f"# Model card: {card['model']}", "", f"Checkpoint `{card['checkpoint']}`, generated {card['generated']}.", ""]
    arch = card.get("architecture") or {}
    if arch:
        tok = card.get("tokenizer") or {}
        lines += [f"Architecture: {arch.get('n_layer')} layers, {arch.get('n_head')} heads, width {arch.get('n_embd')}, "
                  f"context {arch.get('context_length')}, {arch.get('position')} positions, {arch.get('norm')}, "
                  f"{arch.get('mlp')}; tokenizer {tok.get('name', '-')} ({_fmt(tok.get('n_vocab'))} ids).", ""]
    for i, st in enumerate(card["lineage"], 1):
        lines += [f"## {i}. {st.get('stage') or 'model'}", "", "| | |", "|---|---|"]
        lines += [f"| {k} | {_md_escape(v)} |" for k, v in _stage_rows(st)]
        lines.append("")
        if st.get("held_out"):
            ho = _held_out(st["held_out"])
            lines += [f"Held-out at the end of training: {ho}.", ""]
        for ev in st.get("evaluations", []):
            lines += [f"### Evaluation {ev['run']}", "", "| task | metric | value | settings |", "|---|---|---|---|"]
            for task, r in (ev.get("tasks") or {}).items():
                for metric, value, sett in task_rows(task, r):
                    lines.append(f"| {task} | {metric} | {value} | {_md_escape(sett)} |")
            lines.append("")
        samples = st.get("samples") or []
        if samples:
            lines += ["Samples:", ""]
            for smp in samples:
                lines.append(f"- step {smp.get('step')}: **{_md_escape(str(smp.get('prompt') or ''))}**"
                             f"{_md_escape(str(smp.get('text') or ''))}")
            lines.append("")
    if not any(st.get("evaluations") for st in card["lineage"]):
        lines += ["No evaluations yet: run `llmlab eval PRESET` (eval.model names the checkpoint).", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- SVG

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def svg_chart(series: dict[str, list[list[float]]], *, title: str = "", width: int = 560, height: int = 240,
              x_label: str = "step", y_label: str = "loss") -> str:
    """A line chart as inline SVG (no script, no external files): one polyline per series, axes with ticks."""
    pts = [(x, y) for s in series.values() for x, y in s if y is not None and math.isfinite(y)]
    if not pts:
        return ""
    ml, mr, mt, mb = 52, 12, 24 if title else 10, 34
    w, h = width - ml - mr, height - mt - mb
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad

    def sx(x: float) -> float:
        return ml + (x - x0) / (x1 - x0) * w

    def sy(y: float) -> float:
        return mt + (1 - (y - y0) / (y1 - y0)) * h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11" role="img">']
    if title:
        out.append(f'<text x="{ml}" y="15" font-size="13" font-weight="bold">{html.escape(title)}</text>')
    out.append(f'<rect x="{ml}" y="{mt}" width="{w}" height="{h}" fill="none" stroke="#999"/>')
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        yy = sy(yv)
        out.append(f'<line x1="{ml}" x2="{ml + w}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{ml - 4}" y="{yy + 4:.1f}" text-anchor="end">{yv:.3g}</text>')
        xv = x0 + (x1 - x0) * i / 4
        out.append(f'<text x="{sx(xv):.1f}" y="{mt + h + 14}" text-anchor="middle">{xv:.4g}</text>')
    out.append(f'<text x="{ml + w / 2}" y="{height - 4}" text-anchor="middle">{html.escape(x_label)}</text>')
    out.append(f'<text x="12" y="{mt + h / 2}" transform="rotate(-90 12 {mt + h / 2})" text-anchor="middle">'
               f'{html.escape(y_label)}</text>')
    for i, (name, s) in enumerate(series.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        good = [(x, y) for x, y in s if y is not None and math.isfinite(y)]
        if not good:
            continue
        if len(good) == 1:
            out.append(f'<circle cx="{sx(good[0][0]):.1f}" cy="{sy(good[0][1]):.1f}" r="3" fill="{colour}"/>')
        else:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in good)
            out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
        lx = ml + w - 110
        ly = mt + 14 + 14 * i
        out.append(f'<line x1="{lx}" x2="{lx + 16}" y1="{ly - 4}" y2="{ly - 4}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{lx + 20}" y="{ly}">{html.escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


_CSS = ("body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ddd;padding:3px 8px;"
        "text-align:left;vertical-align:top}th{background:#f4f4f4}code{background:#f4f4f4;padding:0 3px}"
        "h2{border-bottom:1px solid #ddd;padding-bottom:3px}.sample{font-family:monospace;white-space:pre-wrap}")


def to_html(card: dict) -> str:
    """A self-contained HTML page (inline CSS and SVG, no scripts or external files) of the model card."""
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>Model card: {e(card['model'])}</title><style>{_CSS}</style></head><body>",
             f"<h1>Model card: {e(card['model'])}</h1>",
             f"<p>Checkpoint <code>{e(card['checkpoint'])}</code>, generated {e(card['generated'])}.</p>"]
    for i, st in enumerate(card["lineage"], 1):
        parts.append(f"<h2>{i}. {e(str(st.get('stage') or 'model'))}</h2><table>")
        parts += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _stage_rows(st)]
        parts.append("</table>")
        curves = st.get("curves") or {}
        chart = svg_chart({k: v for k, v in (("train loss", curves.get("train") or []),
                                             ("val loss", curves.get("val") or [])) if v},
                          title=f"{st.get('stage') or 'model'} loss")
        if chart:
            parts.append(f'<figure>{chart}</figure>')
        if st.get("held_out"):
            ho = _held_out(st["held_out"])
            parts.append(f"<p>Held-out at the end of training: {e(ho)}.</p>")
        for ev in st.get("evaluations", []):
            parts.append(f"<h3>Evaluation {e(ev['run'])}</h3><table>"
                         "<tr><th>task</th><th>metric</th><th>value</th><th>settings</th></tr>")
            for task, r in (ev.get("tasks") or {}).items():
                for metric, value, sett in task_rows(task, r):
                    parts.append(f"<tr><td>{e(task)}</td><td>{e(metric)}</td><td>{e(value)}</td><td>{e(sett)}</td></tr>")
            parts.append("</table>")
        samples = st.get("samples") or []
        if samples:
            parts.append("<h3>Samples</h3>")
            for smp in samples:
                parts.append(f'<p class="sample">step {e(str(smp.get("step")))}: <b>{e(str(smp.get("prompt") or ""))}</b>'
                             f'{e(str(smp.get("text") or ""))}</p>')
    if not any(st.get("evaluations") for st in card["lineage"]):
        parts.append("<p>No evaluations yet: run <code>llmlab eval PRESET</code>.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
