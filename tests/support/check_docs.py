#!/usr/bin/env python3
"""The documentation's links: every relative link in README.md, CONTRIBUTING.md and docs/ names a file of the
repository, and every #anchor a heading of that file (GitHub's heading slugs). The README stays the front door:
at most 10 KB. Exits 1 with one line per problem."""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
README_LIMIT = 10 * 1024
LINK = re.compile(r"\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)\)")


def slug(heading):
    text = re.sub(r"[`*_]|<[^>]+>", "", heading).strip().lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def outside_code(text):
    """The lines of a Markdown file outside fenced code blocks, with inline code removed."""
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield re.sub(r"`[^`]*`", "", line) if not line.startswith("#") else line


def anchors(path):
    found, seen = set(), {}
    for line in outside_code(path.read_text()):
        m = re.match(r"^#{1,6} (.*)", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            found.add(s if n == 0 else f"{s}-{n}")
    return found


def main():
    pages = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
    problems, links = [], 0
    for page in pages:
        for line in outside_code(page.read_text()):
            for target in LINK.findall(line):
                if re.match(r"^[a-z]+:", target):
                    continue
                links += 1
                path, _, anchor = target.partition("#")
                dest = (page.parent / path).resolve() if path else page
                where = f"{page.relative_to(ROOT)}: link {target}"
                if not dest.exists():
                    problems.append(f"{where}: no such file")
                elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
                    problems.append(f"{where}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    size = (ROOT / "README.md").stat().st_size
    if size > README_LIMIT:
        problems.append(f"README.md is {size} bytes: keep it under {README_LIMIT} and move detail into docs/")
    for p in problems:
        print(p)
    print(f"check_docs: {len(pages)} pages, {links} relative links, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
