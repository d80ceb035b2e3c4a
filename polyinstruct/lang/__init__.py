"""Language codes and language identification, shared by data, judge and experiment.

- ``codes``: one code vocabulary (``normalize_code``, ``same_language``, ``UND``).
- ``identify``: identifier backends behind ``load_identifier(name).identify(texts)``
  and the registry ``IDENTIFIERS``.
- ``refine``: the documented Norwegian/Danish and Bulgarian/Russian tie-breakers.
- ``accuracy``: accuracy of an identifier on labelled text.
"""
