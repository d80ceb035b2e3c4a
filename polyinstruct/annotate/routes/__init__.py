"""The annotation app's routers, one per concern: ``auth`` (login, logout, the login limits),
``annotation`` (blind pairwise judging), ``chat``, ``arena`` and ``admin`` (progress)."""
