"""``invoke relink-env``: write the agent's ``.env`` from its key file, then verify it."""

from __future__ import annotations

from pathlib import Path

from checkpoint.agent_files import ensure_env_file, ensure_key_file_mode, read_key_file
from checkpoint.dolibarr_api import check_agent_key
from checkpoint.exceptions import ConfigError
from checkpoint.outcome import Outcome, Run, StepFailed
from checkpoint.settings import Settings, require_sandbox_url


def relink_env(settings: Settings, run: Run) -> None:
    """Tighten the key file, write the ``.env`` from it, and check the key authenticates."""
    agent = settings.agent
    url = require_sandbox_url(settings)

    run.step(ensure_key_file_mode, agent.key_file)
    key = _read_key(run, agent.key_file)
    run.step(ensure_env_file, agent.env_file, {agent.env_key_var: key, agent.env_url_var: url})
    run.step(verify_api_key, url, key, agent.login, settings.http_timeout)


def verify_api_key(url: str, key: str, login: str, timeout: float) -> Outcome:
    """Report ok when ``key`` authenticates ``users/info`` as ``login``; read-only."""
    check = check_agent_key(url, key, login, timeout)
    if check.armed:
        return Outcome.ok("verify_api_key", check.detail, reason=check.reason.value)
    return Outcome.failed("verify_api_key", check.detail, reason=check.reason.value)


def _read_key(run: Run, path: Path) -> str:
    """Read the key outside any outcome, because outcomes are printed and the key must not be."""
    try:
        return read_key_file(path)
    except ConfigError as error:
        outcome = run.record(Outcome.failed("read_key_file", str(error)))
        raise StepFailed(outcome) from None
