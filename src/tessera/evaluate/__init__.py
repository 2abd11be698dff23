"""Evaluation and reports: does fusion really help, how robust is it, and is it fair.

* :mod:`~tessera.evaluate.metrics`: task metrics with bootstrap confidence intervals;
* :mod:`~tessera.evaluate.compare`: paired comparisons of two models on the same rows (bootstrap CI, McNemar);
* :mod:`~tessera.evaluate.contribution`: removal drops and exact Shapley values per input;
* :mod:`~tessera.evaluate.robustness`: metric vs missing fraction and noise level per input;
* :mod:`~tessera.evaluate.fairness`: per-group metrics, parity and equalised-odds gaps;
* :mod:`~tessera.evaluate.run` and :mod:`~tessera.evaluate.report`: all of it as JSON and one HTML file.

Training the models to compare is a workflow: :func:`tessera.workflows.compare.compare_models`.
"""

from tessera.lazy import lazy_exports

# Exported lazily: `tessera --help` imports the CLI wiring in this package and should not
# pay for torch, scikit-learn and matplotlib up front.
_EXPORTS = {
    "Comparison": "compare", "mcnemar": "compare", "paired_gain": "compare",
    "contribution_analysis": "contribution", "shapley_values": "contribution", "without_inputs": "contribution",
    "fairness_analysis": "fairness", "bootstrap_ci": "metrics", "task_metrics": "metrics",
    "render_report": "report", "write_report": "report", "missing_curve": "robustness", "noise_curve": "robustness",
    "evaluate_predictor": "run", "evaluate_split": "run",
}

__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "Comparison",
    "bootstrap_ci",
    "contribution_analysis",
    "evaluate_predictor",
    "evaluate_split",
    "fairness_analysis",
    "mcnemar",
    "missing_curve",
    "noise_curve",
    "paired_gain",
    "render_report",
    "shapley_values",
    "task_metrics",
    "without_inputs",
    "write_report",
]
