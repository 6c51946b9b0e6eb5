"""`python -m sidbench` runs the command line (as `torchrun -m sidbench` does on every process)."""
from sidbench.cli.app import main

if __name__ == "__main__":
    main()
