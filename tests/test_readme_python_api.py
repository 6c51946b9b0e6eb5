"""The README's "Python API" section runs as written (its examples are doctests)."""
import doctest
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_api_section() -> str:
    text = README.read_text()
    m = re.search(r"^## Python API\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, "README has no '## Python API' section"
    return m.group(1)


def test_readme_python_api_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write results.json
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    section = python_api_section()
    test = doctest.DocTestParser().get_doctest(section, {}, "README Python API", str(README), 0)
    assert len(test.examples) >= 10, "the section lost its examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} README example(s) failed (output above)"
    assert (tmp_path / "results.json").is_file()
    assert not (tmp_path / "cache").exists()  # in-memory references are not cached unless asked
