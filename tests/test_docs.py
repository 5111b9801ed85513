"""docs/MODEL.md is the specification the code cites: every "MODEL.md section N" in the repository
names a section that exists, and the golden-vector file it describes is in the repository."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "docs" / "MODEL.md"
TEXT_SUFFIXES = {".py", ".md", ".h", ".cuh", ".cu", ".cpp", ".txt", ".toml", ".sh", ".cfg"}
SKIP_DIRS = {".git", ".venv", "build", "dist", "runs", "outputs", "__pycache__", ".pytest_cache", ".benchmarks"}


def _sections():
    return {int(m.group(1)) for m in re.finditer(r"^## (\d+)\. ", MODEL.read_text(), re.M)}


def _cited_sections():
    """(file, section) for each citation of the form "MODEL.md section 3", "MODEL.md, section 3",
    "MODEL.md sections 3 and 5"."""
    pat = re.compile(r"MODEL\.md,? sections? (\d+)(?:\s*(?:and|,|/)\s*(\d+))?")
    for path in ROOT.rglob("*"):
        if path.suffix not in TEXT_SUFFIXES or SKIP_DIRS & set(path.relative_to(ROOT).parts):
            continue
        if not path.is_file():
            continue
        for m in pat.finditer(path.read_text(errors="replace")):
            for g in m.groups():
                if g is not None:
                    yield path.relative_to(ROOT), int(g)


def test_cited_sections_exist():
    sections = _sections()
    assert sections == set(range(1, max(sections) + 1)), f"MODEL.md sections not numbered 1..n: {sorted(sections)}"
    cited = list(_cited_sections())
    assert cited, "nothing cites docs/MODEL.md"
    missing = [(str(f), n) for f, n in cited if n not in sections]
    assert not missing, f"citations of MODEL.md sections that do not exist: {missing}"


def test_golden_vectors_live_in_the_repository():
    assert (ROOT / "tests" / "data" / "pigan_vectors.pt").is_file()
    assert "tests/data/pigan_vectors.pt" in MODEL.read_text()
