"""Log stores: :class:`LogStore` protocol and the configured implementation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flywheel.config import ConfigError
from flywheel.logstore.base import LogStore
from flywheel.logstore.sqlite import SQLiteLogStore

if TYPE_CHECKING:
    from flywheel.config import Settings

__all__ = ["LogStore", "open_logstore"]


def open_logstore(settings: Settings) -> LogStore:
    """The configured log store: ``sqlite`` (embedded) or ``elasticsearch`` (also OpenSearch, see ``flavor``)."""
    kind = settings.logstore.kind
    if kind == "sqlite":
        path = settings.logstore.path or str(Path(settings.platform.data_dir) / "logs.sqlite")
        return SQLiteLogStore(path)
    if kind == "elasticsearch":
        try:
            from flywheel.logstore.elasticsearch import ElasticsearchLogStore
        except ImportError:
            raise ConfigError("logstore.kind: 'elasticsearch' needs the prod extra "
                              "(pip install 'temporal-data-flywheel[prod]')") from None
        return ElasticsearchLogStore(settings.logstore.elasticsearch)
    raise ConfigError(f"logstore.kind: {kind!r} is not a log store (available: sqlite, elasticsearch)")
