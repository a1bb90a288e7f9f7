from arkor.engine.local.engine import LocalEngine

__all__ = ["LocalEngine"]
