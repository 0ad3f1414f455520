"""``python -m hdqnn ...`` runs the ``hdqnn`` command."""
import sys

from .cli import main

sys.exit(main())
