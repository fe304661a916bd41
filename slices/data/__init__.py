"""The data slice: fetch, store, validate and keep market data current (see README.md)."""
