# The harness's pytest plugins (options, fixtures, markers; pytest-xdist across devices) live in harness/;
# this only registers them.
pytest_plugins = ["harness.pytest_plugin", "harness.pytest_parallel"]
