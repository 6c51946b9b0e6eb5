#!/usr/bin/env bash
# Creates $VENV and installs the project (editable, with test extras).
# On this project's CPU machines (x86_64, Python 3.11) torch 2.13.0+cpu comes from the local wheel
# folder and PyPI's torchvision 0.28.0 (a CUDA build) is used beside it; sidbench/_tvguard.py makes
# it importable. Elsewhere (a GPU box, another Python) set SIDBENCH_CONSTRAINTS=none to keep your torch.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
here=$(cd "$(dirname "$0")" && pwd)
constraints=${SIDBENCH_CONSTRAINTS:-$here/constraints-cpu.txt}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
if [ "$constraints" != "none" ]; then
    # torch first and alone, so nothing else can pull a different (CUDA) build.
    "${pip[@]}" -c "$constraints" "torch==2.13.0" "torchvision==0.28.0"
    "${pip[@]}" -c "$constraints" -e ".[test]"
else
    "${pip[@]}" -e ".[test]"
fi
"$VENV/bin/python" -c "import sidbench, torchvision; print('sidbench', sidbench.__version__, 'installed; torch', __import__('torch').__version__)"
