"""SSH credentials of a Release, read from the Secret in spec.ssh.secretRef of its namespace.

Only a Secret meant for it is used: one of type `kubernetes.io/ssh-auth`, or one labelled
`kapistrano.dev/ssh-credentials: "true"`. Whoever may write a Release can name any Secret of its
namespace; without this opt-in the operator could be made to present an unrelated key to an
address of the writer's choice.

A problem with the Secret is not an error of the operator: it becomes a Stalled condition with a
reason and a message saying what to fix, and the operator checks again by itself. Key material never
appears in a message: only key names, the Secret's name and what is wrong.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from dataclasses import dataclass, field

import asyncssh
from kubernetes.client.exceptions import ApiException

from kapistrano.api.spec import ReleaseSpec
from kapistrano.k8s import kubeapi
from kapistrano.k8s.settings import OPTIONS

PRIVATE_KEY = "ssh-privatekey"
KNOWN_HOSTS = "known_hosts"
#: A Secret with this label set to "true", or of type SSH_AUTH_TYPE, may be used by the operator.
OPT_IN_LABEL = "kapistrano.dev/ssh-credentials"
SSH_AUTH_TYPE = "kubernetes.io/ssh-auth"


@dataclass(frozen=True)
class Credentials:
    """A usable client key and known_hosts, with a fingerprint of both to notice changes."""

    private_key: bytes = field(repr=False)
    known_hosts: bytes | None = field(repr=False)
    fingerprint: str


@dataclass(frozen=True)
class SecretContent:
    """A Secret's base64 data and whether it opted in to being used for SSH."""

    data: dict[str, str] = field(repr=False)
    opted_in: bool

    @property
    def fingerprint(self) -> str:
        """Changes when the data or the opt-in changes (pure)."""
        return fingerprint_of(self.data) + ("" if self.opted_in else ":not-opted-in")


class CredentialsProblem(Exception):
    """The Secret cannot be used: `reason` is the Stalled reason, the message says what to fix."""

    def __init__(self, reason: str, message: str, fingerprint: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.fingerprint = fingerprint


def fingerprint_of(data: dict[str, str]) -> str:
    """A digest of a Secret's data, to tell whether it changed without keeping it around (pure)."""
    digest = hashlib.sha256()
    for key in sorted(data):
        digest.update(key.encode() + b"\0" + data[key].encode() + b"\0")
    return digest.hexdigest()


def opted_in(secret_type: str | None, labels: dict[str, str] | None) -> bool:
    """Whether a Secret may be used as SSH credentials: its type or its label says so (pure)."""
    return secret_type == SSH_AUTH_TYPE or (labels or {}).get(OPT_IN_LABEL) == "true"


def read_secret(namespace: str, name: str) -> SecretContent | None:
    """A Secret's data and opt-in, or None when it does not exist (blocking network I/O)."""
    try:
        secret = kubeapi.core().read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return SecretContent(dict(secret.data or {}), opted_in(secret.type, secret.metadata.labels))


def current_fingerprint(namespace: str, name: str) -> str:
    """The fingerprint of a Secret as it is now, "" when it does not exist (blocking network I/O)."""
    content = read_secret(namespace, name)
    return content.fingerprint if content is not None else ""


async def load(namespace: str, spec: ReleaseSpec) -> Credentials:
    """Read and check the Release's Secret (network I/O); raises CredentialsProblem."""
    ref = spec.ssh.secret_ref
    if ref is None:
        raise CredentialsProblem(
            "InvalidSpec", "spec.ssh.secretRef is required: name a Secret with keys ssh-privatekey and known_hosts"
        )
    if spec.ssh.insecure_skip_host_key_check and OPTIONS.forbid_insecure_host_keys:
        raise CredentialsProblem(
            "InsecureHostKeysForbidden",
            "spec.ssh.insecureSkipHostKeyCheck is forbidden by this operator (--forbid-insecure-host-keys): "
            "add known_hosts to the Secret and remove the setting",
        )
    content = await asyncio.to_thread(read_secret, namespace, ref.name)
    if content is None:
        raise CredentialsProblem(
            "SecretNotFound",
            f"Secret {namespace}/{ref.name} (spec.ssh.secretRef) does not exist: create it with keys "
            f"{PRIVATE_KEY} and {KNOWN_HOSTS}",
        )
    if not content.opted_in:
        raise CredentialsProblem(
            "SecretNotOptedIn",
            f"Secret {namespace}/{ref.name} (spec.ssh.secretRef) is not meant for kapistrano: label it "
            f'{OPT_IN_LABEL}="true" (or make it of type {SSH_AUTH_TYPE}) to let the operator use it',
            content.fingerprint,
        )
    return parse(f"{namespace}/{ref.name}", content.data, spec.ssh.insecure_skip_host_key_check)


def _decode(where: str, data: dict[str, str], key: str) -> bytes | None:
    """One base64 value of a Secret, None when absent (pure); raises CredentialsProblem."""
    raw = data.get(key)
    if not raw:
        return None
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise CredentialsProblem(
            "CredentialsInvalid", f"Secret {where}: {key} is not valid base64", fingerprint_of(data)
        ) from None


def parse(where: str, data: dict[str, str], insecure: bool) -> Credentials:
    """Check a Secret's data and return the credentials (pure); raises CredentialsProblem."""
    print_ = fingerprint_of(data)
    key = _decode(where, data, PRIVATE_KEY)
    if key is None:
        raise CredentialsProblem(
            "CredentialsInvalid", f"Secret {where} has no {PRIVATE_KEY}: add the SSH client key", print_
        )
    try:
        asyncssh.import_private_key(key)
    except (asyncssh.KeyImportError, ValueError, TypeError):
        # The library's message is not repeated: it may quote the input.
        raise CredentialsProblem(
            "CredentialsInvalid",
            f"Secret {where}: {PRIVATE_KEY} is not an unencrypted OpenSSH or PEM private key",
            print_,
        ) from None
    known = _decode(where, data, KNOWN_HOSTS)
    if known is None and not insecure:
        raise CredentialsProblem(
            "CredentialsInvalid",
            f"Secret {where} has no {KNOWN_HOSTS}: add the hosts' keys (ssh-keyscan) or set "
            "spec.ssh.insecureSkipHostKeyCheck",
            print_,
        )
    if known is not None:
        try:
            asyncssh.import_known_hosts(known.decode())
        except (ValueError, UnicodeDecodeError, asyncssh.KeyImportError):
            raise CredentialsProblem(
                "CredentialsInvalid", f"Secret {where}: {KNOWN_HOSTS} is not in known_hosts format", print_
            ) from None
    return Credentials(private_key=key, known_hosts=known, fingerprint=print_)
