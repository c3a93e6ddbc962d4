"""The runtime of one Client: state shared by its calls, and the I/O that keeps it fresh."""
