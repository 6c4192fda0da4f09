"""`python -m ccq ...` (and `torchrun -m ccq ...`) runs the command line."""

from ccq.cli import main

if __name__ == "__main__":
    main()
