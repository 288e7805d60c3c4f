"""The sections of the settings, one module per group; :mod:`flywheel.config` assembles them into
``Settings``, loads them and re-exports every name (import from there)."""
