"""``python -m tradeguard.cli``."""

from tradeguard.cli import main

main()
