"""After training: predict, eval, submit, export, and the inference engines."""
