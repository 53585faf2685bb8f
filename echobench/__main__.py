"""``python -m echobench`` (what ``torchrun -m echobench`` runs): the command line."""

from echobench.cli import main

if __name__ == "__main__":
    main()
