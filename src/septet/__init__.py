"""septet: seven machine-learning systems in one Python toolkit.

Importing this package imports no heavy library; each part (``septet.transformers``,
``septet.tsdb``, ...) loads its own dependencies when first used.
"""

__version__ = "0.1.0"
