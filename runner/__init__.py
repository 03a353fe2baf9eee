"""runner: a declarative HTTP load-test runner."""

from .checkout import map_siblings

__version__ = "0.1.0"
DISTRIBUTION = "runner-loadtest"  # the name pip installs (PyPI's "runner" is another project)

map_siblings(__path__[0])
