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
from pathlib import Path

from planrunner import REPOSITORY, __version__
from planrunner.commands import options
from planrunner.errors import EXIT_OK, UsageError

HELP = "set up a repository: .gitattributes, .gitignore, example plan, schema, CI workflow"
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
PARENTS = ()

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

# The same text as ci/github/planrunner.yml in planrunner's repository (a test holds them equal).
GITHUB_WORKFLOW = r'''# planrunner: validate and plan in pull requests, apply on main, commit the ledgers back.
# Copy to .github/workflows/planrunner.yml (`planrunner init` writes it). See docs/ci.md.
#
# Repository settings it needs:
#   environment "planrunner" (Settings > Environments), deployment branches: main only,
#             with the secrets ENOS_ACCESS_KEY and ENOS_SECRET_KEY (the app key and secret
#             apply signs with). Only the apply job, on main, can read them.
#   variables any ${VAR} your plans' target uses (e.g. ENOS_USER_ID), under "env:" below.
# Your default branch is not main? Replace main in `branches:`, the apply job's `if:`,
# its checkout `ref:` and BRANCH.
name: planrunner

on:
  pull_request:
    paths: ["plans/**"]
  push:
    branches: [main]
    paths: ["plans/**"]
  # "Run workflow" re-applies main (after a failed run); on any other branch apply is skipped.
  workflow_dispatch:

permissions: {}

# The plans are plans/*.yaml and plans/*.yml, except the simulator's sim-flows.yaml: the files
# the pre-commit hook checks (each job lists them with the same `find`).

env:
  # planrunner itself, installed from its repository at a release tag, so a new release never
  # changes what a merge does without a pull request. A wheel URL or mirror works too.
  PLANRUNNER_PACKAGE: "planrunner @ git+https://github.com/planrunner/planrunner@v0.2.0"
  # "true": apply exactly the plan reviewed in the pull request (a saved plan, kept as the
  # review run's artifact) and refuse a plan that changed since; see docs/ci.md.
  SAVED_PLANS: "false"
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
      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1
        with:
          persist-credentials: false
      - uses: actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97 # v7.0.0
        with:
          python-version: "3.11"
      - name: Install planrunner
        run: python -m pip install --disable-pip-version-check "$PLANRUNNER_PACKAGE"
      - name: Validate
        # Problems show on the pull request's lines; an unset ${VAR} is only a warning.
        run: |
          mapfile -t plans < <(find plans -maxdepth 1 -type f \( -name '*.yaml' -o -name '*.yml' \) ! -name 'sim-flows.y*ml' | sort)
          if [ "${#plans[@]}" -eq 0 ]; then echo "no plans under plans/"; exit 0; fi
          planrunner validate --log-format text --format github "${plans[@]}"
      - name: Plan
        run: |
          mapfile -t plans < <(find plans -maxdepth 1 -type f \( -name '*.yaml' -o -name '*.yml' \) ! -name 'sim-flows.y*ml' | sort)
          mkdir -p "$RUNNER_TEMP/plan-comments" "$RUNNER_TEMP/saved-plans"
          for plan in "${plans[@]}"; do
            saved=()
            if [ "$SAVED_PLANS" = true ]; then
              saved=(--out "$RUNNER_TEMP/saved-plans/$(basename "$plan").plan.json")
            fi
            planrunner plan "$plan" --log-format text --format markdown "${saved[@]}" \
              > "$RUNNER_TEMP/plan-comments/$(basename "$plan").md"
          done
      - name: Keep the saved plans for the merge
        if: env.SAVED_PLANS == 'true'
        uses: actions/upload-artifact@bbbca2ddaa5d8feaa63e36b76fdaad77386f024f # v7.0.0
        with:
          name: planrunner-saved-plans
          path: ${{ runner.temp }}/saved-plans/
          if-no-files-found: ignore
          retention-days: 90
      - name: Post the plans (one comment per plan, updated on each push)
        env:
          GH_TOKEN: ${{ github.token }}
          PR: ${{ github.event.pull_request.number }}
          REPO: ${{ github.repository }}
        run: |
          # Each body starts with <!-- planrunner:PLANPATH -->: the comment that starts with
          # it is edited; without one, a comment is added.
          shopt -s nullglob
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
    # Only main's reviewed plans are applied: a push to main, or "Run workflow" on main.
    if: github.event_name != 'pull_request' && github.ref == 'refs/heads/main'
    runs-on: ubuntu-latest
    # The secrets live in this environment, limited to main (Settings > Environments).
    environment: planrunner
    permissions:
      contents: write # push the ledgers
      actions: read # SAVED_PLANS: fetch the review run's saved plans
      pull-requests: read # SAVED_PLANS: find the merged pull request
    # One apply at a time, whatever started it: two runs never send at once from two copies
    # of a ledger (its file lock only guards one machine). Never cancel an apply half-way.
    concurrency:
      group: planrunner-apply
      cancel-in-progress: false
    env:
      BRANCH: main
    steps:
      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1
        with:
          # The branch tip, not the pushed commit: it has the ledgers earlier runs committed.
          ref: main
          # No token in .git/config while planrunner runs; the commit step pushes with it.
          persist-credentials: false
      - uses: actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97 # v7.0.0
        with:
          python-version: "3.11"
      - name: Install planrunner
        run: python -m pip install --disable-pip-version-check "$PLANRUNNER_PACKAGE"
      - name: Fetch the reviewed saved plans
        if: env.SAVED_PLANS == 'true'
        env:
          GH_TOKEN: ${{ github.token }}
          REPO: ${{ github.repository }}
        run: |
          # The pull request merged as this run's commit, then its last successful review run.
          pr=$(gh api "repos/$REPO/commits/$GITHUB_SHA/pulls" --jq '.[0].number // empty')
          if [ -z "$pr" ]; then
            echo "::error::$GITHUB_SHA is not a merged pull request: no reviewed plan to apply"
            exit 2
          fi
          head=$(gh api "repos/$REPO/pulls/$pr" --jq .head.sha)
          run=$(gh run list --repo "$REPO" --workflow "$GITHUB_WORKFLOW" --commit "$head" \
            --event pull_request --status success --limit 1 --json databaseId --jq '.[0].databaseId // empty')
          if [ -z "$run" ]; then
            echo "::error::no successful review run for pull request #$pr: no reviewed plan to apply"
            exit 2
          fi
          gh run download "$run" --repo "$REPO" --name planrunner-saved-plans \
            --dir "$RUNNER_TEMP/saved-plans"
          echo "saved plans of pull request #$pr (run $run):"
          ls "$RUNNER_TEMP/saved-plans"
      - name: Apply
        env:
          ENOS_ACCESS_KEY: ${{ secrets.ENOS_ACCESS_KEY }}
          ENOS_SECRET_KEY: ${{ secrets.ENOS_SECRET_KEY }}
        run: |
          mapfile -t plans < <(find plans -maxdepth 1 -type f \( -name '*.yaml' -o -name '*.yml' \) ! -name 'sim-flows.y*ml' | sort)
          # Every plan gets its apply even when an earlier one failed; the job fails after.
          status=0
          for plan in "${plans[@]}"; do
            if [ "$SAVED_PLANS" = true ]; then
              # Exactly what was reviewed; refused (exit 2) when the plan changed since.
              saved="$RUNNER_TEMP/saved-plans/$(basename "$plan").plan.json"
              if [ ! -f "$saved" ]; then
                echo "::error::$plan: no saved plan from the pull request's review: not applied"
                status=2
                continue
              fi
              planrunner apply "$saved" --yes --log-format text || status=$?
            else
              planrunner apply "$plan" --yes --log-format text || status=$?
            fi
          done
          exit "$status"
      - name: Commit the ledgers back
        # Also after a failed apply: what it sent is recorded and must not be lost.
        if: always()
        env:
          GH_TOKEN: ${{ github.token }}
        run: |
          git config user.name "github-actions[bot]"
          git config user.email "41898282+github-actions[bot]@users.noreply.github.com"
          problems=0
          while IFS= read -r -d '' ledger; do
            [ -s "$ledger" ] || continue  # an apply that sent nothing: no file to commit
            # A killed apply can leave an incomplete last line (no newline). It was never
            # followed by a request, so cut it off, as the next apply would: committed, a
            # union merge would turn it into a corrupt line in the middle of the ledger.
            if [ -n "$(tail -c 1 "$ledger")" ]; then
              torn=$(tail -n 1 "$ledger" | wc -c)
              truncate -s "$(( $(wc -c < "$ledger") - torn ))" "$ledger"
              echo "::warning file=$ledger::cut off an incomplete last line ($torn bytes) left by a killed apply"
              [ -s "$ledger" ] || continue  # it held only that line
            fi
            if ! planrunner ledger --log-format text verify --ledger "$ledger" > /dev/null; then
              planrunner ledger --log-format text verify --ledger "$ledger" || true
              echo "::error file=$ledger::ledger verify found problems; committed as it is so no record is lost"
              problems=1
            fi
            git add -- "$ledger"
          done < <(git ls-files -z --modified --others --exclude-standard -- '*.ledger.jsonl')
          if git diff --cached --quiet; then
            echo "ledgers unchanged: nothing to commit"
            exit "$problems"
          fi
          git commit --quiet -m "planrunner: ledgers after apply [skip ci]" \
            -m "run $GITHUB_RUN_ID of $GITHUB_WORKFLOW"
          # The job token, for this push only (checkout kept it out of .git/config).
          auth="AUTHORIZATION: basic $(printf 'x-access-token:%s' "$GH_TOKEN" | base64 -w0)"
          # Another commit may have landed meanwhile: rebase onto it and push again. Ledgers
          # merge by union (.gitattributes), and their fold does not depend on line order.
          for attempt in 1 2 3 4 5; do
            if git -c "http.https://github.com/.extraheader=$auth" push origin "HEAD:$BRANCH"; then
              exit "$problems"
            fi
            echo "push rejected (attempt $attempt); rebasing onto $BRANCH"
            sleep "$attempt"
            git -c "http.https://github.com/.extraheader=$auth" pull --rebase origin "$BRANCH"
          done
          echo "::error::could not push the ledgers after 5 attempts"
          exit 1
'''

