"""The one label value that means "no loss here" (PyTorch cross-entropy's ``ignore_index``).

Every module that builds or reads labels (tokenize, verify, collate, training
batching) imports it from here.
"""

IGNORE_INDEX = -100
