"""The CI recipes users copy: run as written, against the simulator, in temporary git repos.

The GitHub workflow's jobs are read from ci/github/planrunner.yml and their `run:` scripts
executed the way the runner does (bash -eo pipefail, a failed step skips the rest except
`if: always()`), with `origin` a bare repository in tmp; the GitLab template's scripts are
run the same way. The workflow, the action and the GitLab template are checked against
their published schemas (check-jsonschema, offline), and every GitHub file with actionlint
and zizmor (offline). The wheel is built without a download and its contents checked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from planrunner import REPOSITORY, __version__, ledger
from planrunner.commands import init
from planrunner.errors import UsageError
from planrunner.sim import SimFlow, Simulator
from testing import FAST_ENV, ROOT, SIM_ENV, venv_tool

WORKFLOW = ROOT / "ci" / "github" / "planrunner.yml"
GITLAB = ROOT / "ci" / "gitlab" / "planrunner.gitlab-ci.yml"
ACTION = ROOT / "action.yml"
OWN_WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
HOOKS = ROOT / ".pre-commit-hooks.yaml"
SCHEMA_ID = f"https://planrunner.dev/schemas/{__version__}/plan-v1.schema.json"
MODELINE = "# yaml-language-server: $schema=../schemas/plan.schema.json"

GIT_ID = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


# ---------------------------------------------------------------- schemas, pins, copies


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ("vendor.github-workflows", WORKFLOW),
        ("vendor.github-actions", ACTION),
        ("vendor.gitlab-ci", GITLAB),
        *(("vendor.github-workflows", p) for p in OWN_WORKFLOWS),
    ],
    ids=lambda x: x if isinstance(x, str) else x.name,
)
def test_ci_files_match_their_schemas(schema: str, path: Path) -> None:
    exe = venv_tool("check-jsonschema")
    p = subprocess.run(
        [exe, "--builtin-schema", schema, str(path)], capture_output=True, text=True, check=False
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_check_jsonschema_rejects_a_broken_workflow(tmp_path: Path) -> None:
    # The check above can fail: a job without runs-on or steps is refused.
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    stepz: []\n")
    exe = venv_tool("check-jsonschema")
    p = subprocess.run(
        [exe, "--builtin-schema", "vendor.github-workflows", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 1


def test_init_writes_the_files_this_repository_ships() -> None:
    assert WORKFLOW.read_text() == init.GITHUB_WORKFLOW
    assert GITLAB.read_text() == init.GITLAB_TEMPLATE
    # docs/ci.md shows the whole workflow, as it is in the file.
    assert WORKFLOW.read_text() in (ROOT / "docs" / "ci.md").read_text()


def test_issue_23_installs_come_from_the_project_at_this_release() -> None:
    # Never a package name the project does not own: its repository at this release's tag.
    package = f"planrunner @ git+{REPOSITORY}@v{__version__}"
    assert package == init.PACKAGE
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow["env"]["PLANRUNNER_PACKAGE"] == package
    for job in workflow["jobs"].values():
        install = next(s for s in job["steps"] if s.get("name") == "Install planrunner")
        assert install["run"].endswith('pip install --disable-pip-version-check "$PLANRUNNER_PACKAGE"')
    gitlab = yaml.safe_load(GITLAB.read_text())
    assert gitlab["variables"]["PLANRUNNER_PACKAGE"] == package
    assert '"$PLANRUNNER_PACKAGE"' in gitlab[".planrunner"]["before_script"][0]
    # The action installs its own checkout (the tag the user pinned), or the spec it is given.
    action = yaml.safe_load(ACTION.read_text())
    assert "version" not in action["inputs"] and action["inputs"]["package"]["default"] == ""
    install = next(s for s in action["runs"]["steps"] if s.get("name") == "Install planrunner")
    assert install["env"] == {
        "PLANRUNNER_PACKAGE": "${{ inputs.package }}",
        "PLANRUNNER_ACTION_PATH": "${{ github.action_path }}",
    }
    assert install["run"].endswith('"${PLANRUNNER_PACKAGE:-$PLANRUNNER_ACTION_PATH}"')
    for text in (WORKFLOW.read_text(), GITLAB.read_text(), ACTION.read_text(), HOOKS.read_text()):
        assert "==0.1" not in text and "OWNER/" not in text
    assert f"rev: v{__version__}" in HOOKS.read_text()


def test_issue_23_version_in_one_place() -> None:
    # planrunner/__init__.py holds it; the metadata reads it, the schema's $id carries it.
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = { attr = "planrunner.__version__" }' in pyproject
    assert SCHEMA_ID.split("/")[-2] == __version__
    assert f"## {__version__} " in (ROOT / "CHANGELOG.md").read_text()


def test_issue_23_actions_pinned_by_sha_on_current_majors() -> None:
    pins = {
        "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
        "actions/setup-python": ("5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
        "actions/upload-artifact": ("bbbca2ddaa5d8feaa63e36b76fdaad77386f024f", "v7.0.0"),
    }
    seen = set()
    for path in (WORKFLOW, ACTION, *OWN_WORKFLOWS):
        for line in path.read_text().splitlines():
            m = re.search(r"uses: ([\w./-]+)@(\S+)(?: # (\S+))?$", line)
            if not m:
                continue
            assert m[1] in pins, f"{path.name}: {line.strip()}: an action nobody pinned"
            assert (m[2], m[3]) == pins[m[1]], f"{path.name}: {line.strip()}"
            seen.add(m[1])
    assert seen == set(pins)


@pytest.mark.parametrize("path", [WORKFLOW, ACTION, *OWN_WORKFLOWS], ids=lambda p: p.name)
def test_issue_23_actionlint_and_zizmor_find_nothing(path: Path) -> None:
    zizmor = subprocess.run(
        [venv_tool("zizmor"), "--offline", "--min-severity", "medium", "--no-progress", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert zizmor.returncode == 0, zizmor.stdout + zizmor.stderr
    assert "No findings to report" in zizmor.stdout
    if path == ACTION:
        return  # actionlint checks workflows; the action's steps run inside them
    actionlint = subprocess.run(
        [venv_tool("actionlint"), "-shellcheck", venv_tool("shellcheck"), "-no-color", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert actionlint.returncode == 0, actionlint.stdout + actionlint.stderr


def test_issue_23_zizmor_catches_an_unpinned_action(tmp_path: Path) -> None:
    # The check above can fail: a tag instead of a SHA, and a token left in .git/config.
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\npermissions: {}\njobs:\n  x:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - uses: actions/checkout@v4\n"
    )
    p = subprocess.run(
        [venv_tool("zizmor"), "--offline", "--min-severity", "medium", "--no-progress", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode != 0 and "unpinned-uses" in p.stdout and "artipacked" in p.stdout


def test_issue_23_persist_credentials_false_everywhere() -> None:
    # No job leaves the token in .git/config: the apply job pushes with it for one command.
    for path in (WORKFLOW, *OWN_WORKFLOWS):
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in job["steps"]:
                if str(step.get("uses", "")).startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False, path


def test_n21_finding_10_apply_only_on_main_one_group_protected_environment() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow["permissions"] == {}
    job = workflow["jobs"]["apply"]
    cases = {
        ("push", "refs/heads/main"): True,
        ("workflow_dispatch", "refs/heads/main"): True,
        ("workflow_dispatch", "refs/heads/feature"): False,  # "Run workflow" on a branch
        ("push", "refs/heads/feature"): False,
        ("pull_request", "refs/pull/7/merge"): False,
    }
    for (event, ref), expected in cases.items():
        assert _condition(job["if"], {"github.event_name": event, "github.ref": ref}) is expected
    assert _condition(workflow["jobs"]["review"]["if"], {"github.event_name": "workflow_dispatch"}) is False
    # One group for every apply, whatever its ref; never cancelled half-way.
    assert job["concurrency"] == {"group": "planrunner-apply", "cancel-in-progress": False}
    # The secrets are the protected environment's, read by the apply job only.
    assert job["environment"] == "planrunner"
    for name, other in workflow["jobs"].items():
        if name != "apply":
            assert "secrets." not in yaml.safe_dump(other)
    apply_step = next(s for s in job["steps"] if s.get("name") == "Apply")
    assert set(apply_step["env"]) == {"ENOS_ACCESS_KEY", "ENOS_SECRET_KEY"}
    assert job["steps"][0]["with"]["ref"] == "main" and job["env"]["BRANCH"] == "main"
    assert workflow[True]["push"]["branches"] == ["main"]  # YAML reads `on` as true


def test_n21_gitlab_push_token_apart_from_the_note_token() -> None:
    gitlab = yaml.safe_load(GITLAB.read_text())
    review = "\n".join(gitlab["planrunner-review"]["script"])
    apply = "\n".join(gitlab["planrunner-apply"]["script"])
    # Merge-request pipelines (whose .gitlab-ci.yml the branch's author controls) hold only
    # the note token; the push token and the ENOS keys are protected and used on the default
    # branch only.
    # apply may read with the note token only to fetch the saved plans (finding 34), before
    # it applies; what pushes never sees it.
    _, _, after_fetch = apply.partition("\nstatus=0\n")
    assert "PLANRUNNER_NOTE_TOKEN" in review and after_fetch and "PLANRUNNER_NOTE_TOKEN" not in after_fetch
    assert "PLANRUNNER_PUSH_TOKEN" in apply and "PLANRUNNER_PUSH_TOKEN" not in review
    assert "git push" not in review and "PLANRUNNER_TOKEN" not in GITLAB.read_text()
    header = GITLAB.read_text().split("stages:")[0]
    note = header[header.index("PLANRUNNER_NOTE_TOKEN") : header.index("PLANRUNNER_PUSH_TOKEN")]
    push = header[header.index("PLANRUNNER_PUSH_TOKEN") :]
    assert "not protected" in note and "scope api" in note and "cannot push" in note
    assert "protected and masked" in push and "write_repository" in push and "deploy key" in push
    assert gitlab["planrunner-apply"]["rules"][0]["if"].startswith("$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH")
    assert gitlab["planrunner-apply"]["resource_group"] == "planrunner-apply"


def test_apply_job_is_serialised_and_starts_from_the_branch_tip() -> None:
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["apply"]
    assert job["concurrency"]["cancel-in-progress"] is False
    assert "group" in job["concurrency"]
    checkout = job["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["ref"] == "main"
    commit = next(s for s in job["steps"] if s.get("name") == "Commit the ledgers back")
    assert commit["if"] == "always()"
    gitlab = yaml.safe_load(GITLAB.read_text())["planrunner-apply"]
    assert gitlab["resource_group"]


def test_schema_id_carries_the_version() -> None:
    from planrunner import schema

    published = json.loads((ROOT / "schemas" / "plan.schema.json").read_text())
    assert published["$id"] == SCHEMA_ID
    assert schema.schema()["$id"] == SCHEMA_ID
    assert (ROOT / "schemas" / "plan.schema.json").read_text() == schema.text()


def test_every_example_plan_carries_the_modeline() -> None:
    plans = [p for p in (ROOT / "plans").glob("*.y*ml") if p.name != "sim-flows.yaml"]
    assert plans
    for p in plans:
        assert p.read_text().splitlines()[0] == MODELINE, p
    assert init.EXAMPLE_PLAN.splitlines()[0] == MODELINE


def test_gitattributes_and_gitignore_of_this_repository() -> None:
    assert "*.ledger.jsonl merge=union" in (ROOT / ".gitattributes").read_text().splitlines()
    for line in init.GITIGNORE_LINES:
        assert line in (ROOT / ".gitignore").read_text().splitlines()


# ---------------------------------------------------------------- planrunner init


def test_init_writes_everything_once_and_never_overwrites(tmp_path: Path, run) -> None:
    (tmp_path / ".gitattributes").write_text("*.png binary")  # no final newline
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "example.yaml").write_text("mine\n")
    r = run("init", str(tmp_path))
    assert r.code == 0, r.err
    assert (tmp_path / ".gitattributes").read_text() == "*.png binary\n*.ledger.jsonl merge=union\n"
    assert (tmp_path / ".gitignore").read_text() == "*.ledger.jsonl.lock\n*.sim.ledger.jsonl\n"
    assert (tmp_path / "plans" / "example.yaml").read_text() == "mine\n"
    assert "example.yaml: left alone (exists)" in r.out
    assert (tmp_path / ".github" / "workflows" / "planrunner.yml").read_text() == WORKFLOW.read_text()
    from planrunner import schema

    assert (tmp_path / "schemas" / "plan.schema.json").read_text() == schema.text()
    again = run("init", str(tmp_path))
    assert again.code == 0
    assert (tmp_path / ".gitattributes").read_text().count("merge=union") == 1
    assert (tmp_path / ".gitignore").read_text().count("lock") == 1
    assert (tmp_path / ".gitignore").read_text().count("sim.ledger") == 1
    assert again.out.count("left alone") == 5


def test_init_example_plan_validates_and_gitlab_variant(tmp_path: Path, run) -> None:
    r = run("init", str(tmp_path), "--ci", "gitlab")
    assert r.code == 0
    assert (tmp_path / "ci" / "gitlab" / "planrunner.gitlab-ci.yml").read_text() == GITLAB.read_text()
    assert "local: ci/gitlab/planrunner.gitlab-ci.yml" in (tmp_path / ".gitlab-ci.yml").read_text()
    assert not (tmp_path / ".github").exists()
    v = run("validate", str(tmp_path / "plans" / "example.yaml"))
    assert v.code == 0, v.err
    # The modeline points at the schema init wrote, relative to the plan.
    assert (tmp_path / "plans" / "../schemas/plan.schema.json").is_file()
    assert run("init", str(tmp_path / "missing")).code == 2


# ---------------------------------------------------------------- the workflow, run


_EXPR = re.compile(r"\$\{\{(.*?)\}\}")


def _condition(expr: str, context: dict[str, str]) -> bool:
    """Evaluate the `if:` forms the shipped files use: always(), ==, != and &&."""
    if expr.strip() == "always()":
        return True
    result = True
    for part in expr.split("&&"):
        m = re.fullmatch(r"\s*([\w.]+)\s*(==|!=)\s*'([^']*)'\s*", part)
        assert m, f"the test does not know the condition {part!r}"
        result = result and ((context[m[1]] == m[3]) == (m[2] == "=="))
    return result


def _expand(value: object, context: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        key = m[1].strip()
        assert key in context, f"the test does not know the expression {key!r}"
        return context[key]

    return _EXPR.sub(sub, str(value))


@dataclass
class Job:
    """A job's outcome: its steps' names, exit codes and output."""

    steps: list[tuple[str, int, str]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(code for _, code, _ in self.steps)

    def output(self) -> str:
        return "\n".join(out for _, _, out in self.steps)


@dataclass
class Repo:
    """A bare `origin` and a bin directory with `planrunner` and a fake `gh`."""

    tmp: Path
    origin: Path
    bin: Path
    clones: int = 0

    def git(self, cwd: Path, *args: str, check: bool = True) -> str:
        p = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, env=self.env(), check=False
        )
        if check:
            assert p.returncode == 0, f"git {' '.join(args)}: {p.stdout}{p.stderr}"
        return p.stdout

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("GIT_", "ENOS_", "PLANRUNNER_", "GITHUB_"))
        }
        return {
            **base,
            "HOME": str(self.tmp / "home"),
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "GIT_CONFIG_NOSYSTEM": "1",
            **(extra or {}),
        }

    def clone(self, branch: str = "main") -> Path:
        """What actions/checkout does: the branch tip, in a fresh directory."""
        self.clones += 1
        work = self.tmp / f"runner{self.clones}"
        self.git(self.tmp, "clone", "--quiet", "--branch", branch, str(self.origin), str(work))
        return work

    def commit_all(self, work: Path, message: str) -> None:
        self.git(work, "add", "-A")
        self.git(work, "-c", "user.name=dev", "-c", "user.email=dev@example.com", "commit", "-qm", message)

    def head(self, branch: str = "main") -> str:
        return self.git(self.origin, "rev-parse", branch).strip()

    def show(self, path: str, branch: str = "main", check: bool = True) -> str:
        return self.git(self.origin, "show", f"{branch}:{path}", check=check)

    def run_job(
        self,
        name: str,
        work: Path,
        context: dict[str, str],
        env_overrides: dict[str, str] | None = None,
        before_step: Callable[[str], None] | None = None,
        temp: Path | None = None,
    ) -> Job:
        """Run the workflow job's `run:` steps as the GitHub runner would."""
        workflow = yaml.safe_load(WORKFLOW.read_text())
        job_spec = workflow["jobs"][name]
        assert workflow["defaults"]["run"]["shell"] == "bash"
        env = self.env(
            {
                "GITHUB_RUN_ID": "42",
                "GITHUB_WORKFLOW": "planrunner",
                "GITHUB_SHA": "0" * 40,
                "RUNNER_TEMP": str(temp or self.tmp / f"temp{self.clones}"),
                **FAST_ENV,
            }
        )
        Path(env["RUNNER_TEMP"]).mkdir(exist_ok=True)
        env.update({k: _expand(v, context) for k, v in workflow.get("env", {}).items()})
        env.update({k: _expand(v, context) for k, v in job_spec.get("env", {}).items()})
        env.update(env_overrides or {})
        job = Job()
        for i, step in enumerate(job_spec["steps"]):
            # checkout is the clone; planrunner is this checkout's; the test stages the
            # saved plans the fetch step would download, and uploads are GitHub's.
            if "uses" in step or step.get("name") in ("Install planrunner", "Fetch the reviewed saved plans"):
                continue
            condition = step.get("if")
            if job.failed and condition != "always()":
                continue
            if condition and not _condition(condition, {f"env.{k}": v for k, v in env.items()}):
                continue
            if before_step:
                before_step(step.get("name", "?"))
            script = self.tmp / f"step{self.clones}-{i}.sh"
            script.write_text(step["run"])
            step_env = {**env, **{k: _expand(v, context) for k, v in step.get("env", {}).items()}}
            p = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                cwd=work,
                env=step_env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            job.steps.append((step.get("name", "?"), p.returncode, p.stdout + p.stderr))
        return job


