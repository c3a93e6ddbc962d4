"""The pure core: plain data in, plain data out; no event loop, no network, no files."""
