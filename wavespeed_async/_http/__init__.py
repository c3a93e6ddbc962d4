"""The HTTP floor: the only code that imports aiohttp.

The transport protocol every Client request goes through (``base``), its aiohttp
implementation, streamed downloads of outputs and the storage upload. It knows nothing of
tasks, retries or limits: those are the runtime's.
"""
