"""The deterministic simulator: the real node code in virtual time."""
