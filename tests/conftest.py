"""Suite-wide settings. Runs before any test module imports torch."""
import os

# OpenMP's busy-waiting threads starve each other when the suite's subprocesses share the
# 2 CI cores; passive waiting keeps a training step at its normal speed (see archc/cli.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
