"""Secrets in command output never reach a status, a host message or an Event; credential reprs hide keys."""

from __future__ import annotations

import pytest
from kapistrano.api.status import HostStatus, ReleaseStatus
from kapistrano.cli.common import Credentials as FileCredentials
from kapistrano.engine.events import HostEvent
from kapistrano.hosts.errors import CommandFailed
from kapistrano.k8s.credentials import Credentials, SecretContent
from kapistrano.k8s.events import describe, redact

KEY = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU\n-----END OPENSSH PRIVATE KEY-----\n"

SECRET_LINES = [
    pytest.param("DB_PASSWORD=hunter2 rake aborted", "hunter2", id="password-assignment"),
    pytest.param("export MYSQL_PWD='hunter2'", "hunter2", id="pwd-quoted"),
    pytest.param('config: {"api_key": "sk-live-abcdef"}', "sk-live-abcdef", id="json-api-key"),
    pytest.param("API_TOKEN: tok_1234567890", "tok_1234567890", id="yaml-token"),
    pytest.param("SECRET_KEY_BASE=0123456789abcdef", "0123456789abcdef", id="secret-key-base"),
    pytest.param("fatal: https://deploy:hunter2@git.example.com/app.git", "hunter2", id="url-password"),
    pytest.param("Authorization: Bearer abcdefghijklmnop", "abcdefghijklmnop", id="bearer"),
    pytest.param("using ghp_abcdefghijklmnopqrstuvwxyz0123", "ghp_abcdefghijklmnopqrstuvwxyz0123", id="github-token"),
    pytest.param("aws AKIAABCDEFGHIJKLMNOP", "AKIAABCDEFGHIJKLMNOP", id="aws-key-id"),
    pytest.param(KEY.decode(), "b3BlbnNzaC1rZXktdjEAAAAABG5vbmU", id="pem"),
    pytest.param(
        "key " + "QUJDRGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY3ODkwQUJDREVGR0hJSktM", "QUJDRGVm", id="long-base64"
    ),
]


@pytest.mark.parametrize(("line", "secret"), SECRET_LINES)
def test_secrets_are_redacted(line: str, secret: str) -> None:
    assert secret not in redact(line)
    assert "[redacted" in redact(line)


@pytest.mark.parametrize(
    "line",
    [
        "bundle install failed: exit 1",
        "Gem::MissingSpecError: could not find pg-1.5.4",
        "rake db:migrate: table users exists",
        "service worker: not ready after 3 failed attempts in a row: HTTP 503",
        "PWD=/var/www/app/current author: Jane, tests passed: 12",
        'label it kapistrano.dev/ssh-credentials="true"; api_key: none',
        "sha256 mismatch: expected "
        + "0" * 64
        + ", got "
        + "695332cbb3fc992b493fceac0db1d559f6f8b8c3f22a23b566465559571c0737",
    ],
)
def test_ordinary_output_is_left_alone(line: str) -> None:
    assert redact(line) == line


def test_a_failed_commands_message_is_redacted_at_the_source() -> None:
    error = CommandFailed("web-1", "hook migrate", 1, "connecting with DB_PASSWORD=hunter2\nrake aborted!")
    assert "hunter2" not in error.message
    assert "hunter2" not in str(error)
    assert "rake aborted!" in error.message


def test_status_messages_are_redacted_when_written_out_whatever_put_them_there() -> None:
    status = ReleaseStatus(message="DB_PASSWORD=hunter2", hosts=[HostStatus(name="h", message="TOKEN=hunter2")])
    status = status.model_copy(update={"message": "api_key: hunter2"})  # past the validators
    assert "hunter2" not in str(status.wire())


def test_events_are_redacted() -> None:
    found = describe(HostEvent("web-1", "hook failed: SECRET=hunter2", None, warning=True))
    assert found is not None
    assert "hunter2" not in found[2]


def test_credential_reprs_never_show_a_key() -> None:
    shown = [
        repr(Credentials(private_key=KEY, known_hosts=b"host ssh-ed25519 AAAA", fingerprint="f")),
        repr(FileCredentials(private_key=KEY, known_hosts=None)),
        repr(SecretContent({"ssh-privatekey": "c2VjcmV0LWtleS1ieXRlcw=="}, opted_in=True)),
    ]
    for text in shown:
        assert "PRIVATE KEY" not in text
        assert "b3BlbnNzaC1rZXktdjEAAAAABG5vbmU" not in text
        assert "c2VjcmV0LWtleS1ieXRlcw" not in text
