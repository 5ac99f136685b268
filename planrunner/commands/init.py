"""``planrunner init [DIR]``: set up a repository for plans reviewed in git and applied by CI.

Writes ``.gitattributes`` (ledgers merge by union), ``.gitignore`` (the ledger lock and
``--sim`` ledgers), an example plan with the editor modeline, ``schemas/plan.schema.json``
and the CI file (``--ci github|gitlab|none``). Never overwrites a file: an existing one is
left alone (and said so), and the two line-based files get only the lines they lack. Never
writes through a symbolic link (a cloned repository can point ``.gitignore`` anywhere).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from importlib.resources import files
from pathlib import Path

from planrunner import REPOSITORY, __version__
from planrunner.commands import options
from planrunner.errors import EXIT_OK, UsageError

DESCRIPTION = (
    "Write what a repository of plans needs: .gitattributes (*.ledger.jsonl merge=union), "
    ".gitignore (*.ledger.jsonl.lock, *.sim.ledger.jsonl), plans/example.yaml with the editor "
    "modeline, schemas/plan.schema.json, and the CI workflow. Existing files are never "
    "overwritten, and a symbolic link is never written through."
)
EPILOG = options.exit_codes(
    (0, "done"),
    (2, "DIR is not a directory, or a file to write is a symbolic link"),
    example="planrunner init .",
)

GITATTRIBUTES_LINES = ("*.ledger.jsonl merge=union",)
# The lock apply holds while it runs, and the ledgers of --sim runs: neither is committed.
GITIGNORE_LINES = ("*.ledger.jsonl.lock", "*.sim.ledger.jsonl")
SCHEMA_PATH = "schemas/plan.schema.json"
EXAMPLE_PATH = "plans/example.yaml"
GITHUB_PATH = ".github/workflows/planrunner.yml"
GITLAB_PATH = "ci/gitlab/planrunner.gitlab-ci.yml"
GITLAB_INCLUDE = "include:\n  - local: ci/gitlab/planrunner.gitlab-ci.yml\n"
# What the CI files install: planrunner's repository at this release's tag.
PACKAGE = f"planrunner @ git+{REPOSITORY}@v{__version__}"
DOCS = f"{REPOSITORY}/blob/v{__version__}/docs/ci.md"

# What each CI file needs set before it works, said as init's last line.
NEXT_STEP = {
    "github": (
        'next: create the environment "planrunner" (Settings > Environments; deployment '
        "branches: main only) with the secrets ENOS_ACCESS_KEY and ENOS_SECRET_KEY, and add "
        "any ${VAR} your plans use under the workflow's env:; see " + DOCS
    ),
    "gitlab": (
        "next: set the CI/CD variables ENOS_ACCESS_KEY and ENOS_SECRET_KEY (protected, masked), "
        "PLANRUNNER_PUSH_TOKEN (protected, masked; a project access token, role Developer, "
        "scope write_repository) and PLANRUNNER_NOTE_TOKEN (masked; role Reporter, scope api), "
        "plus any ${VAR} your plans use; see " + DOCS
    ),
    "none": (
        "next: apply reads ENOS_ACCESS_KEY and ENOS_SECRET_KEY (and any ${VAR} your plans "
        "use) from its environment; see " + DOCS
    ),
}

EXAMPLE_PLAN = """\
# yaml-language-server: $schema=../schemas/plan.schema.json
# An example plan. Edit it, then: planrunner validate plans/example.yaml
#                                 planrunner plan plans/example.yaml
# Its flow is disabled, so merging it as it is triggers nothing.
version: 1
target:
  gateway: https://apigw.example.com     # your EnOS API gateway; ${VAR} reads the environment
  orgId: o15589291262751
  userId: u-data-eng
timezone: Asia/Shanghai                  # default zone for times without an offset, and cron
flows:
  - name: sales-daily-backfill           # unique in the plan
    flowId: 3377
    enabled: false                       # set to true when the plan is ready
    cron: "0 2 * * *"
    from: 2026-01-01                     # inclusive
    to: 2026-01-31                       # inclusive; a date covers the whole day
