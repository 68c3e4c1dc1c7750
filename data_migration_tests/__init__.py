"""Tests of data_migration, one module per part of the package; support.py holds shared helpers."""
