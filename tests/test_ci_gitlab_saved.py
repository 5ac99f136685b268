"""Finding 34, GitLab half: the template's opt-in saved plans (PLANRUNNER_SAVED_PLANS).

The review job's `plan --out` files become its artifacts; the apply job of the merge fetches
them through the GitLab API and applies exactly them. The jobs run as in tests/test_ci.py (their
scripts in bash, in temporary git repositories, against the simulator); the GitLab API is a
small loopback server below that serves the merge request, its head pipeline's jobs and the
review job's artifacts as a zip, built from the files the template's `artifacts:` names.
"""

from __future__ import annotations

import io
import json
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from planrunner.sim import Simulator
from tests.test_ci import GITLAB, GITLAB_APPLY, Repo, enable, gitlab_job, merge, seed
from tests.test_ci import repo as repo  # the fixture: a bare origin and a bin directory

PROJECT = "1"
IID = 7
PIPELINE = 55
JOB = 99
JOB_TOKEN = "job-token-secret"
NOTE_TOKEN = "note-token-secret"


@dataclass
class FakeGitLab:
    """The merge request, its head pipeline and review job, and the notes, as GitLab's API."""

    url: str = ""
    merged: dict[str, int] = field(default_factory=dict)  # commit sha -> merged MR iid
    artifacts: bytes = b""
    review_succeeded: bool = True
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, auth

    def answer(self, method: str, path: str, auth: str) -> tuple[int, bytes, str]:
        self.calls.append((method, path, auth))
        if auth not in (f"JOB-TOKEN {JOB_TOKEN}", f"PRIVATE-TOKEN {NOTE_TOKEN}"):
            return 401, b'{"message": "401 Unauthorized"}', "application/json"
        base = f"/api/v4/projects/{PROJECT}"
        path, _, query = path.partition("?")
        if path.startswith(f"{base}/merge_requests/{IID}/notes"):
            return 200, b"[]" if method == "GET" else b"{}", "application/json"
        if path.startswith(f"{base}/repository/commits/") and path.endswith("/merge_requests"):
            sha = path.split("/")[-2]
            mrs = (
                [{"iid": self.merged[sha], "state": "merged", "target_branch": "main"}]
                if sha in self.merged
                else []
            )
            return 200, json.dumps(mrs).encode(), "application/json"
        if path == f"{base}/merge_requests/{IID}":
            return (
                200,
                json.dumps({"iid": IID, "head_pipeline": {"id": PIPELINE}}).encode(),
                "application/json",
            )
        if path == f"{base}/pipelines/{PIPELINE}/jobs":
            assert "scope[]=success" in query
            jobs = (
                [{"id": JOB, "name": "planrunner-review", "status": "success"}]
                if self.review_succeeded
                else []
            )
            return 200, json.dumps(jobs).encode(), "application/json"
        if path == f"{base}/jobs/{JOB}/artifacts" and self.artifacts:
            return 200, self.artifacts, "application/zip"
        return 404, b'{"message": "404 Not found"}', "application/json"


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    fake = FakeGitLab()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            auth = next(
                (
                    f"{h} {self.headers[h]}"
                    for h in ("JOB-TOKEN", "PRIVATE-TOKEN")
                    if self.headers.get(h)
                ),
                "",
            )
            code, body, kind = fake.answer(self.command, self.path, auth)
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/api/v4"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def upload_artifacts(work: Path) -> bytes:
    """What the runner uploads for the review job: the files its `artifacts: paths:` name."""
    paths = yaml.safe_load(GITLAB.read_text())["planrunner-review"]["artifacts"]["paths"]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for pattern in paths:
            for f in sorted((work / pattern).rglob("*")) if (work / pattern).is_dir() else []:
                archive.write(f, f.relative_to(work).as_posix())
    return out.getvalue()


def review(repo: Repo, gitlab: FakeGitLab, branch: str) -> None:
    """The merge request's pipeline: the review job, then its artifacts uploaded."""
    work = repo.clone(branch)
    variables = {
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "PLANRUNNER_SAVED_PLANS": "true",
        "PLANRUNNER_NOTE_TOKEN": NOTE_TOKEN,
        "CI_API_V4_URL": gitlab.url,
        "CI_PROJECT_ID": PROJECT,
        "CI_MERGE_REQUEST_IID": str(IID),
    }
    job = gitlab_job(repo, "planrunner-review", work, variables)
    assert job.returncode == 0, job.stdout + job.stderr
    gitlab.artifacts = upload_artifacts(work)


def reviewed_merge(repo: Repo, gitlab: FakeGitLab, url: str, *, also_on_main: str = "") -> str:
    """A merge request enabling f1, reviewed, then merged (after ``also_on_main`` was enabled
    on main, if given); the merge commit's sha, which the fake API maps to the request."""
    seed(repo, url)
    enable(repo, "f1", "mr")
    review(repo, gitlab, "mr")
    if also_on_main:
        enable(repo, also_on_main, "main")
    merge(repo, "mr")
    return repo.head()


def apply(repo: Repo, gitlab: FakeGitLab, **extra: str) -> Any:
    variables = {
        **GITLAB_APPLY,
        "PLANRUNNER_PUSH_URL": str(repo.origin),
        "PLANRUNNER_SAVED_PLANS": "true",
        "CI_COMMIT_SHA": repo.head(),
        "CI_API_V4_URL": gitlab.url,
        "CI_PROJECT_ID": PROJECT,
        "CI_JOB_TOKEN": JOB_TOKEN,
        **extra,
    }
    return gitlab_job(repo, "planrunner-apply", repo.clone("main"), variables)