"""

# The CI files, shipped as package data (planrunner/templates/): the same texts as
# ci/github/planrunner.yml and ci/gitlab/planrunner.gitlab-ci.yml (a test holds them equal).
GITHUB_WORKFLOW = files("planrunner").joinpath("templates/github.yml").read_text("utf-8")
GITLAB_TEMPLATE = files("planrunner").joinpath("templates/gitlab-ci.yml").read_text("utf-8")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """init's own options."""
    p.add_argument("dir", nargs="?", default=".", metavar="DIR", help="the repository (default .)")
    p.add_argument(
        "--ci",
        choices=("github", "gitlab", "none"),
        default="github",
        help="CI file to write: GitHub Actions workflow (default), GitLab CI template, or none",
    )


def main(args: argparse.Namespace) -> int:
    """Run from parsed options."""
    return run(args.dir, args.ci)


def run(directory: str, ci: str = "github") -> int:
    """Write every missing file under ``directory``; say what was done with each."""
    from planrunner import schema

    root = Path(directory)
    if not root.is_dir():
        raise UsageError(f"{directory}: not a directory")
    files = [".gitattributes", ".gitignore", EXAMPLE_PATH, SCHEMA_PATH]
    files += {"github": [GITHUB_PATH], "gitlab": [GITLAB_PATH, ".gitlab-ci.yml"]}.get(ci, [])
    for name in files:  # refuse before writing anything
        _refuse_links(root, name)
    said = [
        _ensure_lines(root / ".gitattributes", GITATTRIBUTES_LINES),
        _ensure_lines(root / ".gitignore", GITIGNORE_LINES),
        _create(root / EXAMPLE_PATH, EXAMPLE_PLAN),
        _create(root / SCHEMA_PATH, schema.text()),
    ]
    if ci == "github":
        said.append(_create(root / GITHUB_PATH, GITHUB_WORKFLOW))
    elif ci == "gitlab":
        said.append(_create(root / GITLAB_PATH, GITLAB_TEMPLATE))
        if (root / ".gitlab-ci.yml").exists():
            said.append(
                ".gitlab-ci.yml: left alone (exists); add to it:\n  " + GITLAB_INCLUDE.replace("\n", "\n  ").rstrip()
            )
        else:
            said.append(_create(root / ".gitlab-ci.yml", GITLAB_INCLUDE))
    for line in said:
        sys.stdout.write(line + "\n")
    sys.stdout.write(NEXT_STEP[ci] + "\n")
    return EXIT_OK


def _refuse_links(root: Path, name: str) -> None:
    """Refuse (exit 2) when the file or a directory on its way under ``root`` is a symlink."""
    path = root
    for part in Path(name).parts:
        path = path / part
        if path.is_symlink():
            raise UsageError(
                f"{path}: is a symbolic link (to {os.readlink(path)}); init never writes through one: "
                "replace it with a regular file or directory"
            )


def _open_nofollow(path: Path, flags: int) -> int:
    """``os.open`` that refuses a symbolic link in the last component (O_NOFOLLOW)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UsageError(f"{path}: is a symbolic link; init never writes through one") from None
        raise


def _create(path: Path, text: str) -> str:
    """Write ``text`` to a new file; never touch an existing one."""
    if path.exists() or path.is_symlink():
        return f"{path}: left alone (exists)"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = _open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return f"{path}: left alone (exists)"
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    return f"{path}: written"


def _ensure_lines(path: Path, lines: tuple[str, ...]) -> str:
    """Append each of ``lines`` the file lacks (created when missing)."""
    if not path.exists() and not path.is_symlink():
        return _create(path, "".join(x + "\n" for x in lines)).replace(
            ": written", f": written ({', '.join(lines)})"
        )
    fd = _open_nofollow(path, os.O_RDWR | os.O_APPEND)
    with os.fdopen(fd, "r+", encoding="utf-8", newline="\n") as f:
        text = f.read()
        have = {x.strip() for x in text.splitlines()}
        missing = [x for x in lines if x not in have]
        if not missing:
            return f"{path}: left alone (has {', '.join(lines)})"
        f.write(("" if not text or text.endswith("\n") else "\n") + "".join(x + "\n" for x in missing))
    return f"{path}: appended {', '.join(missing)}"
