"""Human-facing output read from the store: the comparison report and the regression dashboard (Jinja,
self-contained HTML with matplotlib SVG charts), terminal and Markdown tables, and CSV/JSON/Markdown exports."""
