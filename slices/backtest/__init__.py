"""The backtest slice: simulate strategies on historical bars with costs and risk rules.

See slices/backtest/README.md. Entry point: ``python -m slices.backtest``.
"""