def created(sim: Simulator) -> set[tuple[int, int]]:
    return {(t["flowId"], t["triggerTime"]) for t in sim.triggers() if t["flowInstanceId"]}


def test_finding_34_gitlab_saved_plans_are_opt_in() -> None:
    template = yaml.safe_load(GITLAB.read_text())
    assert template["variables"]["PLANRUNNER_SAVED_PLANS"] == "false"
    assert template["planrunner-review"]["artifacts"]["paths"] == ["saved-plans/"]


def test_finding_34_gitlab_merge_applies_the_reviewed_saved_plan(
    repo: Repo, gitlab: FakeGitLab
) -> None:
    with Simulator(accept_unknown_flows=True) as sim:
        before = reviewed_merge(repo, gitlab, sim.url)
        gitlab.merged[before] = IID
        names = zipfile.ZipFile(io.BytesIO(gitlab.artifacts)).namelist()
        assert names == ["saved-plans/p.yaml.plan.json"]

        first = apply(repo, gitlab)
        assert first.returncode == 0, first.stdout + first.stderr
        assert (
            f"saved plans of merge request !{IID} (pipeline {PIPELINE}, job {JOB}): p.yaml.plan.json"
            in first.stdout
        )
        assert {f for f, _ in created(sim)} == {10, 11}  # f0 and the f1 the MR enabled
        assert len(sim.triggers()) == 4
        log = repo.git(repo.origin, "log", "--format=%s", f"{before}..main").splitlines()
        assert log == ["planrunner: ledgers after apply [skip ci]"]
        # Without the note token the job token reads the API; with it, the note token does.
        fetched = [c for c in gitlab.calls if "/notes" not in c[1]]
        assert fetched and all(auth == f"JOB-TOKEN {JOB_TOKEN}" for _, _, auth in fetched)
        assert fetched[-1][1].endswith(f"/jobs/{JOB}/artifacts")

        # The job retried (same commit; main's tip has the ledger now): nothing sent.
        gitlab.calls.clear()
        again = apply(repo, gitlab, CI_COMMIT_SHA=before, PLANRUNNER_NOTE_TOKEN=NOTE_TOKEN)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "ledgers unchanged: nothing to commit" in again.stdout
        assert len(sim.triggers()) == 4
        assert {auth for _, _, auth in gitlab.calls} == {f"PRIVATE-TOKEN {NOTE_TOKEN}"}
        for out in (first, again):
            assert (
                JOB_TOKEN not in out.stdout + out.stderr
                and NOTE_TOKEN not in out.stdout + out.stderr
            )


def test_finding_34_gitlab_stale_saved_plan_is_refused_with_one_line(
    repo: Repo, gitlab: FakeGitLab
) -> None:
    with Simulator(accept_unknown_flows=True) as sim:
        # Another change to the plan lands on main after the review: the merge's plan is not
        # the reviewed one.
        before = reviewed_merge(repo, gitlab, sim.url, also_on_main="f2")
        gitlab.merged[before] = IID
        stale = apply(repo, gitlab)
        assert stale.returncode == 2, stale.stdout + stale.stderr
        errors = [line for line in stale.stderr.splitlines() if line.strip()]
        assert (
            len(errors) == 1
            and "saved plan is stale" in errors[0]
            and "Traceback" not in stale.stderr
        )
        assert sim.triggers() == []
        assert repo.head() == before  # nothing sent, nothing to commit


@pytest.mark.parametrize(
    ("case", "code", "line"),
    [
        (
            "no merge request",
            2,
            "is not the merge of a merge request into main: no reviewed plan to apply",
        ),
        ("review failed", 2, "has no successful planrunner-review job: no reviewed plan to apply"),
        (
            "artifacts expired",
            2,
            f"the artifacts of job {JOB} not found (expired?): no reviewed plan to apply",
        ),
        (
            "no saved plan",
            2,
            "plans/p.yaml: no saved plan from the merge request's review: not applied",
        ),
        ("bad token", 1, "planrunner: GET the commit's merge requests failed: HTTP Error 401"),
        ("unreachable", 1, "planrunner: GET the commit's merge requests failed:"),
    ],
)
def test_finding_34_gitlab_merge_without_a_reviewed_plan_sends_nothing(
    repo: Repo, gitlab: FakeGitLab, case: str, code: int, line: str
) -> None:
    with Simulator(accept_unknown_flows=True) as sim:
        before = reviewed_merge(repo, gitlab, sim.url)
        if case != "no merge request":
            gitlab.merged[before] = IID
        extra: dict[str, str] = {}
        if case == "review failed":
            gitlab.review_succeeded = False
        elif case == "artifacts expired":
            gitlab.artifacts = b""
        elif case == "no saved plan":
            gitlab.artifacts = upload_artifacts(repo.tmp)  # an archive without saved-plans/
        elif case == "bad token":
            extra["CI_JOB_TOKEN"] = "wrong"
        elif case == "unreachable":
            extra["CI_API_V4_URL"] = "http://127.0.0.1:1/api/v4"
        job = apply(repo, gitlab, **extra)
        assert job.returncode == code, job.stdout + job.stderr
        errors = [x for x in job.stderr.splitlines() if x.strip()]
        assert len(errors) == 1 and line in errors[0], job.stderr
        assert "Traceback" not in job.stderr and JOB_TOKEN not in job.stdout + job.stderr
        assert sim.triggers() == []
        assert repo.head() == before
