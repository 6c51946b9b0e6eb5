"""The `sidbench` command: one module per verb over the Python API."""
