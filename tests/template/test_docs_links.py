"""Every relative link in README.md and docs/*.md leads somewhere.

GIVEN the README and every page under docs/
WHEN each relative markdown link (inline, image or reference definition, outside code
     blocks and code spans) is resolved against the file that holds it
THEN its file exists inside the repository, and its `#anchor`, if any, is a heading of
     the target page as GitHub names it (lowercased, punctuation but `-` and `_`
     dropped, each space a `-`, a repeated heading suffixed `-1`, `-2`, ...), or an
     explicit `<a name>`/`id` in it.

Links with a scheme (https:, mailto:, ...) are not fetched. An anchor into a file that is
not markdown (`#L10`) is not checked.
"""

from __future__ import annotations

import re
import tempfile
import unittest
from pathlib import Path
from urllib.parse import unquote

REPO = Path(__file__).resolve().parents[2]

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HTML_ANCHOR = re.compile(r"<a\s[^>]*\b(?:name|id)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:|^//")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    out, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)[0] * len(m.group(1))
        elif fence is not None:
            if m and m.group(1).startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
        else:
            out.append((number, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a page has: its headings' slugs (repeats numbered) and HTML anchors."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(text):
        m = HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
        out.update(HTML_ANCHOR.findall(line))
    return out


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every link in the prose; a link's text may span lines."""
    kept = dict(prose_lines(text))
    lines = [CODE_SPAN.sub("", kept.get(n, "")) for n in range(1, len(text.splitlines()) + 1)]
    found = [(n, m.group(1)) for n, line in enumerate(lines, 1) if (m := REFERENCE_DEFINITION.match(line))]
    prose = "\n".join(lines)
    found += [(prose.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in INLINE_LINK.finditer(prose)]
    return [(n, t[1:-1] if t.startswith("<") else t) for n, t in sorted(found)]


def broken_links(page: Path, root: Path) -> list[str]:
    """What is wrong with each relative link of `page`, as `page:line: target: why`."""
    problems = []
    text = page.read_text()
    where = page.relative_to(root)
    for number, target in links(text):
        if SCHEME.match(target):
            continue
        path, _, anchor = target.partition("#")
        path = unquote(path)
        if not path:
            resolved = page
        elif path.startswith("/"):
            resolved = (root / path.lstrip("/")).resolve()
        else:
            resolved = (page.parent / path).resolve()
        if not resolved.is_relative_to(root.resolve()):
            problems.append(f"{where}:{number}: {target}: leaves the repository")
        elif not resolved.exists():
            problems.append(f"{where}:{number}: {target}: no such file")
        elif anchor and resolved.suffix.lower() == ".md":
            if resolved.is_dir():
                problems.append(f"{where}:{number}: {target}: an anchor into a directory")
            elif unquote(anchor) not in anchors(resolved.read_text()):
                problems.append(f"{where}:{number}: {target}: no heading #{anchor} in {resolved.relative_to(root.resolve())}")
    return problems


def pages(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


class DocsLinksTest(unittest.TestCase):
    def test_the_docs_are_there(self) -> None:
        # The README links into docs/; an empty glob would make the check below vacuous.
        self.assertTrue((REPO / "README.md").is_file())
        self.assertGreater(len(pages(REPO)), 1, "no docs/*.md found")

    def test_every_relative_link_resolves(self) -> None:
        for page in pages(REPO):
            with self.subTest(page=str(page.relative_to(REPO))):
                problems = broken_links(page, REPO)
                self.assertEqual(problems, [], "broken links:\n" + "\n".join(problems))


class CheckerTest(unittest.TestCase):
    """The checker itself: it must be able to fail."""

    def test_slugs_follow_github(self) -> None:
        self.assertEqual(slug("One rotation per user, and a ledger"), "one-rotation-per-user-and-a-ledger")
        self.assertEqual(slug("Deploying from CI (GitHub Actions, OIDC)"), "deploying-from-ci-github-actions-oidc")
        self.assertEqual(slug("The README's manual run (`by_hand.py`)"), "the-readmes-manual-run-by_handpy")
        self.assertEqual(slug("A [link](x.md) -- and  two spaces"), "a-link----and--two-spaces")

    def test_broken_links_are_reported(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            root = Path(d).resolve()
            (root / "docs").mkdir()
            (root / "docs" / "b.md").write_text("# Bee page\n\n## Twice\n\n## Twice\n\n<a name=\"custom\"></a>\n")
            (root / "README.md").write_text(
                "# Top\n\n"
                "[ok](docs/b.md) [ok](docs/b.md#bee-page) [ok](docs/b.md#twice-1) [ok](#top)\n"
                "[ok](docs/b.md#custom) [ok](https://example.com/x.md#nothing) `[not a link](gone.md)`\n"
                "[missing file](docs/gone.md)\n"
                "[missing anchor](docs/b.md#twice-2)\n"
                "[missing here](#nowhere) [a link over\ntwo lines](docs/b.md#nope)\n"
                "```sh\n# Fenced\n[fenced, not a link](gone.md)\n```\n"
                "[fenced heading](#fenced)\n"
                "[outside](../elsewhere.md)\n"
                "[ref]: docs/none.md\n"
            )
            problems = broken_links(root / "README.md", root)
        self.assertEqual(
            problems,
            [
                "README.md:5: docs/gone.md: no such file",
                "README.md:6: docs/b.md#twice-2: no heading #twice-2 in docs/b.md",
                "README.md:7: #nowhere: no heading #nowhere in README.md",
                "README.md:8: docs/b.md#nope: no heading #nope in docs/b.md",
                "README.md:13: #fenced: no heading #fenced in README.md",
                "README.md:14: ../elsewhere.md: leaves the repository",
                "README.md:15: docs/none.md: no such file",
            ],
        )


if __name__ == "__main__":
    unittest.main()
