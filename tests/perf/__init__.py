"""Performance benchmarks. Not tests: nothing here is collected by pytest (see README.md)."""
