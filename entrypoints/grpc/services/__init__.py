"""The servicers of tolstoy.v1: thin, like the REST routes. Each parses its request, calls the use-case
the REST route calls, and maps the result with entrypoints.grpc.presenters."""
