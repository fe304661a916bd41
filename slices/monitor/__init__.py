"""The monitor slice: health, Prometheus metrics, alerts and a live dashboard over the sessions'
ledgers (SLICES.md contract 4), backtest run outputs (contract 3) and the bar store (contract 1).
It reads them only; its own state (alert history, acknowledgements) lives in its own SQLite file."""
