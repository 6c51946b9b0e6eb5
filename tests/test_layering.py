"""The tree shows the pipeline: each stage imports only the stages below it (read from the source, every import).

core <- data <- gen <- eval <- report;  distill (the trainer) <- gen, eval (and core, data: errors, atomic
writes, the one prompt-list reader);  demo and cli may use everything (cli: the verbs; demo: the demo world end
to end). Only cli and demo import distill; nothing but ``python -m sidbench`` imports cli.
"""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ALLOWED = {
    "core": {"core"},
    "data": {"core", "data"},
    "gen": {"core", "data", "gen"},
    "eval": {"core", "data", "gen", "eval"},
    "report": {"core", "data", "eval", "report"},
    "distill": {"core", "data", "gen", "eval", "distill"},
    "demo": {"core", "data", "gen", "eval", "report", "distill", "demo"},
    "cli": {"core", "data", "gen", "eval", "report", "distill", "demo", "cli"},
    "api": {"core", "data", "gen", "eval", "api"},   # sidbench/api.py: the Python API, a facade like the CLI
    "root": {"core", "cli"},            # sidbench/__init__.py (the guard; API names load lazily) and __main__.py
}


def stage_of_file(path: Path) -> str:
    rel = path.relative_to(REPO).parts
    if rel[0] == "distill":
        return "distill"
    if rel[1:] == ("api.py",):
        return "api"
    return rel[1] if len(rel) > 2 else "root"


def stage_of_module(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] == "distill":
        return "distill"
    if parts[0] == "sidbench":
        return parts[1] if len(parts) > 1 and parts[1] in ALLOWED and parts[1] != "root" else "root"
    return None


def imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):  # function-level (lazy) imports count too
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "sidbench":  # from sidbench import X: X is the stage
                for a in node.names:
                    yield node.lineno, f"sidbench.{a.name}"
            else:
                yield node.lineno, node.module


def test_every_import_respects_the_stages():
    files = sorted((REPO / "sidbench").rglob("*.py")) + sorted((REPO / "distill").rglob("*.py"))
    assert len(files) > 40
    broken = []
    for f in files:
        stage = stage_of_file(f)
        for line, mod in imports(f):
            target = stage_of_module(mod)
            if target is not None and target != "root" and target not in ALLOWED[stage]:
                broken.append(f"{f.relative_to(REPO)}:{line} ({stage}) imports {mod} ({target})")
    assert not broken, "imports against the layering:\n" + "\n".join(broken)


def test_the_checker_sees_a_violation(tmp_path):
    bad = REPO / "sidbench" / "core" / "x.py"
    assert stage_of_file(bad) == "core" and stage_of_module("sidbench.eval.api") == "eval"
    assert "eval" not in ALLOWED["core"] and "distill" not in ALLOWED["eval"] and "cli" not in ALLOWED["demo"]
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from sidbench.eval import api\n    import distill.loop\n")
    assert [m for _, m in imports(src)] == ["sidbench.eval", "distill.loop"]
