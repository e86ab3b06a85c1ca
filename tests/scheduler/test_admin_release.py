import pytest
from django.urls import reverse

from scheduler.models import ScanJob
from scheduler.services import scan_job_release, scan_jobs_claim_due
from tests.factories import ScanJobFactory, UserFactory, login_verified

pytestmark = pytest.mark.django_db


def test_an_operator_releases_a_stuck_lease_and_the_old_holder_cannot_release_it(client):
    job = ScanJobFactory()
    [(_, token)] = scan_jobs_claim_due(owner="stuck-worker", limit=1)
    login_verified(client, UserFactory(is_staff=True, is_superuser=True))

    client.post(
        reverse("admin:scheduler_scanjob_changelist"),
        {"action": "release_lease", "_selected_action": [job.pk]},
    )

    job.refresh_from_db()
    assert job.lock_token is None and job.locked_by is None
    assert not scan_job_release(job_id=job.pk, lock_token=token, succeeded=True)
    assert ScanJob.objects.filter(pk=job.pk, locked_by__isnull=True).exists()
