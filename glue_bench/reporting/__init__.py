"""Stage 4, reporting: what the runs table says, for people, the GLUE server and CI.

Reads the runs table (from a storage or an exported file) and the prediction artifacts. Selects the best
configuration per (model, task) on dev (selection.py, the one rule every view uses), and from it builds
the leaderboard beside the paper, the grid view, plots, GLUE server submissions, AX diagnostics, the
collapse flags and the CI regression gate. Hands up Report objects that render.py writes as Markdown,
CSV, LaTeX or HTML, and page.py puts together, with the figure, into the one-file leaderboard page; the CLI
sits on top.
"""
