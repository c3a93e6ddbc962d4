"""The async runtime of one Client: flow control, waits, and the API caller.

Carries out the core's decisions: shares limits (locally or through a share backend),
polls every pending wait from one timer, and sends API calls through the transport with
retries, decoding and typed errors.
"""