FAKE_GH = """\
#!{python}
# A stand-in for `gh api`: issue comments kept in a JSON file.
import json, os, sys
state_path = os.environ["FAKE_GH_STATE"]
state = json.load(open(state_path)) if os.path.exists(state_path) else {{"comments": [], "calls": []}}
args = sys.argv[1:]
assert args[0] == "api", args
method, path, body = "GET", None, None
i = 1
while i < len(args):
    a = args[i]
    if a == "--method":
        method = args[i + 1]; i += 2; continue
    if a == "--paginate":
        i += 1; continue
    if a == "-F":
        name, value = args[i + 1].split("=", 1)
        assert name == "body" and value.startswith("@")
        body = open(value[1:]).read(); i += 2; continue
    path = a; i += 1
state["calls"].append([method, path])
if method == "GET":
    print(json.dumps(state["comments"]))
elif method == "POST":
    state["comments"].append({{"id": len(state["comments"]) + 100, "body": body}})
elif method == "PATCH":
    cid = int(path.rsplit("/", 1)[1])
    [c for c in state["comments"] if c["id"] == cid][0]["body"] = body
json.dump(state, open(state_path, "w"))
"""


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "home").mkdir()
    exe = bin_dir / "planrunner"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m planrunner "$@"\n')
    gh = bin_dir / "gh"
    gh.write_text(FAKE_GH.format(python=sys.executable))
    # The GitLab template's image has `python`; a clean PATH may have only python3.
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    for f in (exe, gh, python):
        f.chmod(0o755)
    origin = tmp_path / "origin.git"
    r = Repo(tmp_path, origin, bin_dir)
    r.git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    return r


