"""``python -m pigan ...`` (also what ``torchrun -m pigan train ...`` runs)."""
import sys

from pigan.cli import main

if __name__ == "__main__":
    sys.exit(main())
