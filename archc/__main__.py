"""`python -m archc ...` (also what `torchrun -m archc train ...` runs)."""
from .cli import main

main()
