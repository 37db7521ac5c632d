"""The settings the `stockray` global options chose, shared by the command modules."""

from __future__ import annotations

from features.settings import Settings

#: Filled by the CLI's global callback (``--data-dir``, ports) before a command runs.
SETTINGS_STATE: dict[str, Settings] = {}


def settings() -> Settings:
    """The chosen settings, or those of the environment (``STOCKRAY_*``) when none were."""
    return SETTINGS_STATE.get("settings") or Settings()
