"""planrunner: declarative, exactly-once trigger plans for the EnOS Data Flow batch service.

Code map, one line per module, lowest layer first; a module imports only from the lines
above it (tests/test_architecture.py checks it).

- ``outcome``, ``errors``, ``times``, ``protocol``, ``log``, ``select``: shared vocabulary
  (``Status``, ``KeyStatus``, ``Event``, ``InstanceState``, ``Outcome``), exit codes, time
  forms, the wire (standard library only)
- ``source``, ``cron``, ``schema``, ``plan``, ``resolve``, ``checking``, ``saved``: the plan
  language: YAML with locations, Debian-cron DST rules, the JSON Schema, the typed plan,
  entries resolved to epoch ms, every check in one place, saved plans
- ``ledger/``: the ledger (``records`` <- ``fold`` <- ``base``, ``lock``, ``pgsql`` <-
  ``file``, ``postgres`` <- ``__init__``, ``tools``); readers ``read()``, writers ``session()``
- ``credentials``, ``transport``, ``answers``, ``enos``: the signed client: keys and the
  token clock, the loopback guard, answer deadline and proxy, what an answer means, the calls
- ``lookup``: finding instances: one entry's (Get by id, Search by minute) and many at once
  (``look_up_many``: per flow, Search over windows of at most a day), and their states
- ``rate``: the one limiter of every signed call (adaptive on 429, quota and refusal
  detection in ``Refusals``) and the one backoff with full jitter
- ``runs/``: the engines: ``apply`` (``Runner``; ``decide``, the answer table and Get Flow's
  verdict; ``flow``, one flow's work; ``earlier``, reconciling earlier runs' unknown keys in
  batches; ``pace``, Get Flow first, ``maxUnfinished`` and ``haltOnFailure``; ``rerun``, the
  free-minute rule, rerun rounds, ``Reruns`` (apply's) and ``refresh`` (plan --refresh's);
  ``settings``, apply's ``Options``), ``watch`` (status), ``cancel``; ``__init__``: run ids,
  ``connect``, the pool
- ``runs/doctor``: doctor's read-only checks of a gateway's assumptions (Get Flow included)
- ``report/``: every rendering; what each command prints, by ``--format``

  - ``report/__init__``: FORMAT_VERSION, markdown escape, marker and fit, ``RENDERERS``
  - ``report/plan``: plan and apply (text diff, JSON, markdown); ``plan_statuses(folded)``
  - ``report/columns``: a flow's schedule line, DST-gap marks, business dates, future entries
  - ``report/refresh``: plan --refresh's instances and reruns; entries applied with other parameters
  - ``report/validate``: validate (text, JSON, GitHub annotations)
  - ``report/ledger``: ``ledger log`` and ``ledger verify`` (text, JSON)
  - ``report/status``, ``report/cancel``: status and cancel (text, JSON, markdown)
  - ``report/gantt``: the markdown plan's mermaid gantt of each flow's window
  - ``report/doctor``: doctor (text, JSON)

- ``commands/``: one module per command: options -> request -> run -> report -> exit code

  - ``commands/options``: option types and the shared options (``add_plan``, ...)
  - ``commands/context``: the moment, limits and the ledger's place, read one way
  - ``commands/validate``, ``plan``, ``apply``, ``status``, ``cancel``: the plan's life
  - ``commands/ledger``: log, verify, compact, export, import
  - ``commands/doctor``, ``init``, ``schema``, ``completion``: set-up and checks
  - ``commands/sim``: ``planrunner sim`` (the simulator itself is ``sim/``)

- ``terminal``: the progress bar, the live line, the prompt, colour
- ``cli``: the parser, dispatch, the one error handler; ``launch``, ``__main__``: the entry
  points, with signal handlers before anything heavy is imported
- ``sim/``: the service simulator; imports only ``protocol``, ``source`` and ``errors``
  (``flows``: the vendor's Flow struct; ``instances``: instances, queues, tasks, logs and the
  Search index; ``quota``: the gateway's quotas; ``service``, ``gateway``, ``state``, ``http``)
- ``schemas/``, ``templates/``: package data (the plan JSON Schema; init's CI workflows)
"""

# The one place the version is written: the package metadata reads it (pyproject.toml), and
# the schema's $id, the CI files' pinned tag and the release tag must carry it (tests/test_ci.py).
__version__ = "0.2.0"

# planrunner's own repository: the CI files install it from here at the release tag.
REPOSITORY = "https://github.com/planrunner/planrunner"