PLAN = """\
# yaml-language-server: $schema=../schemas/plan.schema.json
version: 1
target:
  gateway: {url}
  orgId: o1
  userId: u1
timezone: UTC
flows:
  - name: f0
    flowId: 10
    cron: "0 * * * *"
    from: 2026-01-01
    count: 2

  - name: f1
    flowId: 11
    enabled: false
    cron: "0 * * * *"
    from: 2026-01-01
    count: 2

  - name: f2
    flowId: 12
    enabled: false
    cron: "0 * * * *"
    from: 2026-01-01
    count: 2
"""


def seed(repo: Repo, url: str, plan: str = PLAN) -> None:
    """origin/main: a plan and this repository's own .gitattributes and .gitignore."""
    work = repo.tmp / "seed"
    repo.git(repo.tmp, "init", "--quiet", "--initial-branch=main", str(work))
    (work / "plans").mkdir()
    (work / "plans" / "p.yaml").write_text(plan.format(url=url))
    shutil.copy(ROOT / ".gitattributes", work / ".gitattributes")
    shutil.copy(ROOT / ".gitignore", work / ".gitignore")
    repo.commit_all(work, "plans")
    repo.git(work, "remote", "add", "origin", str(repo.origin))
    repo.git(work, "push", "--quiet", "origin", "main")


