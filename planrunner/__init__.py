"""planrunner: declarative, exactly-once trigger plans for the EnOS Data Flow batch service."""

__version__ = "0.1.0"
