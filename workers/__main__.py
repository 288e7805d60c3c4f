"""``python -m workers --queue all``."""

from workers.main import main

main()
