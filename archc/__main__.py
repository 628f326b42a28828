"""`python -m archc ...` (also what `torchrun -m -- archc train ...` runs)."""
from archc.cli.main import main

main()
