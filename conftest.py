# The harness's pytest plugin (options, fixtures, markers) lives in harness/; this only registers it.
pytest_plugins = ["harness.pytest_plugin"]
