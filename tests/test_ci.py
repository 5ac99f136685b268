"""The CI recipes users copy: run as written, against the simulator, in temporary git repos.

The GitHub workflow's jobs are read from ci/github/planrunner.yml and their `run:` scripts
executed the way the runner does (bash -eo pipefail, a failed step skips the rest except
`if: always()`), with `origin` a bare repository in tmp. The workflow, the action and the
GitLab template are checked against their published schemas (check-jsonschema, offline).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from planrunner import __version__, ledger
from planrunner.commands import init
from planrunner.sim import SimFlow, Simulator
from testing import FAST_ENV, ROOT, SIM_ENV, venv_tool

WORKFLOW = ROOT / "ci" / "github" / "planrunner.yml"
GITLAB = ROOT / "ci" / "gitlab" / "planrunner.gitlab-ci.yml"
ACTION = ROOT / "action.yml"
SCHEMA_ID = "https://planrunner.dev/schemas/plan-v1.schema.json"
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
    ],
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


def test_installs_are_pinned_to_this_release() -> None:
    pin = f"=={__version__}"
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow["env"]["PLANRUNNER_VERSION"] == pin
    action = yaml.safe_load(ACTION.read_text())
    assert action["inputs"]["version"]["default"] == pin
    assert yaml.safe_load(GITLAB.read_text())["variables"]["PLANRUNNER_VERSION"] == pin
    for job in workflow["jobs"].values():
        install = next(s for s in job["steps"] if s.get("name") == "Install planrunner")
        assert '"planrunner${PLANRUNNER_VERSION}"' in install["run"]


def test_apply_job_is_serialised_and_starts_from_the_branch_tip() -> None:
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["apply"]
    assert job["concurrency"]["cancel-in-progress"] is False
    assert "group" in job["concurrency"]
    checkout = job["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["ref"] == "${{ github.ref_name }}"
    commit = next(s for s in job["steps"] if s.get("name") == "Commit the ledgers back")
    assert commit["if"] == "always()"
    gitlab = yaml.safe_load(GITLAB.read_text())["planrunner-apply"]
    assert gitlab["resource_group"]


def test_schema_id_is_the_published_one() -> None:
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
    assert "*.ledger.jsonl.lock" in (ROOT / ".gitignore").read_text().splitlines()


# ---------------------------------------------------------------- planrunner init


def test_init_writes_everything_once_and_never_overwrites(tmp_path: Path, run) -> None:
    (tmp_path / ".gitattributes").write_text("*.png binary")  # no final newline
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "example.yaml").write_text("mine\n")
    r = run("init", str(tmp_path))
    assert r.code == 0, r.err
    assert (tmp_path / ".gitattributes").read_text() == "*.png binary\n*.ledger.jsonl merge=union\n"
    assert (tmp_path / ".gitignore").read_text() == "*.ledger.jsonl.lock\n"
    assert (tmp_path / "plans" / "example.yaml").read_text() == "mine\n"
    assert "example.yaml: left alone (exists)" in r.out
    assert (tmp_path / ".github" / "workflows" / "planrunner.yml").read_text() == WORKFLOW.read_text()
    from planrunner import schema

    assert (tmp_path / "schemas" / "plan.schema.json").read_text() == schema.text()
    again = run("init", str(tmp_path))
    assert again.code == 0
    assert (tmp_path / ".gitattributes").read_text().count("merge=union") == 1
    assert (tmp_path / ".gitignore").read_text().count("lock") == 1
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

    def run_job(self, name: str, work: Path, context: dict[str, str]) -> Job:
        """Run the workflow job's `run:` steps as the GitHub runner would."""
        workflow = yaml.safe_load(WORKFLOW.read_text())
        job_spec = workflow["jobs"][name]
        assert workflow["defaults"]["run"]["shell"] == "bash"
        env = self.env(
            {
                "GITHUB_RUN_ID": "42",
                "GITHUB_WORKFLOW": "planrunner",
                "RUNNER_TEMP": str(self.tmp / f"temp{self.clones}"),
                **FAST_ENV,
            }
        )
        Path(env["RUNNER_TEMP"]).mkdir(exist_ok=True)
        env.update({k: _expand(v, context) for k, v in workflow.get("env", {}).items()})
        job = Job()
        for i, step in enumerate(job_spec["steps"]):
            if "uses" in step or step.get("name") == "Install planrunner":
                continue  # checkout is the clone; planrunner is this checkout's
            condition = step.get("if")
            assert condition in (None, "always()"), condition
            if job.failed and condition != "always()":
                continue
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
    for f in (exe, gh):
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


