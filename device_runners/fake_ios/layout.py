"""Where the test iPhone keeps its files: the iPhone's own paths under the root folder, so that a device path the
host sees (an app's Path and Container, a crash report's folder) names the same place on this host.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

_VAR = "private/var"


class Layout:
    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.media = self.root / _VAR / "mobile/Media"  # AFC's root (com.apple.afc)
        self.staging = self.media / "PublicStaging"  # where hosts upload packages to install
        self.bundles = self.root / _VAR / "containers/Bundle/Application"  # UUID/Name.app
        self.data = self.root / _VAR / "mobile/Containers/Data/Application"  # UUID/{Documents,Library,tmp}
        # ReportCrash leaves reports in OSAnalytics' group container; crashreportmover moves them to where
        # crashreportcopymobile serves them. A host that does not flush does not see the newest reports.
        self.crash_pending = (self.root / _VAR / "containers/Shared/SystemGroup"
                              / "systemgroup.com.apple.osanalytics/DiagnosticReports")
        self.crash_reports = self.root / _VAR / "mobile/Library/Logs/CrashReporter"
        self.lockdown = self.root / _VAR / "root/Library/Lockdown"  # the device key and the host's pair record
        self.faults = self.root / "faults.json"  # outside the device's paths: the test's hand on the device
        self.log_path = self.root / "fake_ios.log"
        self._log_lock = threading.Lock()
        for folder in (self.media, self.staging, self.bundles, self.data, self.crash_pending, self.crash_reports,
                       self.lockdown, self.media / "Downloads"):
            folder.mkdir(parents=True, exist_ok=True)

    def device_path(self, host_path: Path) -> str:
        """The path an iPhone would show for a file of the root (/private/var/...)."""
        return "/" + Path(host_path).resolve().relative_to(self.root).as_posix()

    def log(self, line: str) -> None:
        """One line of what the host asked for (tests read it: installs, launches, kills)."""
        with self._log_lock, self.log_path.open("a") as f:
            f.write(f"{time.time():.3f} {line}\n")
