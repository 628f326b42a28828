"""The compiler: sources → parse → IR → resolve → shapes, and its diagnostics."""
