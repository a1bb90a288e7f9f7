"""The demo dataset shipped with arkor: support tickets triaged into billing, bug or other."""

from arkor.training.demo.support_triage import (
    DEMO_CONFIG,
    DEMO_LABELS,
    DEMO_SYSTEM_PROMPT,
    demo_dataset_path,
    demo_eval_path,
)

__all__ = ["DEMO_CONFIG", "DEMO_LABELS", "DEMO_SYSTEM_PROMPT", "demo_dataset_path",
           "demo_eval_path"]
