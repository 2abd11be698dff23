"""One self-contained HTML report, rendered from the results JSON alone.

The JSON (from :func:`tessera.evaluate.run.evaluate_predictor`) is the record; the HTML is
a view of it. :func:`write_report` saves both and :func:`render_report` redraws the HTML
from a saved JSON, so a report can be restyled or re-rendered without the model or data.
Everything is inline (CSS, plots as base64 PNG from matplotlib's Agg backend, example
media as data URIs): the file opens offline, can be mailed, and fetches nothing.

Sections, by id: summary, confusion, per-class, calibration, comparison, contribution,
robustness, fairness, examples. A section that does not apply says why instead of vanishing.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tessera.files import atomic_write_text

CONTRIBUTION_COLUMNS = ("input", "without", "removal_drop", "alone", "shapley", "unimodal", "ignores_modality")
SECTIONS = ("summary", "confusion", "per-class", "calibration", "comparison", "contribution", "robustness", "fairness", "examples")
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.92rem} th,td{border:1px solid #ddd;padding:.25rem .55rem;text-align:left}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
.meta{color:#666;font-size:.9rem} .note{color:#666;font-style:italic} .warn{color:#a40}
.examples{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:1rem}
.example{border:1px solid #ddd;border-radius:6px;padding:.6rem} .example img{max-width:100%;image-rendering:pixelated}
.example audio{width:100%} .example pre{white-space:pre-wrap;margin:.2rem 0;font-size:.85rem}
nav a{margin-right:.8rem}
"""


