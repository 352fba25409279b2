"""Bots shipped with tradeguard (used by `tradeguard demo`)."""
