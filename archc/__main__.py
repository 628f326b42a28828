"""`python -m archc ...` (also what `torchrun -m -- archc train ...` runs)."""
from .console import main

main()
