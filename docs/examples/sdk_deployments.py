"""Publish a base model, issue a key, re-target, disable and delete, with the Python SDK.

Run it against a control plane (``make dev`` or ``arkor cloud serve``):

    python docs/examples/sdk_deployments.py
"""

from arkor import (
    BaseModelTarget,
    CloudApiClient,
    ensure_credentials,
    ensure_project_state,
)
from arkor.sdk import default_arkor_cloud_api_url

credentials = ensure_credentials()  # signs in anonymously the first time
client = CloudApiClient(
    base_url=default_arkor_cloud_api_url(credentials),
    credentials=credentials,
)
state = ensure_project_state(client, credentials)  # writes .arkor/state.json
scope = {"orgSlug": state.org_slug, "projectSlug": state.project_slug}

deployment = client.create_deployment(
    scope,
    slug=f"smol-{state.org_slug[-6:]}",
    target=BaseModelTarget(base_model="HuggingFaceTB/SmolLM2-135M-Instruct"),
    auth_mode="fixed_api_key",
)
key = client.create_deployment_key(deployment.id, scope, label="production")
print(key.plaintext)  # shown EXACTLY ONCE; store it now

for listed in client.list_deployment_keys(deployment.id, scope):
    print(listed.label, listed.prefix, listed.enabled)  # never the plaintext

client.revoke_deployment_key(deployment.id, key.id, scope)
client.update_deployment(deployment.id, scope, enabled=False)
client.delete_deployment(deployment.id, scope)
