"""Use-cases run against the in-memory fakes of the ports: no database, no HTTP."""
