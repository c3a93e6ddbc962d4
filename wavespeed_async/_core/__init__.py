"""The pure core: settings, errors, wire models, retry and poll policy, input checks.

Sans-IO: nothing here imports asyncio, anyio or aiohttp, performs I/O or reads a clock it
was not given, so every decision is tested with plain values. Every other floor builds on
this one; it imports none of them.
"""
