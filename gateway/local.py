"""The gateway's settings for a local stack: secrets generated once per stack home, never in the repository.

``leadflow local up --gateway`` writes ``<home>/gateway.json`` (the gateway's config file: topics of the local
project, every provider secret, the local API client's key hash) and ``<home>/gateway-client.json`` (what a local
sender needs to sign its requests: the same secrets and the API key itself), both readable by the owner only.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from gateway.config import key_hash

LOCAL_CLIENT_ID = "local"
_SECRETS = ("meta_app_secret", "meta_verify_token", "meta_page_access_token", "google_ads_key", "twilio_auth_token",
            "knowlarity_secret", "email_webhook_secret")


def _write_private(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(json.dumps(obj, indent=2) + "\n")


def local_settings(home: Path, project: str, public_url: str, status_dataset: str | None = None,
                   meta_graph_url: str | None = None) -> tuple[Path, dict]:
    """(the config file path, the client's secrets); secrets kept from an earlier run of the same home.
    ``status_dataset`` (``project:dataset`` of the local BigQuery) serves ``GET /v1/leads/status``;
    ``meta_graph_url`` is where Meta leads are read (the local stack's Graph API stand-in)."""
    client_path = home / "gateway-client.json"
    client = json.loads(client_path.read_text()) if client_path.exists() else {}
    for name in (*_SECRETS, "api_key"):
        client.setdefault(name, secrets.token_urlsafe(24))
    client["public_url"] = public_url
    config = {name: client[name] for name in _SECRETS}
    config.update(project=project, public_url=public_url,
                  api_clients=[{"client_id": LOCAL_CLIENT_ID, "key_sha256": key_hash(client["api_key"])}])
    if status_dataset:
        config["status_dataset"] = status_dataset
    if meta_graph_url:
        config["meta_graph_url"] = meta_graph_url
    _write_private(client_path, client)
    config_path = home / "gateway.json"
    _write_private(config_path, config)
    return config_path, client
