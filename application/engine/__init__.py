"""The flow engine: what each step type does, how an execution advances, and the use-cases that
start, cancel, retry and report on executions. It knows only ports; the schedulers that drive it
(in-process asyncio, ARQ) are adapters."""
