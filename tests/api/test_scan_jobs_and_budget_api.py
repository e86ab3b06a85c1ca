import pytest

from scheduler.models import ScanJob
from tests.api.test_proposals_api import assert_error, client_for
from tests.factories import GptUsageLogFactory, PolicyFactory, ScanJobFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice():
    return PolicyFactory(user=UserFactory(username="alice"), gpt_hourly_limit=4).user


def test_a_user_creates_lists_and_changes_own_scan_jobs(alice):
    client = client_for(alice)
    created = client.post(
        "/api/v1/scan-jobs/",
        {"markets": ["btc-eur", "ETH-EUR"], "interval_minutes": 30},
        format="json",
    )
    assert created.status_code == 201
    job_id = created.json()["id"]
    assert created.json()["markets"] == ["BTC-EUR", "ETH-EUR"]
    changed = client.patch(f"/api/v1/scan-jobs/{job_id}/", {"enabled": False}, format="json")
    assert changed.json()["enabled"] is False
    assert [j["id"] for j in client.get("/api/v1/scan-jobs/").json()] == [job_id]
    assert ScanJob.objects.get(pk=job_id).user == alice


@pytest.mark.parametrize(
    "body, field",
    [
        ({"markets": []}, "markets"),
        ({"markets": "BTC-EUR"}, "markets"),
        ({"markets": ["BTC"]}, "markets"),
        ({"markets": ["BTC-EUR"], "interval_minutes": 0}, "interval_minutes"),
        ({"markets": ["BTC-EUR"], "interval_minutes": "5"}, "interval_minutes"),
    ],
)
def test_bad_scan_jobs_are_refused_with_the_field(alice, body, field):
    error = assert_error(
        client_for(alice).post("/api/v1/scan-jobs/", body, format="json"), 400, "SCAN_JOB_INVALID"
    )
    assert error["extra"]["field"] == field
    assert not ScanJob.objects.exists()


def test_another_users_scan_job_is_not_found(alice):
    job = ScanJobFactory(user=UserFactory(username="bob"))
    client = client_for(alice)
    assert_error(client.get(f"/api/v1/scan-jobs/{job.pk}/"), 404, "SCAN_JOB_NOT_FOUND")
    assert_error(
        client.patch(f"/api/v1/scan-jobs/{job.pk}/", {"enabled": False}, format="json"),
        404,
        "SCAN_JOB_NOT_FOUND",
    )
    job.refresh_from_db()
    assert job.enabled


def test_the_budget_endpoint_reports_use_and_what_is_left(alice):
    GptUsageLogFactory(user=alice, status="RESERVED")
    GptUsageLogFactory(user=UserFactory(username="bob"), status="RESERVED")
    budget = client_for(alice).get("/api/v1/budget/").json()
    assert budget["hourly"] == {"limit": 4, "used": 1, "remaining": 3}
