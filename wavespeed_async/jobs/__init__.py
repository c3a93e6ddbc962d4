"""Job lifecycle stores: the command line's journal and the Ray ledger (SQLite)."""
