"""mscbench: benchmark multi-scenario recommenders, per scenario, with significance."""

__version__ = "0.1.0"
