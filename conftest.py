# The harness's pytest plugins (options, fixtures; pytest-xdist across devices) live in suites/plugin/;
# this only registers them.
pytest_plugins = ["suites.plugin.pytest_plugin", "suites.plugin.xdist_devices"]
