"""The vocabulary every layer shares: geometry, orientation, errors, atomic writes, the suggestion type."""
