"""GPT-Trader slices. This file holds no code: every slice is self-contained (see SLICES.md)."""
