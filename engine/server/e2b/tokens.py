"""What E2B's control plane answers for a started sandbox (created, connected or forked): its id
and the tokens that address it."""

from __future__ import annotations

from typing import Any

from engine.server.e2b.registry import E2BSandbox

# octet-stream uploads (0.5.7), file metadata (0.6.2), entries in watch events (0.6.3), watching
# with network mounts allowed (0.6.4): the features the SDKs gate on the version
ENVD_VERSION = "0.6.4"
CLIENT_ID = "lci"
# The `domain` of a created or connected sandbox. A client with `E2B_SANDBOX_URL` set never uses
# it; one without builds the sandbox's URL from it (always https://<port>-<id>.<domain>, so no
# domain can lead that client to lci) and would send run_code and files to E2B's cloud. This
# value makes that URL invalid, so the SDK fails at `Sandbox.create()`, its error ending in this
# sentence: `InvalidURL: Invalid port: 'E2B_SANDBOX_URL is not set. ...'`.
UNSET_SANDBOX_URL = (
    "lci:E2B_SANDBOX_URL is not set. Set it to the URL of the lci server (the same as E2B_API_URL) "
    "so that run_code and files reach lci"
)


def created(sandbox: E2BSandbox) -> dict[str, Any]:
    return {
        "templateID": sandbox.template,
        "sandboxID": sandbox.id,
        "clientID": CLIENT_ID,
        "envdVersion": ENVD_VERSION,
        "envdAccessToken": sandbox.token,
        "trafficAccessToken": sandbox.token,
        "domain": UNSET_SANDBOX_URL,
    }
