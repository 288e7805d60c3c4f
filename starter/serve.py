"""Serve the starter API with uvicorn: ``python -m starter.serve``.

Options: ``--config PATH`` / ``--config-name NAME`` (else FLYWHEEL_CONFIG / FLYWHEEL_CONFIG_NAME),
``--host`` / ``--port`` (else ``api.host`` / ``api.port`` from the config).
"""

from __future__ import annotations

import argparse
import sys

from flywheel.config import ConfigError, load_settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="starter.serve", description="Temporal Data Flywheel starter API")
    parser.add_argument("--config", help="Path to a YAML config (wins over --config-name).")
    parser.add_argument("--config-name", help="Named config in config/ (e.g. demo).")
    parser.add_argument("--host", help="Bind address (default: api.host).")
    parser.add_argument("--port", type=int, help="Port (default: api.port).")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument("--log-format", choices=["console", "json"], default=None,
                        help="Structured log output (default: console on a terminal, json otherwise).")
    return parser.parse_args(argv)


def configure_logging(log_format: str | None) -> None:
    """structlog key-value events; JSON lines when not on a terminal (log shippers), never request bodies."""
    import logging

    import structlog

    fmt = log_format or ("console" if sys.stderr.isatty() else "json")
    renderer = structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info if fmt == "json" else structlog.dev.set_exc_info,
            renderer,
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(path=args.config, config_name=args.config_name)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_format)
    # Imported after logging is configured, so the API's module-level loggers log in the chosen format.
    import uvicorn

    from starter.api import create_app

    host = args.host or settings.api.host
    try:
        app = create_app(settings, bind_host=host)  # refuses insecure security settings for this bind
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=host, port=args.port or settings.api.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