MERGE_CONTEXT = {
    "github.token": "t",
    "github.repository": "o/r",
    "secrets.ENOS_ACCESS_KEY": SIM_ENV["ENOS_ACCESS_KEY"],
    "secrets.ENOS_SECRET_KEY": SIM_ENV["ENOS_SECRET_KEY"],
}
REVIEW_CONTEXT = {"github.token": "t", "github.event.pull_request.number": "7", "github.repository": "o/r"}


def apply_job(repo: Repo, **kw: Any) -> Job:
    """The apply job, as a push to main starts it (it checks out main)."""
    return repo.run_job("apply", repo.clone("main"), MERGE_CONTEXT, **kw)


def merge(repo: Repo, branch: str) -> None:
    """A pull request merges into main."""
    work = repo.clone("main")
    out = subprocess.run(
        ["git", "-c", "user.name=dev", "-c", "user.email=d@e", "merge", "--no-edit", f"origin/{branch}"],
        cwd=work,
        capture_output=True,
        text=True,
        env=repo.env(),
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    repo.git(work, "push", "--quiet", "origin", "main")


def enable(repo: Repo, flow: str, branch: str, base: str = "main") -> None:
    work = repo.clone(base)
    repo.git(work, "checkout", "-q", "-B", branch)
    plan = work / "plans" / "p.yaml"
    text = plan.read_text()
    block = f"  - name: {flow}\n"
    start = text.index(block)
    end = text.index("enabled: false", start)
    plan.write_text(text[:end] + "enabled: true" + text[end + len("enabled: false") :])
    repo.commit_all(work, f"enable {flow}")
    repo.git(work, "push", "--quiet", "origin", branch)


def created(sim: Simulator) -> set[tuple[int, int]]:
    return {(t["flowId"], t["triggerTime"]) for t in sim.triggers() if t["flowInstanceId"]}


def test_merges_apply_in_turn_and_nothing_is_sent_again(repo: Repo) -> None:
    with Simulator(accept_unknown_flows=True) as sim:
        seed(repo, sim.url)
        first = apply_job(repo)
        assert not first.failed, first.output()
        assert len(sim.triggers()) == 2
        assert "plans/p.ledger.jsonl" in repo.git(repo.origin, "ls-tree", "-r", "--name-only", "main")

        # Two pull requests, each enabling a flow, merge one after the other; each merge's
        # apply sends only its own flow's entries and commits the ledger back.
        enable(repo, "f1", "b1")
        enable(repo, "f2", "b2")
        for branch, count in (("b1", 4), ("b2", 6)):
            merge(repo, branch)
            job = apply_job(repo)
            assert not job.failed, job.output()
            assert len(sim.triggers()) == count
        assert {k[0] for k in created(sim)} == {10, 11, 12}

        head = repo.head()
        again = apply_job(repo)
        assert not again.failed, again.output()
        assert len(sim.triggers()) == 6  # nothing sent after the merges
        assert "ledgers unchanged: nothing to commit" in again.output()
        assert repo.head() == head


def test_a_job_whose_apply_fails_still_commits_its_ledger(repo: Repo) -> None:
    # Get Flow shows the flow, its trigger is refused (62103): a failed record to commit.
    with Simulator([SimFlow(10, users=("someone-else",))], accept_unknown_flows=True) as sim:
        seed(repo, sim.url)
        job = apply_job(repo)
        assert job.failed
        names = [(name, code) for name, code, _ in job.steps]
        assert names[0] == ("Apply", 1)
        assert names[1] == ("Commit the ledgers back", 0), job.output()
        records = [json.loads(x) for x in repo.show("plans/p.ledger.jsonl").splitlines()]
        assert any(r["event"] == "failed" for r in records)
        assert len(sim.triggers()) == 1  # the flow was refused; the rest not sent


def land_a_ledger_commit(repo: Repo) -> None:
    """Someone else's commit on main that appends a record to the ledger (a manual apply)."""
    other = repo.clone("main")
    stray = ledger.record("intent", "o1/77/1767225600000", 77, "o1", 1767225600000, "a-x", flow="x", run="r")
    with (other / "plans" / "p.ledger.jsonl").open("ab") as f:
        f.write(ledger.encode([stray]))
    (other / "README.md").write_text("hello\n")
    repo.commit_all(other, "elsewhere")
    repo.git(other, "push", "--quiet", "origin", "main")


def test_a_rejected_push_is_rebased_and_retried(repo: Repo) -> None:
    with Simulator(accept_unknown_flows=True) as sim:
        seed(repo, sim.url)
        assert not apply_job(repo).failed
        enable(repo, "f1", "main")
        runner = repo.clone("main")
        # Meanwhile someone else commits to main, touching the ledger too (a manual apply).
        land_a_ledger_commit(repo)

        job = repo.run_job("apply", runner, MERGE_CONTEXT)
        assert not job.failed, job.output()
        assert "push rejected (attempt 1)" in job.output()
        log = repo.git(repo.origin, "log", "--format=%s", "main")
        assert log.splitlines()[:2] == ["planrunner: ledgers after apply [skip ci]", "elsewhere"]
        text = repo.show("plans/p.ledger.jsonl")
        assert "o1/77/1767225600000" in text
        assert {json.loads(x)["flowId"] for x in text.splitlines()} == {10, 11, 77}
        assert len(sim.triggers()) == 4


def test_review_job_validates_plans_and_keeps_one_comment_per_plan(repo: Repo) -> None:
    with Simulator(accept_unknown_flows=True) as sim:
        seed(repo, sim.url)
        state = repo.tmp / "gh.json"
        context = REVIEW_CONTEXT
        os.environ["FAKE_GH_STATE"] = str(state)
        try:
            work = repo.clone("main")
            job = repo.run_job("review", work, context)
            assert not job.failed, job.output()
            assert "plans/p.yaml: ok (2 entries in 1 flow; 2 flows disabled)" in job.output()
            comments = json.loads(state.read_text())["comments"]
            assert len(comments) == 1
            assert comments[0]["body"].startswith("<!-- planrunner:plans/p.yaml -->\n")
            assert "2 entries" in comments[0]["body"]
            # A new push: the same comment is edited, not a second one added.
            enable(repo, "f1", "main")
            job = repo.run_job("review", repo.clone("main"), context)
            assert not job.failed, job.output()
            doc = json.loads(state.read_text())
            assert len(doc["comments"]) == 1 and "4 entries" in doc["comments"][0]["body"]
            assert [m for m, _ in doc["calls"]] == ["GET", "POST", "GET", "PATCH"]
            # A problem is an annotation on the plan's line, and fails the job.
            bad = repo.clone("main")
            plan = bad / "plans" / "p.yaml"
            plan.write_text(plan.read_text().replace('cron: "0 * * * *"', 'cron: "61 * * * *"', 1))
            job = repo.run_job("review", bad, context)
            assert job.failed
            assert "::error file=plans/p.yaml,line=11,col=11::flows[0].cron:" in job.output()
            assert len(sim.triggers()) == 0
        finally:
            del os.environ["FAKE_GH_STATE"]


def test_the_action_runs_its_command_with_split_arguments(repo: Repo, tmp_path: Path) -> None:
    action = yaml.safe_load(ACTION.read_text())
    step = next(s for s in action["runs"]["steps"] if s.get("name") == "Run planrunner")
    assert step["shell"] == "bash"
    inputs = {k: v.get("default", "") for k, v in action["inputs"].items()}
    inputs.update(command="validate", args="--format github")
    context = {f"inputs.{k}": v for k, v in inputs.items()}
    env = repo.env({k: _expand(v, context) for k, v in step["env"].items()})
    (tmp_path / "plans").mkdir()
    shutil.copy(ROOT / "plans" / "example.yaml", tmp_path / "plans" / "a.yaml")
    (tmp_path / "plans" / "b.yaml").write_text("version: 2\n")
    script = tmp_path / "action.sh"
    script.write_text(step["run"])
    p = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 2
    assert "plans/a.yaml: ok (82 entries in 3 flows)" in p.stdout
    assert "::error file=plans/b.yaml,line=1,col=1::" in p.stdout


def test_n22_commit_back_cuts_a_torn_tail_before_committing(repo: Repo) -> None:
    with Simulator(accept_unknown_flows=True) as sim:
        seed(repo, sim.url)
        assert not apply_job(repo).failed
        enable(repo, "f1", "main")
        runner = repo.clone("main")
        # Another commit lands meanwhile, so the push is rejected and the ledger rebased: a
        # torn line committed now would become a corrupt line in the middle (merge=union).
        land_a_ledger_commit(repo)

        def tear(step: str) -> None:
            if step == "Commit the ledgers back":  # what a killed apply leaves
                with (runner / "plans" / "p.ledger.jsonl").open("ab") as f:
                    f.write(b'{"v":1,"event":"intent","key":"o1/11/17672')

        job = repo.run_job("apply", runner, MERGE_CONTEXT, before_step=tear)
        assert not job.failed, job.output()
        assert "::warning file=plans/p.ledger.jsonl::cut off an incomplete last line (42 bytes)" in job.output()
        assert "push rejected (attempt 1)" in job.output()
        text = repo.show("plans/p.ledger.jsonl")
        assert text.endswith("\n") and "17672\n" not in text
        assert all(json.loads(line) for line in text.splitlines())
        # The next apply reads the merged ledger (exit 0, not 3) and sends nothing more.
        sent = len(sim.triggers())
        again = apply_job(repo)
        assert not again.failed, again.output()
        assert len(sim.triggers()) == sent == 4


def test_n22_a_ledger_that_held_only_a_torn_line_is_not_committed(repo: Repo) -> None:
    with Simulator(accept_unknown_flows=True) as sim:
        seed(repo, sim.url)

        def tear(step: str) -> None:
            if step == "Commit the ledgers back":
                (repo.tmp / "runner1" / "plans" / "q.ledger.jsonl").write_bytes(b'{"v":1,"event":"int')

        job = apply_job(repo, before_step=tear)
        assert not job.failed, job.output()
        assert "plans/p.ledger.jsonl" in repo.git(repo.origin, "ls-tree", "-r", "--name-only", "main")
        assert "plans/q.ledger.jsonl" not in repo.git(repo.origin, "ls-tree", "-r", "--name-only", "main")


def test_n22_commit_back_commits_a_ledger_verify_rejects_and_fails(repo: Repo) -> None:
    with Simulator(accept_unknown_flows=True) as sim:
        seed(repo, sim.url)

        def corrupt(step: str) -> None:
            if step == "Commit the ledgers back":
                path = repo.tmp / "runner1" / "plans" / "p.ledger.jsonl"
                lines = path.read_text().splitlines(keepends=True)
                path.write_text(lines[0] + "not json\n" + "".join(lines[1:]))

        job = apply_job(repo, before_step=corrupt)
        assert [(name, code) for name, code, _ in job.steps] == [("Apply", 0), ("Commit the ledgers back", 1)]
        out = job.output()
        assert "::error file=plans/p.ledger.jsonl::ledger verify found problems" in out
        assert "plans/p.ledger.jsonl:2" in out  # verify's own report, with the place
        # Committed all the same: the records of what was sent are never left on the runner.
        assert "not json" in repo.show("plans/p.ledger.jsonl")


def test_finding_24_ci_files_log_text(repo: Repo) -> None:
    texts = {
        WORKFLOW: WORKFLOW.read_text(),
        GITLAB: GITLAB.read_text(),
        ACTION: ACTION.read_text(),
        HOOKS: HOOKS.read_text(),
    }
    for path, text in texts.items():
        code = "\n".join(x for x in text.splitlines() if not x.lstrip().startswith(("#", "name:")))
        calls = re.findall(r"\bplanrunner (?:\"\$\w+\"|[a-z]+)[^\n]*", code)
        assert calls, path
        for call in calls:
            if re.match(r"planrunner (validate|plan|apply|ledger|\"\$PLANRUNNER_COMMAND\")\b", call):
                assert "--log-format text" in call, f"{path.name}: {call}"
    with Simulator(accept_unknown_flows=True) as sim:
        seed(repo, sim.url)
        job = apply_job(repo)
        assert not job.failed, job.output()
        lines = job.output().splitlines()
        assert not [x for x in lines if x.startswith("{")], "a JSON log line in CI output"
        assert any("[info     ] apply finished" in x for x in lines)


def _find_line(script: str) -> str:
    return next(x.strip() for x in script.splitlines() if x.strip().startswith("mapfile -t plans"))


def test_finding_32_one_set_of_plan_files_everywhere(tmp_path: Path) -> None:
    names = [
        "plans/a.yaml", "plans/b.yml", "plans/sim-flows.yaml", "plans/sim-flows.yml",
        "plans/sub/c.yaml", "plans/a.ledger.jsonl", "plans/a.sim.ledger.jsonl", "plans/notes.txt",
        "notes.yaml",
    ]  # fmt: skip
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    hook = yaml.safe_load(HOOKS.read_text())[0]
    by_hook = {n for n in names if re.search(hook["files"], n) and not re.search(hook["exclude"], n)}
    assert by_hook == {"plans/a.yaml", "plans/b.yml"}
    workflow = yaml.safe_load(WORKFLOW.read_text())
    lines = {
        _find_line(step["run"])
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if "mapfile -t plans" in step.get("run", "")
    }
    gitlab = yaml.safe_load(GITLAB.read_text())
    lines |= {_find_line(x) for x in gitlab[".planrunner"]["before_script"] if "mapfile" in x}
    assert len(lines) == 1, lines  # the same listing in every job of both files
    p = subprocess.run(
        ["bash", "-c", lines.pop() + '\nprintf "%s\\n" "${plans[@]}"'],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert set(p.stdout.split()) == by_hook


def test_finding_34_saved_plans_apply_what_was_reviewed(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_GH_STATE", str(repo.tmp / "gh.json"))
    saved = {"SAVED_PLANS": "true"}
    with Simulator(accept_unknown_flows=True) as sim:
        seed(repo, sim.url)
        review_temp = repo.tmp / "review-temp"
        review = repo.run_job("review", repo.clone("main"), REVIEW_CONTEXT, env_overrides=saved, temp=review_temp)
        assert not review.failed, review.output()
        artifact = review_temp / "saved-plans"
        assert [p.name for p in artifact.iterdir()] == ["p.yaml.plan.json"]
        body = json.loads((repo.tmp / "gh.json").read_text())["comments"][0]["body"]
        assert "SHA-256" in body or "sha256" in body.lower()  # the comment names what is pinned

        # On merge the saved plan is applied: exactly the reviewed entries.
        apply_temp = repo.tmp / "apply-temp"
        shutil.copytree(artifact, apply_temp / "saved-plans")  # what the fetch step downloads
        job = apply_job(repo, env_overrides=saved, temp=apply_temp)
        assert not job.failed, job.output()
        assert len(sim.triggers()) == 2

        # The plan changed on main after the review: the saved plan is stale, nothing sent.
        enable(repo, "f1", "main")
        stale = apply_job(repo, env_overrides=saved, temp=apply_temp)
        assert stale.failed and "stale" in stale.output()
        assert len(sim.triggers()) == 2
        # No saved plan at all (a push that was never reviewed): refused, nothing sent.
        shutil.rmtree(apply_temp / "saved-plans")
        (apply_temp / "saved-plans").mkdir()
        missing = apply_job(repo, env_overrides=saved, temp=apply_temp)
        assert missing.failed
        assert "::error::plans/p.yaml: no saved plan from the pull request's review: not applied" in missing.output()
        assert len(sim.triggers()) == 2


def test_finding_34_saved_plans_are_opt_in_and_fetched_from_the_review_run() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow["env"]["SAVED_PLANS"] == "false"
    upload = next(s for s in workflow["jobs"]["review"]["steps"] if "upload-artifact" in str(s.get("uses")))
    assert upload["if"] == "env.SAVED_PLANS == 'true'"
    assert upload["with"]["name"] == "planrunner-saved-plans"
    fetch = next(s for s in workflow["jobs"]["apply"]["steps"] if s.get("name") == "Fetch the reviewed saved plans")
    assert fetch["if"] == "env.SAVED_PLANS == 'true'"
    assert "gh run download" in fetch["run"] and "--name planrunner-saved-plans" in fetch["run"]
    assert "--status success" in fetch["run"] and "--event pull_request" in fetch["run"]


# ---------------------------------------------------------------- the GitLab template, run


def gitlab_job(repo: Repo, name: str, work: Path, variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a template job's before_script and script in one bash, as the GitLab runner does."""
    template = yaml.safe_load(GITLAB.read_text())
    job = template[name]
    base = template[job["extends"]]
    before = [x for x in base["before_script"] if "pip install" not in x]  # this checkout's planrunner
    script = work.parent / f"{work.name}-{name}.sh"
    script.write_text("\n".join([*before, *job["script"]]) + "\n")
    env = repo.env({**FAST_ENV, **template["variables"], **job.get("variables", {}), **variables})
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


GITLAB_APPLY = {
    "CI_COMMIT_BRANCH": "main",
    "CI_PIPELINE_ID": "9",
    "ENOS_ACCESS_KEY": SIM_ENV["ENOS_ACCESS_KEY"],
    "ENOS_SECRET_KEY": SIM_ENV["ENOS_SECRET_KEY"],
}


def test_gitlab_apply_pushes_one_ledger_commit_and_a_second_run_sends_nothing(repo: Repo) -> None:
    with Simulator(accept_unknown_flows=True) as sim:
        seed(repo, sim.url)
        head = repo.head()
        variables = {**GITLAB_APPLY, "PLANRUNNER_PUSH_URL": str(repo.origin)}
        first = gitlab_job(repo, "planrunner-apply", repo.clone("main"), variables)
        assert first.returncode == 0, first.stdout + first.stderr
        assert len(sim.triggers()) == 2
        log = repo.git(repo.origin, "log", "--format=%s", f"{head}..main").splitlines()
        assert log == ["planrunner: ledgers after apply [skip ci]"]
        second = gitlab_job(repo, "planrunner-apply", repo.clone("main"), variables)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "ledgers unchanged: nothing to commit" in second.stdout
        assert len(sim.triggers()) == 2
        assert repo.git(repo.origin, "log", "--format=%s", f"{head}..main").splitlines() == log


# f0 paced: one instance at a time, each running a minute, so the first apply sends one
# entry and holds the other back (exit 4).
PACED_PLAN = PLAN.replace("    count: 2\n", "    count: 2\n    maxUnfinished: 1\n", 1)


def test_w21_a_paced_apply_that_held_entries_back_is_not_a_failed_job(repo: Repo) -> None:
    with Simulator([SimFlow(10, users=("u1",), org_id="o1", run_seconds=60.0)]) as sim:
        seed(repo, sim.url, PACED_PLAN)
        job = apply_job(repo)
        assert not job.failed, job.output()
        assert ("Apply", 0) in [(name, code) for name, code, _ in job.steps]
        assert "::notice file=plans/p.yaml::entries held back by maxUnfinished" in job.output()
        assert len(created(sim)) == 1  # the other entry waits for the next apply
        assert "plans/p.ledger.jsonl" in repo.git(repo.origin, "ls-tree", "-r", "--name-only", "main")


def test_w21_gitlab_a_paced_apply_that_held_entries_back_passes(repo: Repo) -> None:
    with Simulator([SimFlow(10, users=("u1",), org_id="o1", run_seconds=60.0)]) as sim:
        seed(repo, sim.url, PACED_PLAN)
        variables = {**GITLAB_APPLY, "PLANRUNNER_PUSH_URL": str(repo.origin)}
        job = gitlab_job(repo, "planrunner-apply", repo.clone("main"), variables)
        assert job.returncode == 0, job.stdout + job.stderr
        assert "entries held back by maxUnfinished" in job.stdout + job.stderr
        assert len(created(sim)) == 1
        assert "plans/p.ledger.jsonl" in repo.git(repo.origin, "ls-tree", "-r", "--name-only", "main")


def test_finding_22_gitlab_jobs_without_their_token_fail_with_one_line(repo: Repo) -> None:
    with Simulator(accept_unknown_flows=True) as sim:
        seed(repo, sim.url)
        # The apply job checks it can push the ledgers back before it sends anything.
        apply = gitlab_job(repo, "planrunner-apply", repo.clone("main"), GITLAB_APPLY)
        assert apply.returncode == 2
        assert apply.stderr.strip().splitlines() == [
            apply.stderr.strip().splitlines()[0]
        ] and apply.stderr.startswith("planrunner: PLANRUNNER_PUSH_TOKEN is not set:")
        assert len(sim.triggers()) == 0
        mr = {"CI_PIPELINE_SOURCE": "merge_request_event"}
        review = gitlab_job(repo, "planrunner-review", repo.clone("main"), mr)
        assert review.returncode == 2
        assert "plans/p.yaml: ok" in review.stdout  # validated before the note
        assert review.stderr.strip().splitlines() == [
            "planrunner: PLANRUNNER_NOTE_TOKEN is not set: add it in Settings > CI/CD > Variables "
            "(a project access token, role Reporter, scope api; masked, not protected); see docs/ci.md"
        ]
        # A token the API refuses (here: nothing listens) is one line too, never a traceback.
        unreachable = {
            **mr,
            "PLANRUNNER_NOTE_TOKEN": "secret-note-token",
            "CI_API_V4_URL": "http://127.0.0.1:1/api/v4",
            "CI_PROJECT_ID": "1",
            "CI_MERGE_REQUEST_IID": "2",
        }
        review = gitlab_job(repo, "planrunner-review", repo.clone("main"), unreachable)
        assert review.returncode == 1
        assert "Traceback" not in review.stderr and "secret-note-token" not in review.stdout + review.stderr
        assert review.stderr.strip().startswith("planrunner: GET merge-request notes failed:")
        assert len(review.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- init: safety and next steps


def test_n19_init_never_writes_through_a_symlink(tmp_path: Path, run) -> None:
    victim = tmp_path / "victim_rc"
    victim.write_text("mine\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in (".gitignore", ".gitattributes"):
        repo_dir = tmp_path / f"r{name}"
        repo_dir.mkdir()
        (repo_dir / name).symlink_to(victim)
        r = run("init", str(repo_dir), "--ci", "none")
        assert r.code == 2
        assert f"{repo_dir / name}: is a symbolic link" in r.err and "Traceback" not in r.err
        assert victim.read_text() == "mine\n"
        assert sorted(p.name for p in repo_dir.iterdir()) == [name]  # nothing else written
    # A symlinked directory on the way (plans -> elsewhere), and a dangling symlink.
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "plans").symlink_to(elsewhere, target_is_directory=True)
    assert run("init", str(linked)).code == 2
    assert list(elsewhere.iterdir()) == []
    dangling = tmp_path / "dangling"
    (dangling / ".github" / "workflows").mkdir(parents=True)
    (dangling / ".github" / "workflows" / "planrunner.yml").symlink_to(tmp_path / "new-file")
    assert run("init", str(dangling)).code == 2
    assert not (tmp_path / "new-file").exists()


def test_n19_open_nofollow_refuses_a_link_made_after_the_check(tmp_path: Path) -> None:
    # The check before writing can be raced; the open itself refuses too (O_NOFOLLOW).
    victim = tmp_path / "victim"
    victim.write_text("mine\n")
    (tmp_path / ".gitignore").symlink_to(victim)
    with pytest.raises(UsageError, match="is a symbolic link"):
        init._ensure_lines(tmp_path / ".gitignore", init.GITIGNORE_LINES)
    assert victim.read_text() == "mine\n"


def test_finding_21_init_ignores_sim_ledgers(tmp_path: Path, run) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert run("init", str(tmp_path)).code == 0
    for name in ("example.sim.ledger.jsonl", "example.ledger.jsonl.lock", "example.ledger.jsonl"):
        (tmp_path / "plans" / name).write_text("{}\n")
    # What the commit-back step adds: the real ledger, never the sim one or the lock.
    listed = subprocess.run(
        ["git", "ls-files", "--modified", "--others", "--exclude-standard", "--", "*.ledger.jsonl"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert listed == ["plans/example.ledger.jsonl"]


@pytest.mark.parametrize("ci", ["github", "gitlab", "none"])
def test_finding_22_init_names_every_variable_its_ci_needs(tmp_path: Path, run, ci: str) -> None:
    r = run("init", str(tmp_path), "--ci", ci)
    assert r.code == 0
    nxt = r.out.strip().splitlines()[-1]
    assert nxt.startswith("next: ")
    text = {"github": WORKFLOW, "gitlab": GITLAB}.get(ci)
    needed = {"ENOS_ACCESS_KEY", "ENOS_SECRET_KEY"}
    if text is not None:
        body = text.read_text()
        found = set(re.findall(r"secrets\.(\w+)", body)) | set(
            re.findall(r"\$\{?(ENOS_\w+_KEY|PLANRUNNER_\w+_TOKEN)\b", body)
        )
        needed |= found
    for name in needed:
        assert name in nxt, (ci, name)
    if ci == "github":
        assert 'environment "planrunner"' in nxt
    assert f"{REPOSITORY}/blob/v{__version__}/docs/ci.md" in nxt


# ---------------------------------------------------------------- packaging and the project's own workflows


def test_issue_23_wheel_holds_the_package_and_its_data_only(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", ".benchmarks", "build", "dist"
        ),
    )
    # No download: setuptools comes from the test extras (no build isolation, no index).
    p = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(tmp_path / "out"), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    (wheel,) = (tmp_path / "out").glob("*.whl")
    assert wheel.name == f"planrunner-{__version__}-py3-none-any.whl"
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        metadata = z.read(f"planrunner-{__version__}.dist-info/METADATA").decode()
        packaged_schema = z.read("planrunner/schemas/plan.schema.json").decode()
    sources = {str(p.relative_to(ROOT)) for p in (ROOT / "planrunner").rglob("*.py")}
    assert sources <= names  # every module and subpackage ships
    assert {"planrunner/py.typed", "planrunner/schemas/plan.schema.json"} <= names
    assert {"planrunner/templates/github.yml", "planrunner/templates/gitlab-ci.yml"} <= names
    tops = {n.split("/")[0] for n in names}
    assert tops == {"planrunner", f"planrunner-{__version__}.dist-info"}  # no tests, testing, bench
    assert packaged_schema == (ROOT / "schemas" / "plan.schema.json").read_text()
    assert f"Project-URL: Repository, {REPOSITORY}" in metadata
    assert f"Version: {__version__}" in metadata


def test_issue_17_ci_job_runs_ci_run_from_a_fresh_clone_in_an_empty_environment() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    (job,) = workflow["jobs"].values()
    script = "\n".join(s.get("run", "") for s in job["steps"])
    assert 'git clone --quiet --no-local "$GITHUB_WORKSPACE" "$clone"' in script
    assert 'env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$(mktemp -d)" CI=true bash "$clone/.ci/run"' in script


def test_issue_23_release_workflow_builds_checks_runs_and_attaches() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    assert workflow[True]["release"]["types"] == ["published"]
    (job,) = workflow["jobs"].values()
    script = "\n".join(s.get("run", "") for s in job["steps"])
    for needle in (
        "python -m build",
        "twine check --strict dist/*",
        'python -m venv "$venv"',
        'cd "$RUNNER_TEMP"',  # outside the checkout
        '"$venv/bin/planrunner" --version',
        '"$venv/bin/planrunner" validate',
        '"$venv/bin/planrunner" schema',
        'gh release upload "$TAG" dist/*',
    ):
        assert needle in script, needle
    assert "id-token" not in yaml.safe_dump(workflow)  # publishing to an index is opt-in (docs)


# ---------------------------------------------------------------- pre-commit


@pytest.mark.slow
def test_pre_commit_hook_validates_staged_plans(tmp_path: Path) -> None:
    exe = venv_tool("pre-commit")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "ENOS_"))},
        **GIT_ID,
        "PRE_COMMIT_HOME": str(tmp_path / "cache"),
    }
    # try-repo installs the hook from a commit: copy this working tree (with its
    # uncommitted changes) into a repository of its own and commit it there.
    hook_repo = tmp_path / "planrunner"
    shutil.copytree(
        ROOT,
        hook_repo,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", ".benchmarks", "build"
        ),
    )
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "snapshot"]):
        subprocess.run(["git", *args], cwd=hook_repo, env=env, check=True, capture_output=True)

    user = tmp_path / "user"
    (user / "plans").mkdir(parents=True)
    good = (ROOT / "plans" / "example.yaml").read_text().replace(
        "userId: u-data-eng", "userId: ${ENOS_USER_ID}"
    )
    (user / "plans" / "good.yaml").write_text(good)
    (user / "plans" / "sim-flows.yaml").write_text("- flowId: 1\n")  # not a plan: excluded
    (user / "notes.yaml").write_text("not: a plan\n")  # outside plans/: not matched
    subprocess.run(["git", "init", "-q"], cwd=user, env=env, check=True)
    subprocess.run(["git", "add", "-A"], cwd=user, env=env, check=True)

    def try_repo(*files: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [exe, "try-repo", str(hook_repo), "planrunner-validate", "--verbose", "--files", *files],
            cwd=user,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    ok = try_repo("plans/good.yaml", "plans/sim-flows.yaml", "notes.yaml")
    assert ok.returncode == 0, ok.stdout + ok.stderr  # an unset ${VAR} needs no secret
    assert "Passed" in ok.stdout
    assert "plans/good.yaml: ok" in ok.stdout and "1 warning" in ok.stdout
    assert "sim-flows" not in ok.stdout.split("Using config")[-1].split("planrunner validate")[-1]
    assert "notes.yaml" not in ok.stdout.split("planrunner validate")[-1]

    (user / "plans" / "bad.yaml").write_text(good.replace('"0 2 * * *"', '"61 2 * * *"'))
    subprocess.run(["git", "add", "-A"], cwd=user, env=env, check=True)
    bad = try_repo("plans/good.yaml", "plans/bad.yaml")
    assert bad.returncode == 1
    assert "Failed" in bad.stdout
    assert 'plans/bad.yaml:18:11: error: flows[0].cron: bad minute field' in bad.stdout


# ---------------------------------------------------------------- a fresh machine (findings 1, 2)


def test_finding_1_2_tools_are_found_next_to_the_interpreter_never_on_path(tmp_path: Path) -> None:
    # CI runs the venv's python without activating the venv: a tool the test extras install
    # is beside sys.executable, and a PATH lookup would find it only on a machine where it
    # was installed by hand. No test, helper or benchmark may look a tool up on PATH.
    offenders = []
    for folder in ("tests", "testing", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if "shutil.which(" in line and "pg_config" not in line and "runuser" not in line:
                    offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert offenders == []
    # venv_tool looks beside the interpreter only: an empty PATH changes nothing.
    p = subprocess.run(
        [sys.executable, "-c", "import testing; print(testing.venv_tool('pre-commit'))"],
        cwd=ROOT,
        env={"PATH": str(tmp_path), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    assert Path(p.stdout.strip()).parent == Path(sys.executable).parent
    # ... and a tool that is not there fails with the install hint, whatever PATH holds.
    p = subprocess.run(
        [sys.executable, "-c", "import testing; testing.venv_tool('sh')"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode != 0 and "is a test dependency" in p.stderr
