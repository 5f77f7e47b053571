"""Real in-memory implementations of the application's ports, for fast tests of the core."""
