"""runner: a declarative HTTP load-test runner."""

__version__ = "0.1.0"