# -- files -------------------------------------------------------------------------------------
def write_report(results: dict[str, Any], json_path: str | os.PathLike, html_path: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Save the results JSON and the HTML rendered from it (default: the same name, .html)."""
    json_path = Path(json_path)
    html_path = Path(html_path) if html_path is not None else json_path.with_suffix(".html")
    atomic_write_text(json_path, json.dumps(to_json(results), indent=1, allow_nan=False))
    return json_path, render_report(json_path, html_path)


def render_report(results_json_path: str | os.PathLike, out_html: str | os.PathLike) -> Path:
    """Render the HTML report from a results JSON written by :func:`write_report`."""
    results = json.loads(Path(results_json_path).read_text())
    return atomic_write_text(out_html, render_html(results))


def to_json(value: Any) -> Any:
    """Plain JSON values: NaN and infinities become null (strict JSON has neither), NumPy to Python."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- page --------------------------------------------------------------------------------------
def render_html(results: dict[str, Any]) -> str:
    meta = results.get("meta", {})
    renderers: dict[str, Callable[[dict[str, Any]], str]] = {
        "summary": _summary,
        "confusion": _confusion,
        "per-class": _per_class,
        "calibration": _calibration,
        "comparison": _comparison,
        "contribution": _contribution,
        "robustness": _robustness,
        "fairness": _fairness,
        "examples": _examples,
    }
    titles = {s: s.replace("-", " ").capitalize() for s in SECTIONS}
    body = [
        f"<h1>Evaluation of {_e(meta.get('model', 'model'))}</h1>",
        f"<p class='meta'>table {_e(meta.get('table', '?'))} ({_e(meta.get('split', ''))}), {meta.get('n', '?')} rows, "
        f"task {_e(meta.get('task', '?'))}, inputs {_e(', '.join(f'{k} ({v})' for k, v in meta.get('inputs', {}).items()))}; "
        f"created {_e(meta.get('created', ''))} with Tessera {_e(meta.get('tessera_version', ''))}</p>",
        "<nav>" + "".join(f"<a href='#{s}'>{titles[s]}</a>" for s in SECTIONS) + "</nav>",
    ]
    for section in SECTIONS:
        body.append(f"<section id='{section}'><h2>{titles[section]}</h2>{renderers[section](results)}</section>")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>Tessera evaluation: {_e(meta.get('model', 'model'))}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _e(value)
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def _table(records: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not records:
        return "<p class='note'>nothing to show</p>"
    columns = columns or list(records[0])
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    rows = []
    for r in records:
        cells = []
        for c in columns:
            v = r.get(c)
            cls = " class='num'" if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            cells.append(f"<td{cls}>{_num(v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _note(text: str) -> str:
    return f"<p class='note'>{_e(text)}</p>"


def _img(uri: str, alt: str) -> str:
    return f"<img src='{_e(uri)}' alt='{_e(alt)}'>"


# -- plots -------------------------------------------------------------------------------------
def _plot(draw: Callable[[Any], None], size: tuple[float, float] = (6.0, 4.0)) -> str:
    """Draw on a fresh Agg figure and return it as a PNG data URI."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=size, dpi=100)
    try:
        draw(fig)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# -- sections ----------------------------------------------------------------------------------
def _summary(results: dict[str, Any]) -> str:
    meta, summary = results.get("meta", {}), results.get("summary", {})
    level = 100 * (1 - float(meta.get("alpha", 0.05)))
    records = [
        {"metric": name, "value": m.get("value"), "low": m.get("low"), "high": m.get("high")}
        for name, m in summary.items() if isinstance(m, dict)
    ]
    return (
        _table(records)
        + _note(f"{level:g}% percentile-bootstrap intervals over {meta.get('n_boot', '?')} resamples of the {summary.get('n', '?')} rows")
    )


def _confusion(results: dict[str, Any]) -> str:
    data = results.get("confusion")
    if not data:
        return _note("only for multiclass targets")
    matrix, labels = np.asarray(data["matrix"]), data["labels"]

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if len(labels) <= 20:
            top = matrix.max() or 1
            for (i, j), v in np.ndenumerate(matrix):
                ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color="white" if v > top / 2 else "black")

    side = min(10.0, 3.0 + 0.4 * len(labels))
    return _img(_plot(draw, (side, side)), "confusion matrix")


def _per_class(results: dict[str, Any]) -> str:
    records = results.get("per_class")
    return _table(records) if records else _note("only for multiclass targets")


def _calibration(results: dict[str, Any]) -> str:
    cal, scatter = results.get("calibration"), results.get("scatter")
    if scatter:
        true, pred = np.asarray(scatter["true"], float), np.asarray(scatter["predicted"], float)

        def draw_scatter(fig: Any) -> None:
            ax = fig.add_subplot()
            ax.scatter(true, pred, s=6, alpha=0.5)
            lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
            ax.plot([lo, hi], [lo, hi], color="grey", linestyle="--", linewidth=1)
            ax.set_xlabel("true")
            ax.set_ylabel("predicted")

        return _img(_plot(draw_scatter, (5, 5)), "predicted vs true") + _note("regression: predicted against true values")
    if not cal:
        return _note("only for multiclass targets")

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        conf, acc, count = (np.asarray(cal[k], float) for k in ("confidence", "accuracy", "count"))
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
        ax.plot(conf, acc, marker="o", label="model")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.03)
        ax.set_xlabel("confidence (top class probability)")
        ax.set_ylabel("accuracy")
        ax2 = ax.twinx()
        ax2.bar(conf, count, width=0.04, alpha=0.25, color="tab:grey")
        ax2.set_ylabel("rows per bin (grey bars)")
        ax.set_zorder(ax2.get_zorder() + 1)  # the curve above the bars
        ax.patch.set_visible(False)
        ax.legend(loc="upper left")

    ece = _num(cal.get("ece"))
    return _img(_plot(draw), "reliability diagram") + _note(f"expected calibration error (ECE, 15 equal-width bins): {ece}")


def _comparison(results: dict[str, Any]) -> str:
    comp = results.get("comparison")
    if not comp:
        return _note("not run: `tessera compare CONFIG` trains the unimodal baselines and the fusion model and fills this in")
    table, gain = comp["table"], comp["gain"]
    main = next((m for m in ("accuracy", "subset_accuracy", "r2") if m in table[0]), None)

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        names = [r["model"] for r in table]
        values = [r[main] for r in table]
        low = [v - (r.get(f"{main}_low") if r.get(f"{main}_low") is not None else v) for v, r in zip(values, table)]
        high = [(r.get(f"{main}_high") if r.get(f"{main}_high") is not None else v) - v for v, r in zip(values, table)]
        ax.barh(names, values, xerr=[low, high], color=["tab:orange" if n == "fusion" else "tab:blue" for n in names])
        ax.set_xlabel(main)
        ax.invert_yaxis()  # top to bottom in table order

    level = 100 * (1 - float(gain.get("alpha", 0.05)))
    verdict = (
        f"{gain.get('measure', 'gain')} of {gain.get('fusion')} over {gain.get('baseline')}: {_num(gain.get('gain'))} "
        f"({level:g}% paired-bootstrap CI {_num(gain.get('low'))} to {_num(gain.get('high'))}), "
        f"p = {_num(gain.get('p_value'))} ({gain.get('method', '')}), on the {comp.get('split')} split"
    )
    flags = "".join(f"<p class='warn'>{_e(flag)}</p>" for flag in comp.get("flags", []))
    return _table(table) + (_img(_plot(draw), "comparison") if main else "") + f"<p>{_e(verdict)}</p>" + flags


def _contribution(results: dict[str, Any]) -> str:
    con = results.get("contribution")
    if not con:
        return _note("needs a model with more than one input")
    records = con["inputs"]

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        names = [r["input"] for r in records]
        y = np.arange(len(names))
        ax.barh(y - 0.2, [r["removal_drop"] for r in records], height=0.4, label="drop when removed")
        if con.get("shapley_exact"):
            ax.barh(y + 0.2, [r["shapley"] for r in records], height=0.4, label="Shapley value")
        ax.set_yticks(y, names)
        ax.axvline(0, color="grey", linewidth=1)
        ax.invert_yaxis()
        ax.set_xlabel(con["metric"])
        ax.legend()

    warnings = "".join(f"<p class='warn'>{_e(r['warning'])}</p>" for r in records if r.get("warning"))
    return (
        _img(_plot(draw), "contribution")
        + _table(records, [c for c in CONTRIBUTION_COLUMNS if c in records[0]])
        + warnings
        + _note(f"{con['metric']} with every input: {_num(con['full'])}; with none: {_num(con['none'])}. "
                f"Flagged as ignored: removal and Shapley value both below {con['threshold']}.")
    )


def _robustness(results: dict[str, Any]) -> str:
    rob = results.get("robustness")
    if not rob:
        return _note("not computed")
    missing, noise = rob.get("missing", []), rob.get("noise", [])
    parts = []
    if missing:
        def draw_missing(fig: Any) -> None:
            ax = fig.add_subplot()
            for name in dict.fromkeys(r["input"] for r in missing):
                pts = [r for r in missing if r["input"] == name]
                ax.plot([r["fraction_missing"] for r in pts], [r["value"] for r in pts], marker="o", label=name)
            ax.set_xlabel("fraction of rows missing the input")
            ax.set_ylabel(missing[0]["metric"])
            ax.legend()

        parts.append(_img(_plot(draw_missing), "metric vs missing fraction"))
    if noise:
        names = list(dict.fromkeys(r["input"] for r in noise))

        def draw_noise(fig: Any) -> None:
            for k, name in enumerate(names):
                ax = fig.add_subplot(1, len(names), k + 1)
                pts = [r for r in noise if r["input"] == name]
                ax.plot([r["severity"] for r in pts], [r["value"] for r in pts], marker="o")
                ax.set_xticks([r["severity"] for r in pts], ["clean" if r["level"] is None else f"{r['level']:g}" for r in pts])
                ax.set_xlabel(pts[0]["noise"])
                ax.set_title(name)
                if k == 0:
                    ax.set_ylabel(pts[0]["metric"])

        parts.append(_img(_plot(draw_noise, (max(4.0, 3.2 * len(names)), 3.4)), "metric vs noise"))
    parts.append(_table(missing, ["input", "fraction_missing", "value"]) if missing else "")
    parts.append(_table(noise, ["input", "noise", "level", "value"]) if noise else "")
    parts.append(_note("audio levels are SNR in dB (clean = no noise); image, numeric, series noise is a std in normalised units; "
                       "text and categorical levels are the fraction of tokens/ids replaced by unknown"))
    return "".join(parts)


def _fairness(results: dict[str, Any]) -> str:
    analyses = results.get("fairness")
    if not analyses:
        return _note("no groups: pass group columns (--group COLUMN) for per-group metrics")
    parts = []
    for a in analyses:
        gaps = ", ".join(f"{k} {_num(v)}" for k, v in a["largest_gap"].items())
        extra = ""
        if a.get("demographic_parity_difference") is not None:
            extra = (f"; demographic-parity difference {_num(a['demographic_parity_difference'])}, "
                     f"equalised-odds difference {_num(a['equalized_odds_difference'])} (one class vs rest, worst class)")
        parts.append(f"<h3>{_e(a['column'])}</h3>" + _table(a["groups"]) + f"<p>largest gap: {_e(gaps)}{_e(extra)}</p>")
    return "".join(parts)


def _examples(results: dict[str, Any]) -> str:
    examples = results.get("examples")
    if not examples:
        return _note("no examples")
    cards = []
    for ex in examples:
        head = f"<b>row {ex['row']}</b>: true {_num(ex.get('true'), 3)}, predicted {_num(ex.get('predicted'), 3)}"
        if ex.get("confidence") is not None:
            head += f" ({_num(ex['confidence'], 2)})"
        scores = ", ".join(f"{k} {_num(v, 3)}" for k, v in (ex.get("scores") or {"loss": ex.get("loss")}).items())
        items = [f"<p>{head}<br><span class='meta'>{_e(scores)}</span></p>"]
        for item in ex.get("inputs", []):
            items.append(f"<div><span class='meta'>{_e(item['input'])}</span>{_media(item)}</div>")
        cards.append("<div class='example'>" + "".join(items) + "</div>")
    return "<div class='examples'>" + "".join(cards) + "</div>"


def _media(item: dict[str, Any]) -> str:
    kind = item.get("kind")
    src = str(item.get("src", ""))
    if kind == "image" and src.startswith("data:image/"):
        return "<br>" + _img(src, item["input"])
    if kind == "audio" and src.startswith("data:audio/"):
        return f"<audio controls preload='none' src='{_e(src)}'></audio>"
    if kind == "values":
        return "<pre>" + _e(", ".join(f"{k}={v}" for k, v in item.get("value", {}).items())) + "</pre>"
    if kind == "missing":
        return "<pre class='note'>(missing)</pre>"
    return f"<pre>{_e(item.get('value', ''))}</pre>"
