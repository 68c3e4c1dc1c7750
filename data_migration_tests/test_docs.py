"""The README and docs/ (issue 24): a README of at most 200 lines whose every command a test runs,
pages that link to each other, and links that resolve: every relative link names a file of the
repository, and every `#anchor` a heading of the page it points to (GitHub's slugs).

Which test runs each README command: the "The Dagster UI and CLI" block,
test_entry_points.py::test_every_command_of_the_readmes_dagster_block_in_the_activated_shell (it reads
the README); `./quickstart run`, its newcomer fixture; `./quickstart test`, `.ci/run` (checked
below); the "Add an export" block, test_entry_points.py::test_the_readmes_add_an_export_section_as_written.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from data_migration_tests.support import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
DOCS = PROJECT_ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = heading.strip().lstrip("#").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, fenced = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            found.add(slug(line))
    return found


def links(page: Path) -> list[str]:
    """The page's link targets, outside code blocks."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return _LINK.findall(text)


def test_the_readme_is_short():
    assert len(README.read_text().splitlines()) <= 200


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(PROJECT_ROOT)))
def test_every_link_resolves(page: Path):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.name}")
    assert not broken, broken


def test_every_page_is_reachable_from_the_index():
    index = DOCS / "README.md"
    linked = {(DOCS / target.partition("#")[0]).resolve() for target in links(index)}
    missing = [page.name for page in DOCS.glob("*.md") if page != index and page.resolve() not in linked]
    assert not missing, f"docs/README.md does not link to {missing}"
    readme_targets = {target.partition("#")[0] for target in links(README)}
    assert "docs/README.md" in readme_targets


def test_every_readme_command_has_a_test_that_runs_it():
    """The README's bash blocks hold exactly the commands the tests named above run."""
    text = README.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        commands += [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    dagster_block = text[text.index("## The Dagster UI and CLI") :]
    dagster_block = dagster_block[dagster_block.index("```bash\n") + 8 : dagster_block.index("```\n", 10)]
    from_dagster_block = {line.split("#")[0].strip() for line in dagster_block.splitlines()}
    others = [command for command in commands if command not in from_dagster_block]
    assert others == [
        "./quickstart run",
        "./quickstart test",
        "data-migration run --select NATION",
        "data-migration run --config config/round_trip.yaml",
    ], others
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    assert "./quickstart test" in ci and "./quickstart lint" in ci


def test_the_readme_key_pair_commands_print_the_public_key_as_create_user_takes_it(tmp_path: Path):
    """Snowflake's key-pair page: the key in `CREATE USER … RSA_PUBLIC_KEY = '…'` goes without its
    PEM delimiter lines (https://docs.snowflake.com/en/user-guide/key-pair-auth). The README's two
    commands, run as written, give exactly that: one line of base64 of the private key's public key."""
    import base64
    import shutil
    import subprocess

    from cryptography.hazmat.primitives import serialization

    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed; the README's key-pair commands need it")
    text = " ".join(README.read_text().split())  # inline code may wrap across lines
    make = "openssl genrsa 2048 | openssl pkcs8 -topk8 -nocrypt -out rsa_key.p8"
    show = "openssl rsa -in rsa_key.p8 -pubout | sed '/-----/d' | tr -d '\\n'"
    assert f"`{make}`" in text and f"`{show}`" in text
    subprocess.run(["bash", "-c", make], cwd=tmp_path, check=True, capture_output=True)
    printed = subprocess.run(["bash", "-c", show], cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    assert "-----" not in printed and "\n" not in printed
    private = serialization.load_pem_private_key((tmp_path / "rsa_key.p8").read_bytes(), password=None)
    public = serialization.load_der_public_key(base64.b64decode(printed))
    assert public.public_numbers() == private.public_key().public_numbers()  # type: ignore[union-attr]
