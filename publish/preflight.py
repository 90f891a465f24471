"""Checks made before anything is sent: the repo id, the token, the network.

Each failure is a ``PublishError`` that names the config key to fix, raised before the
first call that would create or change anything on the hub.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id

# The variable huggingface_hub itself reads; only with it does the stored login apply.
DEFAULT_TOKEN_ENV = "HF_TOKEN"


class PublishError(RuntimeError):
    """Publishing cannot go on; the message says why and what was (not) done."""


def check_repo_id(repo_id: str, allowed_namespaces: Sequence[str]) -> tuple[str, str]:
    """``(namespace, name)`` of a valid, allowed ``namespace/name`` repo id."""
    if repo_id.count("/") != 1:
        raise PublishError(
            f"config key 'repo_id': {repo_id!r} must be of the form 'namespace/name' "
            "(a user or organisation, a slash, the repository name)"
        )
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise PublishError(f"config key 'repo_id': {repo_id!r} is not a valid hub repo id: {err}") from None
    namespace, name = repo_id.split("/")
    if allowed_namespaces and namespace not in allowed_namespaces:
        raise PublishError(
            f"config key 'repo_id': namespace {namespace!r} is not in config key 'allowed_namespaces' "
            f"({', '.join(allowed_namespaces)}); nothing was sent"
        )
    return namespace, name


def resolve_token(token_env: str) -> tuple[str, str]:
    """``(token, where it came from)``: the env var named by ``token_env``; with the default
    ``HF_TOKEN`` only, then huggingface_hub's stored login.

    A ``token_env`` other than ``HF_TOKEN`` names the one variable to use: when it is unset
    nothing falls back to ``HF_TOKEN`` or the stored login (which would publish under
    another identity than the one asked for).
    """
    token = os.environ.get(token_env, "").strip()
    if token:
        return token, f"environment variable {token_env}"
    if token_env != DEFAULT_TOKEN_ENV:
        raise PublishError(
            f"no hub token: environment variable {token_env} (config key 'token_env') is unset or empty; "
            f"{DEFAULT_TOKEN_ENV} and the stored login are not used when token_env names another variable; "
            "nothing was sent"
        )
    from huggingface_hub import get_token  # reads HF_TOKEN and the token file of `hf auth login`

    token = (get_token() or "").strip()
    if token:
        return token, "huggingface_hub's stored token"
    raise PublishError(
        f"no hub token: environment variable {token_env} (config key 'token_env') is unset and "
        "huggingface_hub has no stored token (run `hf auth login` or export the variable); "
        "nothing was sent"
    )


def network_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the hub could not be reached (not that it said no)."""
    types: list[type[BaseException]] = [OSError, TimeoutError]  # OSError covers ConnectionError, offline mode
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "ConnectionError")):
        try:
            types.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(types)


def check_access(hub: Any, namespace: str) -> dict[str, Any]:
    """Ask the hub who the token belongs to; fail clearly when offline or refused.

    When the answer lists the user's name and organisations, a namespace the token
    cannot write to is refused here rather than half-way through an upload.
    """
    try:
        who = hub.whoami()
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status == 401:
            raise PublishError(f"the hub rejected the token (HTTP 401): {err}; nothing was sent") from err
        raise PublishError(f"the hub answered the identity check with an error: {err}; nothing was sent") from err
    except network_error_types() as err:
        raise PublishError(
            f"cannot reach the hub (no network or offline mode: {type(err).__name__}: {err}); "
            "nothing was sent. Check the connection, or set dry_run=true to stage the folder only"
        ) from err
    if not isinstance(who, dict):
        return {}
    user = who.get("name")
    orgs = who.get("orgs")
    if isinstance(user, str) and isinstance(orgs, list):
        writable = {user} | {o.get("name") for o in orgs if isinstance(o, dict)}
        if namespace not in writable:
            raise PublishError(
                f"config key 'repo_id': the token belongs to {user!r}, whose namespaces are "
                f"{', '.join(sorted(n for n in writable if n))}; {namespace!r} is not one of them; nothing was sent"
            )
    return who
