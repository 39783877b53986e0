"""Human-facing output: HTML reports (Jinja, self-contained) and terminal tables, read from the store."""
