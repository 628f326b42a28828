"""The tools over the compiler: fmt, the language server, schema, highlighting, diff, verify."""
