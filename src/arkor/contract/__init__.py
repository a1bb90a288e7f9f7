"""The contract: the nouns every layer must agree on, declared once.

A leaf package (it imports pydantic and the standard library, nothing else of ours), so the
SDK, the control plane, the edge, training, the Studio and the CLI can all import it:

- ``models``: every wire DTO of the cloud API (camelCase on the wire); ``arkor.sdk.models``
  re-exports them for SDK users.
- ``deployments``: slug rules and messages, reserved labels, auth modes, target kinds, run
  retention rules and messages, key label bounds.
- ``deployment_bodies``: the strict request bodies of the deployments routes.
- ``events``: job event type names, which end a job, and the status each leaves.
- ``job_config``: the JobConfig field table (names, defaults, validation, help), its parser and
  the SDK trainer's options (``TrainerOptions``).
- ``artifacts``: the on-disk layout of a job's adapters and their file names.

The Studio's scripts get the names they need from ``/contract.js``, generated from here
(``arkor.studio.contract_js``); ``tests/test_contract_literals.py`` fails when a literal of the
contract is spelled anywhere else.
"""
