"""runner: a declarative HTTP load-test runner."""

from .checkout import map_siblings

__version__ = "0.1.0"

map_siblings(__path__[0])