def merge_context(branch: str) -> dict[str, str]:
    return {
        "github.ref_name": branch,
        "secrets.ENOS_ACCESS_KEY": SIM_ENV["ENOS_ACCESS_KEY"],
        "secrets.ENOS_SECRET_KEY": SIM_ENV["ENOS_SECRET_KEY"],
    }


def apply_job(repo: Repo, branch: str = "main") -> Job:
    return repo.run_job("apply", repo.clone(branch), merge_context(branch))


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


def test_two_branches_apply_their_ledgers_union_merge_and_nothing_is_sent_again(
    repo: Repo,
) -> None:
    with Simulator() as sim:
        seed(repo, sim.url)
        first = apply_job(repo)
        assert not first.failed, first.output()
        assert len(sim.triggers()) == 2
        assert "plans/p.ledger.jsonl" in repo.git(repo.origin, "ls-tree", "-r", "--name-only", "main")

        enable(repo, "f1", "b1")
        enable(repo, "f2", "b2")
        for branch in ("b1", "b2"):
            job = apply_job(repo, branch)
            assert not job.failed, job.output()
        assert len(sim.triggers()) == 6 and {k[0] for k in created(sim)} == {10, 11, 12}
        b1 = set(repo.show("plans/p.ledger.jsonl", "b1").splitlines())
        b2 = set(repo.show("plans/p.ledger.jsonl", "b2").splitlines())

        # The pull requests merge: the plan merges cleanly, the ledger by union.
        work = repo.clone("main")
        for branch in ("b1", "b2"):
            out = subprocess.run(
                ["git", "-c", "user.name=dev", "-c", "user.email=d@e", "merge", "--no-edit", f"origin/{branch}"],
                cwd=work,
                capture_output=True,
                text=True,
                env=repo.env(),
                check=False,
            )
            assert out.returncode == 0, out.stdout + out.stderr
        merged = (work / "plans" / "p.ledger.jsonl").read_text()
        assert "<<<<<<<" not in merged
        assert set(merged.splitlines()) == b1 | b2
        repo.git(work, "push", "--quiet", "origin", "main")

        head = repo.head()
        again = apply_job(repo)
        assert not again.failed, again.output()
        assert len(sim.triggers()) == 6  # nothing sent after the merge
        assert "ledgers unchanged: nothing to commit" in again.output()
        assert repo.head() == head


def test_a_job_whose_apply_fails_still_commits_its_ledger(repo: Repo) -> None:
    with Simulator([SimFlow(10, has_task=False)]) as sim:
        seed(repo, sim.url)
        job = apply_job(repo)
        assert job.failed
        names = [(name, code) for name, code, _ in job.steps]
        assert names[0] == ("Apply", 1)
        assert names[1] == ("Commit the ledgers back", 0), job.output()
        records = [json.loads(x) for x in repo.show("plans/p.ledger.jsonl").splitlines()]
        assert any(r["event"] == "failed" for r in records)
        assert len(sim.triggers()) == 1  # the flow was refused; the rest not sent


def test_a_rejected_push_is_rebased_and_retried(repo: Repo) -> None:
    with Simulator() as sim:
        seed(repo, sim.url)
        assert not apply_job(repo).failed
        enable(repo, "f1", "main")
        runner = repo.clone("main")
        # Meanwhile someone else commits to main, touching the ledger too (a manual apply).
        other = repo.clone("main")
        stray = ledger.record("intent", "o1/77/1767225600000", 77, "o1", 1767225600000, "a-x", flow="x", run="r")
        with (other / "plans" / "p.ledger.jsonl").open("ab") as f:
            f.write(ledger.encode([stray]))
        (other / "README.md").write_text("hello\n")
        repo.commit_all(other, "elsewhere")
        repo.git(other, "push", "--quiet", "origin", "main")

        job = repo.run_job("apply", runner, merge_context("main"))
        assert not job.failed, job.output()
        assert "push rejected (attempt 1)" in job.output()
        log = repo.git(repo.origin, "log", "--format=%s", "main")
        assert log.splitlines()[:2] == ["planrunner: ledgers after apply [skip ci]", "elsewhere"]
        text = repo.show("plans/p.ledger.jsonl")
        assert "o1/77/1767225600000" in text
        assert {json.loads(x)["flowId"] for x in text.splitlines()} == {10, 11, 77}
        assert len(sim.triggers()) == 4


def test_review_job_validates_plans_and_keeps_one_comment_per_plan(repo: Repo) -> None:
    with Simulator() as sim:
        seed(repo, sim.url)
        state = repo.tmp / "gh.json"
        context = {
            "github.token": "t",
            "github.event.pull_request.number": "7",
            "github.repository": "o/r",
        }
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
