"""The live_trade slice: run a strategy against an Alpaca account with hard safety limits.

See slices/live_trade/README.md. Entry point: ``python -m slices.live_trade``.
"""
