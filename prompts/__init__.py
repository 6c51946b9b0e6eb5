"""Package data: the prompt-list manifests and the lists sidbench defines.

This folder is the repository's top-level ``prompts/``, installed as ``sidbench.data.prompt_sets``
(``pyproject.toml``, ``[tool.setuptools] package-dir``). Read it with ``importlib.resources`` through
``sidbench.data.prompts``; see README.md here.
"""
