"""polyinstruct: multilingual instruction tuning and evaluation.

The package mirrors the pipeline: ``data`` -> ``templates`` -> ``train`` ->
``infer`` -> ``judge`` / ``eval`` -> ``experiment`` -> ``report``.
Every CLI subcommand is a thin wrapper over a plain function in one of these
packages, so everything the command line does can be called from Python.
"""

__version__ = "0.1.0"
