"""The public SDK surface: exactly what ``arkor.sdk`` exports (see its ``__all__``)."""

from arkor.sdk import *  # noqa: F403
from arkor.sdk import __all__  # noqa: F401
