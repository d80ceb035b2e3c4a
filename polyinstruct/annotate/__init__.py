"""Human evaluation in the browser: blind pairwise annotation, a chat and an arena.

- ``store``: the SQLite (WAL) store of annotators, items, assignments and judgments,
  with import of prediction files and export in the shape ``judge-agreement`` reads.
- ``agreement``: acceptability and pairwise agreement, Cohen's and Fleiss' kappa, and
  human vs LLM-judge system-level Pearson per language, as a markdown table.
- ``engines``: the models the chat and arena talk to (a run dir or any OpenAI-compatible endpoint).
- ``app``: the FastAPI app, built from ``routes`` (one router per concern: auth, annotation,
  chat, arena, admin) over ``web`` (server-side sessions, CSRF, limits, strict parsing);
  ``commands``: the CLI.

How to run a human evaluation: docs/annotation.md.
"""
