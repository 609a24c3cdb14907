"""The docs name only things that exist: repository paths, `tierroute` commands and options, make targets.

Job: keep README.md and evals/RESULTS.md honest as the code moves. Cheap by design (no model, no server):
paths are checked on disk, commands against the typer app converted to click (`typer.main.get_command`),
make targets against the Makefile. Paths under built-artifact folders (git-ignored, made by `make demo`)
cannot be checked on a fresh clone and are skipped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer

from evals.cli.root import build_app

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "evals/RESULTS.md")
# top-level names a backticked repository path may start with
REPO_TOP = ("serving/", "pipelines/", "evals/", "tests/", "data/", "notebooks/", "models/")
REPO_FILES = ("README.md", "SECURITY.md", "pyproject.toml", "Makefile")
# built artifacts (git-ignored): they exist only after `make demo` / `tierroute data build`
GENERATED = ("models/encoder", "models/bundles", "models/serving-cache", "data/labelled/outcomes.parquet")

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
STATEMENT_SPLIT = re.compile(r"&&|\|\||;| \| ")
WORD = re.compile(r"[a-z][a-z0-9-]*$")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def _text(doc: str) -> str:
    return (ROOT / doc).read_text(encoding="utf-8")


def _split(text: str) -> tuple[list[str], list[str]]:
    """(inline code spans outside fenced blocks, logical lines of fenced blocks without comments)."""
    lines: list[str] = []
    for block in FENCE.findall(text):
        joined = re.sub(r"\\\n\s*", " ", block)  # shell line continuations
        for line in joined.splitlines():
            lines.append(line.split(" #", 1)[0])
    spans = SPAN.findall(FENCE.sub("", text))
    return spans, lines


def _looks_like_path(span: str) -> bool:
    if any(c in span for c in "<>{}*[] ") or "..." in span:
        return False
    return span in REPO_FILES or (span.startswith(REPO_TOP) and re.fullmatch(r"[\w./-]+", span) is not None)


def _missing_paths(doc: str) -> list[str]:
    return _missing_paths_in(_text(doc), (ROOT / doc).parent)


def _missing_paths_in(text: str, base: Path) -> list[str]:
    """Backticked repository paths and relative links of `text` (a doc in folder `base`) that do not exist."""
    spans, _ = _split(text)
    missing = []
    for span in spans:
        if not _looks_like_path(span) or span.startswith(GENERATED):
            continue
        if not (ROOT / span).exists():
            missing.append(span)
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "#", "mailto:")):
            continue
        path = target.split("#", 1)[0]
        if path and not (base / path).exists():
            missing.append(f"link {target}")
    return missing


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6} +(.+?) *$", FENCE.sub("", text), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def _broken_anchors(doc: str) -> list[str]:
    """Links `[x](#a)` and `[x](file.md#a)` whose heading does not exist."""
    text = _text(doc)
    broken = []
    for target in LINK.findall(text):
        if "#" not in target or target.startswith(("http://", "https://")):
            continue
        path, anchor = target.split("#", 1)
        linked = text if not path else ((ROOT / doc).parent / path).read_text(encoding="utf-8")
        if anchor not in _anchors(linked):
            broken.append(target)
    return broken


def _command_tree() -> Any:
    return typer.main.get_command(build_app())


def _option_names(command: Any) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(getattr(param, "opts", ()))
        names.update(getattr(param, "secondary_opts", ()))
    return {n for n in names if n.startswith("--")}


def _check_invocation(root: Any, words: str) -> list[str]:
    """`words` follows 'tierroute ' in one statement; the problems found (empty: fine)."""
    tokens = [t for t in re.split(r"\s+", words.strip()) if t]
    command, path = root, ["tierroute"]
    i = 0
    while hasattr(command, "commands") and i < len(tokens):
        word = tokens[i].split("|")[0].strip("[](),.'\"`")
        if not WORD.match(word):
            break
        if word not in command.commands:
            return [f"{' '.join(path)} has no command {word!r}"]
        command = command.commands[word]
        path.append(word)
        i += 1
    if hasattr(command, "commands"):
        return []  # a command group named on its own
    known = _option_names(command)
    rest = " ".join(tokens[i:])
    return [f"{' '.join(path)} has no option {flag}" for flag in FLAG.findall(rest) if flag not in known]


def _bad_invocations(doc: str, root: Any) -> list[str]:
    spans, lines = _split(_text(doc))
    problems = []
    for piece in [*spans, *lines]:
        for statement in STATEMENT_SPLIT.split(piece):
            for match in re.finditer(r"(?:^|[\s(=])tierroute ((?:[^\s].*)?)$", statement.strip()):
                problems += _check_invocation(root, match.group(1))
    return problems


@pytest.mark.parametrize("doc", DOCS)
def test_backticked_repo_paths_exist(doc: str) -> None:
    assert _missing_paths(doc) == []


@pytest.mark.parametrize("doc", DOCS)
def test_links_to_headings_resolve(doc: str) -> None:
    assert _broken_anchors(doc) == []


@pytest.mark.parametrize("doc", DOCS)
def test_documented_commands_and_options_exist(doc: str) -> None:
    assert _bad_invocations(doc, _command_tree()) == []


@pytest.mark.parametrize("doc", DOCS)
def test_documented_make_targets_exist(doc: str) -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    spans, lines = _split(_text(doc))
    named = {m.group(1) for piece in [*spans, *lines] for m in re.finditer(r"\bmake ([a-z][\w-]*)", piece)}
    assert named - targets == set()


def test_layout_table_names_every_module() -> None:
    """README's layout table names every module of the three packages (by its name in backticks)."""
    text = _text("README.md")
    start = text.index("## Layout and import direction")
    section = text[start : text.index("\n## ", start + 1)]
    unnamed = [
        str(path.relative_to(ROOT))
        for package in ("serving", "pipelines", "evals")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "__init__.py" and f"`{path.stem}`" not in section
    ]
    assert unnamed == []


def test_readme_starts_with_the_two_commands() -> None:
    text = _text("README.md")
    first_block = FENCE.search(text)
    assert first_block is not None
    before = text[: first_block.start()].strip()
    assert before == "# tierroute", "nothing but the title comes before the two commands"
    commands = [line.split("#", 1)[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


def test_the_checks_catch_what_they_should() -> None:
    """The checkers themselves: a bad command, a bad option and a bad path are reported."""
    root = _command_tree()
    assert _check_invocation(root, "train --no-register") == []
    assert _check_invocation(root, "gate data build --out DIR") == []
    assert _check_invocation(root, "bench") == []
    assert _check_invocation(root, "trian --data x") == ["tierroute has no command 'trian'"]
    assert _check_invocation(root, "gate fly") == ["tierroute gate has no command 'fly'"]
    assert _check_invocation(root, "serve --modle DIR") == ["tierroute serve has no option --modle"]
    assert _looks_like_path("serving/router/policy.py") and _looks_like_path("pipelines/train/")
    assert not _looks_like_path("models/bundles/<name>") and not _looks_like_path("DIR/requests.parquet")
    doc = (
        "See `serving/router/polcy.py`, `pipelines/train/`, `models/bundles/x` and [card](data/README.md).\n"
    )
    doc += "[gone](nowhere.md) [anchor](#x) `serving/router/policy.py`\n```bash\ncat serving/nope.py\n```\n"
    assert _missing_paths_in(doc, ROOT) == ["serving/router/polcy.py", "link nowhere.md"]
    assert _anchors("## 4. Speed: the router's deadline\n```\n# not a heading\n```\n") == {
        "4-speed-the-routers-deadline"
    }
