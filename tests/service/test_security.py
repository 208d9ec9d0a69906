"""Security promises that a refactor could quietly break: CORS closed unless configured, the
token never written to the log nor echoed, no pickle on any load path, every limit a documented
setting."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest

from service.config import Settings
from tests.support.server import REPO, run_server
from tests.support.training import image
from tests.synthetic import write_dataset

PREFLIGHT = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}


def test_cors_is_closed_by_default(tmp_path: Path) -> None:
    with run_server(tmp_path) as server, server.client() as client:
        preflight = client.options("/predict", headers=PREFLIGHT)
        assert "access-control-allow-origin" not in preflight.headers
        answer = client.post(
            "/predict", json={"pixels": image()}, headers={"Origin": "https://evil.example"}
        )
        assert answer.status_code == 200
        assert "access-control-allow-origin" not in answer.headers


def test_cors_allows_only_the_configured_origins(tmp_path: Path) -> None:
    env = {"SOFTSERVE_CORS_ORIGINS": '["https://app.example"]'}
    with run_server(tmp_path, env) as server, server.client() as client:
        allowed = client.options("/predict", headers={**PREFLIGHT, "Origin": "https://app.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        refused = client.options("/predict", headers=PREFLIGHT)
        assert "access-control-allow-origin" not in refused.headers
        answer = client.post(
            "/predict", json={"pixels": image()}, headers={"Origin": "https://app.example"}
        )
        assert answer.status_code == 200  # predictions still work with CORS on
        assert answer.headers["access-control-allow-origin"] == "https://app.example"


def test_the_token_is_never_logged_nor_echoed(tmp_path: Path) -> None:
    token, wrong = f"tok-{secrets.token_hex(16)}", f"wrong-{secrets.token_hex(16)}"
    data = write_dataset(tmp_path / "data")
    env = {"SOFTSERVE_API_TOKEN": token, "SOFTSERVE_DATA_DIR": str(data)}
    env["SOFTSERVE_LOG_LEVEL"] = "trace"  # the most said: uvicorn dumps every ASGI message
    with run_server(tmp_path, env, entry="service") as server, server.client() as client:
        bodies = []
        for value in (token, wrong, f"Bearer {wrong}", wrong.upper()):
            header = value if value.startswith("Bearer") else f"Bearer {value}"
            reply = client.post("/train", json={"epochs": 1}, headers={"Authorization": header})
            bodies.append(reply.text)
            if reply.status_code == 202:
                client.delete(f"/train/{reply.json()['job_id']}", headers={"Authorization": header})
        for path in ("/models/softmax", "/metrics", "/train", "/openapi.json"):
            bodies.append(client.get(path).text)
        bodies.append(client.get("/metrics", headers={"Accept": "text/plain"}).text)
        log = server.log_text()
    assert [b for b in bodies if token in b or wrong in b or wrong.upper() in b] == []
    assert token not in log and wrong not in log and wrong.upper() not in log
    assert '"type":"access","request_id"' in log and '"path":"/train"' in log  # it was looked at
    assert '"level":"trace"' in log  # at trace level: every ASGI message was there to leak it


PICKLE_USES = re.compile(r"\bimport pickle\b|\bfrom pickle\b|allow_pickle\s*=\s*True|np\.load\(")


@pytest.mark.parametrize("package", ["trainer", "service"])
def test_no_load_path_uses_pickle(package: str) -> None:
    """Artifacts are read by trainer/_npz.py, which refuses object arrays; nothing calls
    np.load or pickle on a file."""
    found = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in sorted((REPO / package).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if PICKLE_USES.search(line.split("#", 1)[0])  # code, not comments
    ]
    assert found == []


def test_every_setting_is_documented() -> None:
    readme = (REPO / "docs" / "configuration.md").read_text()
    missing = []
    for name, field in Settings.model_fields.items():
        variable = field.validation_alias if isinstance(field.validation_alias, str) else None
        variable = variable or f"SOFTSERVE_{name.upper()}"
        if f"| `{variable}` |" not in readme:
            missing.append(variable)
    assert missing == []
