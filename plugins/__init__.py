"""Built-in plugins. Each uses the same public hooks a third-party plugin would."""
