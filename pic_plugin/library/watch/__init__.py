"""``pic watch``: the daemon, its observers, the event router and its persistent state."""
