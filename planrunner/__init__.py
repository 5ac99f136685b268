"""planrunner: declarative, exactly-once trigger plans for the EnOS Data Flow batch service."""

# The one place the version is written: the package metadata reads it (pyproject.toml), and
# the schema's $id, the CI files' pinned tag and the release tag must carry it (tests/test_ci.py).
__version__ = "0.2.0"

# planrunner's own repository: the CI files install it from here at the release tag.
REPOSITORY = "https://github.com/planrunner/planrunner"
