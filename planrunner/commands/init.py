"""``planrunner init [DIR]``: set up a repository for plans reviewed in git and applied by CI.

Writes ``.gitattributes`` (ledgers merge by union), ``.gitignore`` (the ledger lock), an
example plan with the editor modeline, ``schemas/plan.schema.json`` and the CI file
(``--ci github|gitlab|none``). Never overwrites a file: an existing one is left alone (and
said so), and the two line-based files get only the lines they lack.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from planrunner.commands import options
from planrunner.errors import EXIT_OK, UsageError

HELP = "set up a repository: .gitattributes, .gitignore, example plan, schema, CI workflow"
DESCRIPTION = (
    "Write what a repository of plans needs: .gitattributes (*.ledger.jsonl merge=union), "
    ".gitignore (*.ledger.jsonl.lock), plans/example.yaml with the editor modeline, "
    "schemas/plan.schema.json, and the CI workflow. Existing files are never overwritten."
)
EPILOG = options.exit_codes((0, "done"), (2, "DIR is not a directory"), example="planrunner init .")
PARENTS = ()

GITATTRIBUTES_LINE = "*.ledger.jsonl merge=union"
GITIGNORE_LINE = "*.ledger.jsonl.lock"
SCHEMA_PATH = "schemas/plan.schema.json"
EXAMPLE_PATH = "plans/example.yaml"
GITHUB_PATH = ".github/workflows/planrunner.yml"
GITLAB_PATH = "ci/gitlab/planrunner.gitlab-ci.yml"
GITLAB_INCLUDE = "include:\n  - local: ci/gitlab/planrunner.gitlab-ci.yml\n"

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

# The same text as ci/github/planrunner.yml in planrunner's repository (a test holds them equal).
GITHUB_WORKFLOW = r'''# planrunner: validate and plan in pull requests, apply on merge, commit the ledgers back.
# Copy to .github/workflows/planrunner.yml (`planrunner init` writes it). See docs/ci.md.
#
# Repository settings it needs:
#   secrets   ENOS_ACCESS_KEY, ENOS_SECRET_KEY: the app key and secret apply signs with.
#   variables any ${VAR} your plans' target uses (e.g. ENOS_USER_ID), under "env:" below.
name: planrunner

on:
  pull_request:
    paths: ["plans/**"]
  push:
    branches: [main]
    paths: ["plans/**"]
  workflow_dispatch:

permissions:
  contents: read

env:
  # The plans to check, plan and apply: a shell glob (plans/*.ledger.jsonl never match it).
  PLANS: plans/*.yaml
  # The planrunner release to install: a pip version spec, pinned so a new release never
  # changes what a merge does without a pull request.
  PLANRUNNER_VERSION: "==0.1.0"
  # Non-secret values your plans reference as ${VAR}:
  # ENOS_USER_ID: ${{ vars.ENOS_USER_ID }}

defaults:
  run:
    shell: bash

jobs:
  review:
    if: github.event_name == 'pull_request'
    runs-on: ubuntu-latest
    permissions:
      contents: read
      pull-requests: write
    concurrency:
      group: planrunner-review-${{ github.event.pull_request.number }}
      cancel-in-progress: true
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - name: Install planrunner
        run: python -m pip install --disable-pip-version-check "planrunner${PLANRUNNER_VERSION}"
      - name: Validate
        # Problems show on the pull request's lines; an unset ${VAR} is only a warning.
        run: planrunner validate --format github $PLANS
      - name: Plan
        run: |
          mkdir -p "$RUNNER_TEMP/plan-comments"
          for plan in $PLANS; do
            planrunner plan "$plan" --format markdown \
              > "$RUNNER_TEMP/plan-comments/$(basename "$plan").md"
          done
      - name: Post the plans (one comment per plan, updated on each push)
        env:
          GH_TOKEN: ${{ github.token }}
          PR: ${{ github.event.pull_request.number }}
          REPO: ${{ github.repository }}
        run: |
          # Each body starts with <!-- planrunner:PLANPATH -->: the comment that starts with
          # it is edited; without one, a comment is added.
          for body in "$RUNNER_TEMP"/plan-comments/*.md; do
            marker=$(head -n 1 "$body")
            id=$(gh api --paginate "repos/$REPO/issues/$PR/comments" \
              | jq -r --arg marker "$marker" '.[] | select(.body | startswith($marker)) | .id' \
              | head -n 1)
            if [ -n "$id" ]; then
              gh api --method PATCH "repos/$REPO/issues/comments/$id" -F "body=@$body" > /dev/null
              echo "updated comment $id for $(basename "$body" .md)"
            else
              gh api --method POST "repos/$REPO/issues/$PR/comments" -F "body=@$body" > /dev/null
              echo "added a comment for $(basename "$body" .md)"
            fi
          done

  apply:
    if: github.event_name != 'pull_request'
    runs-on: ubuntu-latest
    permissions:
      contents: write
    # One apply at a time: two merges never send from two runners at once (a ledger's file
    # lock only guards one machine). Never cancel an apply half-way.
    concurrency:
      group: planrunner-apply-${{ github.ref }}
      cancel-in-progress: false
    steps:
      - uses: actions/checkout@v4
        with:
          # The branch tip, not the merge commit: it has the ledgers earlier runs committed.
          ref: ${{ github.ref_name }}
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - name: Install planrunner
        run: python -m pip install --disable-pip-version-check "planrunner${PLANRUNNER_VERSION}"
      - name: Apply
        env:
          ENOS_ACCESS_KEY: ${{ secrets.ENOS_ACCESS_KEY }}
          ENOS_SECRET_KEY: ${{ secrets.ENOS_SECRET_KEY }}
        run: |
          # Every plan gets its apply even when an earlier one failed; the job fails after.
          status=0
          for plan in $PLANS; do
            planrunner apply "$plan" --yes || status=$?
          done
          exit "$status"
      - name: Commit the ledgers back
        # Also after a failed apply: what it sent is recorded and must not be lost.
        if: always()
        env:
          BRANCH: ${{ github.ref_name }}
        run: |
          git config user.name "github-actions[bot]"
          git config user.email "41898282+github-actions[bot]@users.noreply.github.com"
          git ls-files -z --modified --others --exclude-standard -- '*.ledger.jsonl' \
            | xargs -0 -r git add --
          if git diff --cached --quiet; then
            echo "ledgers unchanged: nothing to commit"
            exit 0
          fi
          git commit --quiet -m "planrunner: ledgers after apply [skip ci]" \
            -m "run $GITHUB_RUN_ID of $GITHUB_WORKFLOW"
          # Another commit may have landed meanwhile: rebase onto it and push again. Ledgers
          # merge by union (.gitattributes), and their fold does not depend on line order.
          for attempt in 1 2 3 4 5; do
            if git push origin "HEAD:$BRANCH"; then
              exit 0
            fi
            echo "push rejected (attempt $attempt); rebasing onto $BRANCH"
            sleep "$attempt"
            git pull --rebase origin "$BRANCH"
          done
          echo "::error::could not push the ledgers after 5 attempts"
          exit 1
'''

# The same text as ci/gitlab/planrunner.gitlab-ci.yml (a test holds them equal).
GITLAB_TEMPLATE = r'''# planrunner for GitLab CI: validate and plan in merge requests (one note per plan, updated
# on each push), apply on the default branch, ledgers committed back. See docs/ci.md.
#
# Copy it into your repository and include it from .gitlab-ci.yml:
#   include:
#     - local: ci/gitlab/planrunner.gitlab-ci.yml
#
# CI/CD variables (Settings > CI/CD > Variables):
#   ENOS_ACCESS_KEY, ENOS_SECRET_KEY  protected and masked: only pipelines of protected
#                                     branches (the default branch) see them.
#   PLANRUNNER_TOKEN                  a project access token (role Developer; scopes api and
#                                     write_repository), masked: posts the merge-request note
#                                     and pushes the ledgers. Not protected if merge requests
#                                     should get notes too; then give it only these scopes.
#   any ${VAR} your plans' target uses (e.g. ENOS_USER_ID), not secret.

stages: [test, deploy]

variables:
  PLANS: "plans/*.yaml"
  # The planrunner release to install: a pip version spec, pinned.
  PLANRUNNER_VERSION: "==0.1.0"

.planrunner:
  image: python:3.11
  before_script:
    - python -m pip install --disable-pip-version-check --quiet "planrunner${PLANRUNNER_VERSION}"

planrunner-review:
  extends: .planrunner
  stage: test
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
      changes: ["plans/**/*"]
  script:
    - planrunner validate $PLANS
    - |
      for plan in $PLANS; do
        planrunner plan "$plan" --format markdown > plan-note.md
        python - plan-note.md <<'PY'
      # Edit the note that starts with this plan's marker, or add one.
      import json, os, sys, urllib.request
      body = open(sys.argv[1], encoding="utf-8").read()
      marker = body.splitlines()[0]
      api = "{}/projects/{}/merge_requests/{}/notes".format(
          os.environ["CI_API_V4_URL"], os.environ["CI_PROJECT_ID"], os.environ["CI_MERGE_REQUEST_IID"])
      headers = {"PRIVATE-TOKEN": os.environ["PLANRUNNER_TOKEN"], "Content-Type": "application/json"}
      def call(method, url, data=None):
          payload = None if data is None else json.dumps(data).encode()
          request = urllib.request.Request(url, payload, headers, method=method)
          with urllib.request.urlopen(request) as answer:
              return json.load(answer), answer.headers.get("X-Next-Page", "")
      page, found = "1", None
      while page and found is None:
          notes, page = call("GET", api + "?per_page=100&page=" + page)
          found = next((n["id"] for n in notes if n["body"].startswith(marker)), None)
      if found is None:
          call("POST", api, {"body": body})
      else:
          call("PUT", "{}/{}".format(api, found), {"body": body})
      PY
      done

planrunner-apply:
  extends: .planrunner
  stage: deploy
  # One apply at a time per project: two pipelines never send at once.
  resource_group: planrunner-apply
  rules:
    - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH
      changes: ["plans/**/*"]
  variables:
    GIT_DEPTH: "0"
  script:
    # The branch tip, not the pipeline's commit: it has the ledgers earlier runs committed.
    - git fetch --quiet origin "$CI_COMMIT_BRANCH"
    - git checkout --quiet -B "$CI_COMMIT_BRANCH" FETCH_HEAD
    # Every plan gets its apply even when one fails; the ledgers are committed either way.
    - status=0
    - for plan in $PLANS; do planrunner apply "$plan" --yes || status=$?; done
    - git config user.name "planrunner"
    - git config user.email "planrunner@${CI_SERVER_HOST:-localhost}"
    - git ls-files -z --modified --others --exclude-standard -- '*.ledger.jsonl' | xargs -0 -r git add --
    - |
      if git diff --cached --quiet; then
        echo "ledgers unchanged: nothing to commit"
      else
        git commit --quiet -m "planrunner: ledgers after apply [skip ci]" -m "pipeline $CI_PIPELINE_ID"
        push_url="${PLANRUNNER_PUSH_URL:-${CI_SERVER_PROTOCOL}://oauth2:${PLANRUNNER_TOKEN}@${CI_SERVER_FQDN}/${CI_PROJECT_PATH}.git}"
        # Rebase onto a commit that landed meanwhile (ledgers merge by union) and retry.
        pushed=no
        for attempt in 1 2 3 4 5; do
          if git push --quiet "$push_url" "HEAD:$CI_COMMIT_BRANCH"; then pushed=yes; break; fi
          echo "push rejected (attempt $attempt); rebasing onto $CI_COMMIT_BRANCH"
          sleep "$attempt"
          git pull --quiet --rebase "$push_url" "$CI_COMMIT_BRANCH"
        done
        if [ "$pushed" != yes ]; then echo "could not push the ledgers" >&2; exit 1; fi
      fi
    - exit "$status"
'''


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
    said = [
        _ensure_line(root / ".gitattributes", GITATTRIBUTES_LINE),
        _ensure_line(root / ".gitignore", GITIGNORE_LINE),
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
    sys.stdout.write(
        "next: set the secrets ENOS_ACCESS_KEY and ENOS_SECRET_KEY in your CI settings; "
        "see docs/ci.md in planrunner's repository\n"
    )
    return EXIT_OK


def _create(path: Path, text: str) -> str:
    """Write ``text`` to a new file; never touch an existing one."""
    if path.exists():
        return f"{path}: left alone (exists)"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "x", encoding="utf-8", newline="\n") as f:
            f.write(text)
    except FileExistsError:
        return f"{path}: left alone (exists)"
    return f"{path}: written"


def _ensure_line(path: Path, line: str) -> str:
    """Append ``line`` unless the file already has it (created when missing)."""
    if not path.exists():
        return _create(path, line + "\n").replace(": written", f": written ({line})")
    text = path.read_text(encoding="utf-8")
    if line in (x.strip() for x in text.splitlines()):
        return f"{path}: left alone (has {line})"
    with open(path, "a", encoding="utf-8", newline="\n") as f:
        f.write(("" if not text or text.endswith("\n") else "\n") + line + "\n")
    return f"{path}: appended {line}"
