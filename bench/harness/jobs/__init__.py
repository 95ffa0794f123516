"""No-op handlers, one module per implementation, imported by that library's worker command."""
