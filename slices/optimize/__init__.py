"""The optimize slice: parameter search that guards against overfitting (deflated Sharpe, PBO by
CSCV), walk-forward analysis, portfolio weights and Kelly sizing, on its own engine.

See slices/optimize/README.md. Entry point: ``python -m slices.optimize``.
"""
