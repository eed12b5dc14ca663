"""The project's statistics, declared once: the judge step, `limit judge-pair`, `limit reproduce-winrates` and the
report all call these, so one pair has one interval everywhere (result.json, report, MLflow).

- `bootstrap`: percentile intervals; the win-rate bootstrap over prompts and sampling seeds.
- `ranking`: judge strengths (Bradley-Terry, or win rate against a common opponent) and Kendall's tau.
- `adjust`: adjusted p-values over a family of comparisons (Holm, Benjamini-Hochberg).

Pure numpy/scipy on arrays: no step, store or spec.
"""
