"""`python -m archc ...` (also what `torchrun -m -- archc train ...` runs)."""
from archc.console import main

main()
