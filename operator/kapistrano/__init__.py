"""kapistrano: Capistrano-style SSH deploys with safe rolling restarts, as a Kubernetes operator."""

import warnings

__version__ = "0.1.0"

# cryptography 51 deprecates DSA and warns when asyncssh, which still defines DSA key types, is
# imported: one warning per line of every command's stderr. kapistrano never uses DSA keys.
warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"asyncssh(\.|$)")
