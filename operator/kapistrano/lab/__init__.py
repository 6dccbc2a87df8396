"""The test-host lab: real OpenSSH hosts in network + mount namespaces, for tests and `kapistrano demo`.

    with HostLab(3) as lab:
        host = lab.hosts[0]
        subprocess.run(lab.ssh_argv(host, "hostname -I"), check=True)
        host.exec("ls /var/www")            # inside the host, without SSH
        host.path("/var/www/app/current")   # the same file seen from the root filesystem

Needs root; require_lab_support() says why the lab cannot run when it cannot.
"""

from .hosts import HostLab, reap_stale_labs, require_lab_support
from .machine import LabCommandError, LabHost
from .network import LabError

__all__ = ["HostLab", "LabCommandError", "LabError", "LabHost", "reap_stale_labs", "require_lab_support"]
