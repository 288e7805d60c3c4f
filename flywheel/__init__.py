"""Temporal Data Flywheel: domain core (pure Python; never imports temporalio)."""