# The same text as ci/gitlab/planrunner.gitlab-ci.yml (a test holds them equal).
GITLAB_TEMPLATE = r'''# planrunner for GitLab CI: validate and plan in merge requests (one note per plan, updated
# on each push), apply on the default branch only, ledgers committed back. See docs/ci.md.
#
# Copy it into your repository and include it from .gitlab-ci.yml:
#   include:
#     - local: ci/gitlab/planrunner.gitlab-ci.yml
#
# CI/CD variables (Settings > CI/CD > Variables):
#   ENOS_ACCESS_KEY, ENOS_SECRET_KEY  protected and masked: only pipelines of protected
#                                     branches (the default branch) see them.
#   PLANRUNNER_NOTE_TOKEN             masked, not protected: a project access token with role
#                                     Reporter and scope api. It posts the merge-request notes
#                                     and cannot push (merge-request pipelines can read it).
#                                     With PLANRUNNER_SAVED_PLANS, apply reads the merge
#                                     request's saved plans with it (else CI_JOB_TOKEN).
#   PLANRUNNER_PUSH_TOKEN             protected and masked: a project access token with role
#                                     Developer (or the role allowed to push to the default
#                                     branch) and scope write_repository. It pushes the ledgers;
#                                     only default-branch pipelines see it. Or, instead, a
#                                     deploy key with write access and PLANRUNNER_PUSH_URL.
#   any ${VAR} your plans' target uses (e.g. ENOS_USER_ID), not secret.
#
# The plans are plans/*.yaml and plans/*.yml, except the simulator's sim-flows.yaml: the files
# the pre-commit hook checks.

stages: [test, deploy]

variables:
  # planrunner itself, from its repository at a release tag (pinned: a new release never
  # changes what a merge does without a merge request). A wheel URL or an internal mirror's
  # spec works too: set this variable in your .gitlab-ci.yml or the project's variables.
  PLANRUNNER_PACKAGE: "planrunner @ git+https://github.com/planrunner/planrunner@v0.2.0"
  # "true": apply exactly the plan reviewed in the merge request (a saved plan, kept as the
  # review job's artifact) and refuse a plan that changed since; see docs/ci.md.
  PLANRUNNER_SAVED_PLANS: "false"

.planrunner:
  image: python:3.11
  before_script:
    - python -m pip install --disable-pip-version-check --quiet "$PLANRUNNER_PACKAGE"
    - mapfile -t plans < <(find plans -maxdepth 1 -type f \( -name '*.yaml' -o -name '*.yml' \) ! -name 'sim-flows.y*ml' | sort)

planrunner-review:
  extends: .planrunner
  stage: test
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
      changes: ["plans/**/*"]
  script:
    - if [ "${#plans[@]}" -eq 0 ]; then echo "no plans under plans/"; exit 0; fi
    - planrunner validate --log-format text "${plans[@]}"
    - |
      if [ -z "${PLANRUNNER_NOTE_TOKEN:-}" ]; then
        echo "planrunner: PLANRUNNER_NOTE_TOKEN is not set: add it in Settings > CI/CD > Variables (a project access token, role Reporter, scope api; masked, not protected); see docs/ci.md" >&2
        exit 2
      fi
    - |
      for plan in "${plans[@]}"; do
        saved=()
        if [ "$PLANRUNNER_SAVED_PLANS" = true ]; then
          mkdir -p saved-plans
          saved=(--out "saved-plans/$(basename "$plan").plan.json")
        fi
        planrunner plan "$plan" --log-format text --format markdown "${saved[@]}" > plan-note.md
        python - plan-note.md <<'PY'
      # Edit the note that starts with this plan's marker, or add one.
      import json, os, sys, urllib.error, urllib.request
      body = open(sys.argv[1], encoding="utf-8").read()
      marker = body.splitlines()[0]
      api = "{}/projects/{}/merge_requests/{}/notes".format(
          os.environ["CI_API_V4_URL"], os.environ["CI_PROJECT_ID"], os.environ["CI_MERGE_REQUEST_IID"])
      headers = {"PRIVATE-TOKEN": os.environ["PLANRUNNER_NOTE_TOKEN"], "Content-Type": "application/json"}
      def call(method, url, data=None):
          payload = None if data is None else json.dumps(data).encode()
          request = urllib.request.Request(url, payload, headers, method=method)
          try:
              with urllib.request.urlopen(request) as answer:
                  return json.load(answer), answer.headers.get("X-Next-Page", "")
          except (urllib.error.URLError, OSError, ValueError) as e:
              sys.exit("planrunner: {} merge-request notes failed: {} (check PLANRUNNER_NOTE_TOKEN: role Reporter, scope api)".format(method, e))
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
  # PLANRUNNER_SAVED_PLANS: the saved plans, fetched by the apply job of the merge.
  artifacts:
    paths: [saved-plans/]
    expire_in: 90 days

planrunner-apply:
  extends: .planrunner
  stage: deploy
  # One apply at a time per project: two pipelines never send at once.
  resource_group: planrunner-apply
  rules:
    # The default branch only: merge-request and other branches' pipelines never apply.
    - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH && $CI_PIPELINE_SOURCE != "merge_request_event"
      changes: ["plans/**/*"]
  variables:
    GIT_DEPTH: "0"
  script:
    # Without a way to push the ledgers back, apply sends nothing.
    - |
      if [ -z "${PLANRUNNER_PUSH_URL:-}" ] && [ -z "${PLANRUNNER_PUSH_TOKEN:-}" ]; then
        echo "planrunner: PLANRUNNER_PUSH_TOKEN is not set: add it in Settings > CI/CD > Variables (a project access token, role Developer, scope write_repository; protected and masked), or set PLANRUNNER_PUSH_URL for a deploy key; see docs/ci.md" >&2
        exit 2
      fi
    # The branch tip, not the pipeline's commit: it has the ledgers earlier runs committed.
    - git fetch --quiet origin "$CI_COMMIT_BRANCH"
    - git checkout --quiet -B "$CI_COMMIT_BRANCH" FETCH_HEAD
    # PLANRUNNER_SAVED_PLANS: fetch the saved plans of the merge request merged as this
    # commit (its head pipeline's planrunner-review job's artifacts), with the note token
    # when it is set, else the job token. No reviewed plan: exit 2, nothing sent.
    - saved_dir=$(mktemp -d)
    - |
      if [ "$PLANRUNNER_SAVED_PLANS" = true ]; then
        python - "$saved_dir" <<'PY'
      import io, json, os, sys, urllib.error, urllib.request, zipfile
      env = os.environ
      api = "{}/projects/{}".format(env["CI_API_V4_URL"], env["CI_PROJECT_ID"])
      if env.get("PLANRUNNER_NOTE_TOKEN"):
          headers = {"PRIVATE-TOKEN": env["PLANRUNNER_NOTE_TOKEN"]}
      else:
          headers = {"JOB-TOKEN": env.get("CI_JOB_TOKEN", "")}
      def refuse(why):
          print("planrunner: {}: no reviewed plan to apply".format(why), file=sys.stderr)
          sys.exit(2)
      def get(path, what):
          try:
              with urllib.request.urlopen(urllib.request.Request(api + path, headers=headers)) as answer:
                  return answer.read()
          except urllib.error.HTTPError as e:
              if e.code == 404 and path.endswith("/artifacts"):
                  refuse("{} not found (expired?)".format(what))
              sys.exit("planrunner: GET {} failed: {} (the job token, or PLANRUNNER_NOTE_TOKEN, must read merge requests, pipelines and job artifacts)".format(what, e))
          except (urllib.error.URLError, OSError, ValueError) as e:
              sys.exit("planrunner: GET {} failed: {}".format(what, e))
      sha, branch = env["CI_COMMIT_SHA"], env["CI_COMMIT_BRANCH"]
      mrs = json.loads(get("/repository/commits/{}/merge_requests".format(sha), "the commit's merge requests"))
      merged = [m for m in mrs if m.get("state") == "merged" and m.get("target_branch") == branch]
      if not merged:
          refuse("{} is not the merge of a merge request into {}".format(sha[:12], branch))
      iid = merged[0]["iid"]
      mr = json.loads(get("/merge_requests/{}".format(iid), "merge request !{}".format(iid)))
      pipeline = (mr.get("head_pipeline") or {}).get("id")
      if not pipeline:
          refuse("merge request !{} has no pipeline".format(iid))
      jobs = json.loads(get("/pipelines/{}/jobs?scope[]=success&per_page=100".format(pipeline), "pipeline {}'s jobs".format(pipeline)))
      job = next((j["id"] for j in jobs if j.get("name") == "planrunner-review"), None)
      if job is None:
          refuse("merge request !{}: pipeline {} has no successful planrunner-review job".format(iid, pipeline))
      data = get("/jobs/{}/artifacts".format(job), "the artifacts of job {}".format(job))
      try:
          with zipfile.ZipFile(io.BytesIO(data)) as archive:
              names = [n for n in archive.namelist() if n.startswith("saved-plans/") and n.count("/") == 1 and n.endswith(".plan.json")]
              for name in names:
                  with open(os.path.join(sys.argv[1], name.split("/")[1]), "wb") as f:
                      f.write(archive.read(name))
      except zipfile.BadZipFile as e:
          sys.exit("planrunner: the artifacts of job {} are not a zip archive: {}".format(job, e))
      print("saved plans of merge request !{} (pipeline {}, job {}): {}".format(
          iid, pipeline, job, " ".join(sorted(n.split("/")[1] for n in names)) or "none"))
      PY
      fi
    # Every plan gets its apply even when one fails; the ledgers are committed either way.
    - status=0
    - |
      for plan in "${plans[@]}"; do
        if [ "$PLANRUNNER_SAVED_PLANS" = true ]; then
          # Exactly what was reviewed; refused (exit 2) when the plan changed since.
          saved="$saved_dir/$(basename "$plan").plan.json"
          if [ ! -f "$saved" ]; then
            echo "planrunner: $plan: no saved plan from the merge request's review: not applied" >&2
            status=2
            continue
          fi
          planrunner apply "$saved" --yes --log-format text || status=$?
        else
          planrunner apply "$plan" --yes --log-format text || status=$?
        fi
      done
    - git config user.name "planrunner"
    - git config user.email "planrunner@${CI_SERVER_HOST:-localhost}"
    - |
      while IFS= read -r -d '' ledger; do
        [ -s "$ledger" ] || continue  # an apply that sent nothing: no file to commit
        # A killed apply can leave an incomplete last line (no newline), never followed by a
        # request: cut it off, as the next apply would (a union merge would make it corrupt).
        if [ -n "$(tail -c 1 "$ledger")" ]; then
          torn=$(tail -n 1 "$ledger" | wc -c)
          truncate -s "$(( $(wc -c < "$ledger") - torn ))" "$ledger"
          echo "$ledger: cut off an incomplete last line ($torn bytes) left by a killed apply"
          [ -s "$ledger" ] || continue  # it held only that line
        fi
        if ! planrunner ledger --log-format text verify --ledger "$ledger" > /dev/null; then
          planrunner ledger --log-format text verify --ledger "$ledger" || true
          echo "$ledger: ledger verify found problems; committed as it is so no record is lost" >&2
          status=3
        fi
        git add -- "$ledger"
      done < <(git ls-files -z --modified --others --exclude-standard -- '*.ledger.jsonl')
    - |
      if git diff --cached --quiet; then
        echo "ledgers unchanged: nothing to commit"
      else
        git commit --quiet -m "planrunner: ledgers after apply [skip ci]" -m "pipeline $CI_PIPELINE_ID"
        push_url="${PLANRUNNER_PUSH_URL:-${CI_SERVER_PROTOCOL}://oauth2:${PLANRUNNER_PUSH_TOKEN:-}@${CI_SERVER_FQDN}/${CI_PROJECT_PATH}.git}"
        # Rebase onto a commit that landed meanwhile (ledgers merge by union) and retry.
        pushed=no
        for attempt in 1 2 3 4 5; do
          if git push --quiet "$push_url" "HEAD:$CI_COMMIT_BRANCH"; then pushed=yes; break; fi
          echo "push rejected (attempt $attempt); rebasing onto $CI_COMMIT_BRANCH"
          sleep "$attempt"
          git pull --quiet --rebase "$push_url" "$CI_COMMIT_BRANCH"
        done
        if [ "$pushed" != yes ]; then echo "planrunner: could not push the ledgers after 5 attempts" >&2; exit 1; fi
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
