"""The paper_trade slice: run strategies forward against a simulated broker, crash-safe.

See slices/paper_trade/README.md. Entry point: ``python -m slices.paper_trade``.
"""
