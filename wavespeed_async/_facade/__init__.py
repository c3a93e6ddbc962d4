"""The facade: :class:`Client` and bulk runs, the public face of the floors below."""
