"""Schedulers that drive AdvanceExecution: in-process asyncio (embedded default) and ARQ (Redis)."""
