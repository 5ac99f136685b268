"""One module per command: each turns parsed options into an exit code."""
