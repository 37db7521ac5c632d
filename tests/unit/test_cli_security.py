"""`stockray auth`, `stockray certs` and the key-file check that `serve`/`up` run first."""

from __future__ import annotations

import stat

import pytest
import typer
from typer.testing import CliRunner

from features.settings import Settings
from ray_apps.cli import _check_api_keys, app
from serving.auth import Authenticator, client_token


def _run(tmp_path, *args):
    auth = tmp_path / "auth"
    out = CliRunner().invoke(app, ["--data-dir", str(tmp_path), *args],
                             env={"STOCKRAY_AUTH_DIR": str(auth)})
    assert out.exit_code == 0, out.output
    return out.output


def test_auth_commands(tmp_path):
    auth = tmp_path / "auth"
    assert "0600" in _run(tmp_path, "auth", "init")
    owner = client_token(auth)
    token = _run(tmp_path, "auth", "add-key", "ci", "--scope", "predict", "--rate", "5").strip()
    a = Authenticator(auth, reload_s=0)
    assert a.check(f"Bearer {token}", "predict") == "ci"
    listing = _run(tmp_path, "auth", "list")
    assert "ci: predict; rate 5.0/s" in listing and token not in listing and owner not in listing
    _run(tmp_path, "auth", "rotate")
    assert client_token(auth) != owner
    _run(tmp_path, "auth", "remove-key", "ci")
    assert "ci:" not in _run(tmp_path, "auth", "list")


def test_certs_command_writes_private_keys(tmp_path):
    out = _run(tmp_path, "certs", "--host", "stockray.internal")
    key = tmp_path / "certs" / "server.key"
    assert f"STOCKRAY_TLS_KEY={key}" in out
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((tmp_path / "certs" / "server.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "stockray.internal" in names.get_values_for_type(x509.DNSName)


def test_serve_refuses_unsafe_key_modes(tmp_path):
    s = Settings(data_dir=tmp_path, auth_dir=tmp_path / "auth")
    _check_api_keys(s)  # first start: creates the token
    (tmp_path / "auth" / "api_token").chmod(0o644)
    with pytest.raises(typer.Exit):
        _check_api_keys(s)
