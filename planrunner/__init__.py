"""planrunner: declarative, exactly-once trigger plans for the EnOS Data Flow batch service.

Code map, one line per module, lowest layer first; a module imports only from the lines
above it (tests/test_architecture.py checks it). DESIGN.md's sections name the contract.

- ``outcome``, ``errors``, ``times``, ``protocol``, ``log``, ``select``: shared vocabulary
  (``Status``, ``KeyStatus``, ``Event``, ``InstanceState``, ``Outcome``), exit codes, time
  forms, the wire (standard library only)
- ... the plan language, the ledger, the client and the engines (finished after the merge)
- ``report/``: every rendering; what each command prints, by ``--format``

  - ``report/__init__``: FORMAT_VERSION, markdown escape, marker and fit, ``RENDERERS``
  - ``report/plan``: plan and apply (text diff, JSON, markdown); ``plan_statuses(folded)``
  - ``report/validate``: validate (text, JSON, GitHub annotations)
  - ``report/ledger``: ``ledger log`` and ``ledger verify`` (text, JSON)

- ``commands/``: one module per command: options -> request -> run -> report -> exit code

  - ``commands/options``: option types and the shared options (``add_plan``, ...)
  - ``commands/context``: the moment, limits and the ledger's place, read one way
  - ``commands/validate``, ``plan``, ``apply``, ``status``, ``cancel``: the plan's life
  - ``commands/ledger``: log, verify, compact, export, import
  - ``commands/doctor``, ``init``, ``schema``, ``completion``: set-up and checks
  - ``commands/sim``: ``planrunner sim`` (the simulator itself is ``sim/``)

- ``cli``: the parser, dispatch, the one error handler; ``__main__``: ``python -m``
- ``sim/``: the service simulator; imports only ``protocol``, ``source`` and ``errors``
- ``schemas/``, ``templates/``: package data (the plan JSON Schema; init's CI workflows)
"""

# The one place the version is written: the package metadata reads it (pyproject.toml), and
# the schema's $id, the CI files' pinned tag and the release tag must carry it (tests/test_ci.py).
__version__ = "0.2.0"

# planrunner's own repository: the CI files install it from here at the release tag.
REPOSITORY = "https://github.com/planrunner/planrunner"
